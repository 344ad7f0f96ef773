#!/usr/bin/env python3
"""Guest-side fault walk: each point fails the n-th fault-injectable call the module's code makes.

Runs inside the VM on the guest root's own python3 (3.9 or newer), with the
standard library and ``contract.py``, ``runner.py`` and ``faultplan.py`` beside it::

    python3 /harness/faultwalk.py /harness/walk.json

Set-up, once per guest: see ``faultsys.py``.

Each point: the walker marks the kernel log, runs the point's processes (see
``faultplan``), the armed one with ``/proc/self/fail-nth`` written before it
execs, reads that file back before reaping it (0: the fault was injected),
unloads the module, marks the log again, and sends the point's result. Every
kernel record is streamed as it is read (``runner.KmsgStream``), so a guest that
dies mid-point leaves its records and the point it was on. The walk on this
guest ends when every phase is walked, or after a point that left the kernel
tainted by a report, a process stuck in the kernel, or the module loaded.

Leaks: kmemleak reports an object only once it is 5 s old, and only at the
second scan that sees it unchanged; a scan costs seconds under emulation. So
the walker scans after every few points, and a point's leak check is done once a
scan started after it ended and a later one at least 5 s after (``LeakScans``);
the scans log what they find, each report naming the task that allocated the
object (the host gives it to the point whose process that was). Before the walk
on this guest ends, the last points are scanned the same way. A guest that dies
leaves the points since its last scans unchecked: the host walks them again.
"""

from __future__ import annotations

import os
import sys
import time
from typing import TYPE_CHECKING, Dict, List, Optional, Sequence, Tuple

if TYPE_CHECKING:
    from harness import contract, faultplan
    from harness.faultplan import PointRun, ProcRun, WalkPlan, WalkStep
    from harness.guest import faultsys, runner
else:  # in the guest, these sit beside this file
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import contract
    import faultplan
    import faultsys
    import runner
    from faultplan import PointRun, ProcRun, WalkPlan, WalkStep

KMEMLEAK_AGE = 5.3  # seconds: kmemleak reports no object younger than 5 s (mm/kmemleak.c MSECS_MIN_AGE)
BATCH = 4  # points between two kmemleak scans (a scan of a 1 GiB guest takes ~4 s under TCG)


class Walker:
    def __init__(self, plan: WalkPlan, channel: "runner.Channel", stream: "runner.KmsgStream"):
        self.plan, self.channel, self.stream = plan, channel, stream
        self.env = dict(os.environ)
        self.env.update(dict(plan.env))
        self.tracing = False
        self.last_mark: Optional[int] = None
        self.leaks = LeakScans(self)

    # -- the guest, once ------------------------------------------------------------
    def setup(self) -> Optional[str]:
        """Why this guest cannot walk, or None."""
        runner.prepare_guest(self.env)  # the steps' work directory ($HARNESS_WORK), cc where only gcc-N is
        problem = faultsys.configure_injection(*self.plan.require) or faultsys.configure_kmemleak()
        if problem:
            return problem
        self.tracing = faultsys.configure_tracing()
        if faultsys.taint() & faultplan.BUG_TAINTS:
            return "the kernel was tainted by a report before the walk (taint %d)" % faultsys.taint()
        if faultsys.module_loaded(self.plan.module):
            return "module %s is loaded already" % self.plan.module
        for dep in self.plan.requires:
            r = faultsys.run_proc("modprobe", ("modprobe", dep), self.plan.module_timeout, self.env)
            if r.returncode != 0:
                return "modprobe %s failed: %s" % (dep, r.stderr.strip()[-300:])
        for st in self.plan.before:
            r = self.run_step(st)
            if r.returncode != st.expect_rc:
                return "step %r (before insmod) exited %s: %s" % (st.name, r.returncode, r.stderr.strip()[-300:])
        return None

    # -- the walk -------------------------------------------------------------------
    def walk(self) -> str:
        """The plan's points (the ones to walk again first); returns why the walk on this guest
        ended early ("" when it did not)."""
        for phase, n in self.plan.redo:
            p = self.point(phase, n)
            if p.fresh:
                return p.fresh
        for phase, first in self.plan.phases:
            fresh = self.walk_phase(phase, first)
            if fresh:
                return fresh
        return ""

    def walk_phase(self, phase: str, first: int) -> str:
        if self.plan.only:
            return self.point(phase, first).fresh
        if phase not in self.plan.counted:
            p = self.point(phase, 0)
            if p.fresh or p.problem or p.calls == 0:
                return p.fresh  # nothing to walk after a count pass that made no call: it injected nothing
        n = first
        while n <= self.plan.max_points:
            p = self.point(phase, n)
            if p.fresh or p.problem or not p.injected:
                return p.fresh
            n += 1
        return ""

    def point(self, phase: str, n: int) -> PointRun:
        t0 = time.monotonic()
        mark = "%s%s: fault point %s %d" % (contract.HARNESS_RECORD, self.plan.run_id, phase, n)
        before = runner.mark(mark + " starts")
        self.channel.send(contract.FAULT_POINT, phase=phase, n=n, seq=before)
        taint0 = faultsys.taint()
        if self.tracing:
            faultsys.write(faultsys.TRACEFS + "/trace", "")
        arm = faultplan.COUNT_ARM if n == 0 else n
        if phase == faultplan.INIT:
            procs, secs, problem = self.init_point(arm)
        else:
            procs, secs, problem = self.step_point(self.plan.step(phase), arm)
        procs += self.unload()
        loaded = faultsys.module_loaded(self.plan.module)
        loads = [p for p in procs if p.what == "insmod"]
        init_fn = faultsys.initcall_address(loads[0].pid) if self.tracing and loads else None
        after = self.last_mark = runner.mark(mark + " ended")
        taint1 = faultsys.taint()
        self.catch_up(after)
        result = PointRun(phase=phase, n=n, procs=tuple(procs), seq_before=before, seq_after=after,
                          taint_before=taint0, taint_after=taint1, sections=secs, init_fn=init_fn,
                          loaded_after=loaded, problem=problem, seconds=round(time.monotonic() - t0, 3),
                          fresh=self.why_fresh(procs, loaded, taint1))
        self.channel.send(contract.FAULT_RESULT, point=result.to_dict())
        self.leaks.ended(phase, n)
        return result

    def catch_up(self, seq: Optional[int], timeout: float = 30.0) -> None:
        """Wait until the stream has sent every record up to ``seq``: the point's result then follows
        its records on the channel."""
        deadline = time.monotonic() + timeout
        while seq is not None and time.monotonic() < deadline:
            last = self.stream.records.last()
            if last is not None and runner.record_seq(last) >= seq:
                return
            time.sleep(0.01)

    def why_fresh(self, procs: Sequence[ProcRun], loaded: bool, taint_now: int) -> str:
        if taint_now & faultplan.BUG_TAINTS:
            return "the kernel is tainted by a report (taint %d): its checks cannot be trusted on" % taint_now
        stuck = [p.what for p in procs if p.stuck]
        if stuck:
            return "%s stayed stuck in the kernel after SIGKILL" % ", ".join(stuck)
        if loaded:
            return "module %s could not be unloaded" % self.plan.module
        return ""

    def run_step(self, st: WalkStep, arm: Optional[int] = None) -> ProcRun:
        """A project step as the runner runs it: its own environment added, in its directory."""
        return faultsys.run_proc(st.name, st.argv, st.timeout, dict(self.env, **dict(st.env)), arm,
                                 cwd=st.cwd or contract.WORK_DIR)

    def insmod(self, arm: Optional[int]) -> ProcRun:
        return faultsys.run_proc("insmod", ("insmod", self.plan.ko) + tuple(self.plan.params),
                                 self.plan.module_timeout, self.env, arm)

    def init_point(self, arm: int) -> Tuple[List[ProcRun], Dict[str, int], str]:
        r = self.insmod(arm)
        return [r], faultsys.sections(self.plan.module), ""

    def step_point(self, step: WalkStep, arm: int) -> Tuple[List[ProcRun], Dict[str, int], str]:
        load = self.insmod(None)
        procs = [load]
        if load.returncode != 0:
            return procs, {}, "insmod without a fault failed (exit %s): %s" % (load.returncode,
                                                                               load.stderr.strip()[-300:])
        secs = faultsys.sections(self.plan.module)
        for st in faultplan.loaded_steps_before(self.plan, step.name):
            r = self.run_step(st)
            procs.append(r)
            if r.returncode != st.expect_rc:
                return procs, secs, "step %r (unarmed, before %r) exited %s" % (st.name, step.name, r.returncode)
        procs.append(self.run_step(step, arm))
        return procs, secs, ""

    def unload(self) -> List[ProcRun]:
        """rmmod when the module is loaded, three tries a second apart (a reference dropped late)."""
        out: List[ProcRun] = []
        for _ in range(3):
            if not faultsys.module_loaded(self.plan.module):
                break
            r = faultsys.run_proc("rmmod", ("rmmod", self.plan.module), self.plan.module_timeout, self.env)
            out.append(r)
            if r.returncode == 0 or r.stuck:
                break
            time.sleep(1)
        return out



class LeakScans:
    """kmemleak's scans, every few points: which points' leak checks are done."""

    def __init__(self, walker: "Walker"):
        self.walker = walker
        self.pending: List[Tuple[str, int, float]] = []  # points not checked yet, and when each ended
        self.scans: List[float] = []  # when each scan started
        self.since = 0  # points since the last scan

    def ended(self, phase: str, n: int) -> None:
        self.pending.append((phase, n, time.monotonic()))
        self.since += 1
        if self.since >= BATCH:
            self.scan()

    def scan(self) -> None:
        """One scan; then the points it completed the check of are sent (after the records it logged).
        A point is checked by a scan 5 s after it ended with another scan in between: the first one
        takes the object's checksum, the second reports it if it was unreferenced and unchanged."""
        start = time.monotonic()
        faultsys.write(faultsys.KMEMLEAK, "scan")
        self.scans.append(start)
        self.since = 0
        done = [(ph, n) for ph, n, end in self.pending
                if start - end >= KMEMLEAK_AGE and any(end < s < start for s in self.scans[:-1])]
        self.pending = [x for x in self.pending if (x[0], x[1]) not in done]
        seq = self.walker.last_mark = runner.mark("%s%s: leak scan" % (contract.HARNESS_RECORD,
                                                                       self.walker.plan.run_id))
        self.walker.catch_up(seq)
        self.walker.channel.send(contract.FAULT_SCAN, checked=[list(x) for x in done])

    def finish(self) -> None:
        """Scan until every point walked is checked: one scan now, one once the last is old enough."""
        if not self.pending:
            return
        self.scan()
        if self.pending:
            wait = max(end for _, _, end in self.pending) + KMEMLEAK_AGE - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            self.scan()


def main(argv: List[str]) -> int:
    with open(argv[1]) as f:
        text = f.read()
    plan = WalkPlan.from_json(text)
    channel = runner.Channel(sys.stdout, plan.run_id)
    channel.send(contract.HELLO, version=contract.VERSION)
    stream = runner.KmsgStream(channel)
    stream.start()
    walker = Walker(plan, channel, stream)
    try:
        problem = walker.setup()
        if problem:
            channel.send(contract.FAULT_DONE, reason=problem, error=True)
            return 3
        reason = walker.walk()
        walker.leaks.finish()
        channel.send(contract.FAULT_DONE, reason=reason or "walked", error=False)
        return 0
    finally:
        stream.finish(until=walker.last_mark)


if __name__ == "__main__":
    sys.exit(main(sys.argv))

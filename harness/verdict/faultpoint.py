"""One fault point judged: what was injected where, and what came of it. Pure: events in, outcomes out.

The walker (``harness/guest/faultwalk.py``) streams kernel records and says where
each point starts and ends. A point's records are the kernel's own (facility 0)
between its two marks. In them:

- the injection: lib/fault-inject.c's ``fail_dump()`` logs ``FAULT_INJECTION:
  forcing a failure.`` and, at verbose 2, a stack dump whose innermost frame of
  the module is the injected call site, and the frame inside it the kernel
  function the module called;
- the consequences: splats by ``vm/splats.toml``'s rules, kmemleak's reports among
  them (the walker makes kmemleak log them) when they belong to the point (a
  process of the point allocated the object, or a frame of its backtrace is the
  module's); a process past its limit (a hang); a module that would not unload;
  a guest that died in the point (its console then says how, when the records do not).

A clean error returned to userspace (insmod failing, a step exiting non-zero) is
a pass: that is what an error path is for.
"""

from __future__ import annotations

import re
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Mapping, Optional, Sequence

from harness import contract, faultplan
from harness.faultplan import PointRun, ProcRun
from harness.model import KmsgRecord
from harness.verdict import complaints, kmsg, splat, trace, trail
from harness.verdict.trace import Frame

INJECTION = "FAULT_INJECTION: forcing a failure."
# Records of a guest's walk kept on the host, first and last: a walk logs far more than a run (a
# stack dump per injection), and a module that logs without end must not fill the host's memory.
KEEP = 2 * contract.KMSG_HEAD
KMEMLEAK = "kmemleak"  # the splat rule of kmemleak's reports
_ATTR = re.compile(r"name (\S+),")
# The frames of the fault injection itself, innermost first: the frame after the last of them is
# the allocator that was made to fail.
_INJECTOR = ("should_failslab", "should_fail_alloc_page", "should_fail_ex", "should_fail")

# Outcomes of a point without consequence, and of one with (a finding):
ERROR_RETURNED = "error returned"  # the armed process failed cleanly: the error path worked
HANDLED = "handled"  # it succeeded although the call failed: the module coped (or ignored it)
NOT_INJECTED = "not injected"  # the pass made fewer calls: the walk of this phase is complete
COUNTED = "counted"  # point 0, the count pass
PROBLEM = "problem"  # the point could not run as planned (a clean load failed)
FINDING = "finding"


@dataclass(frozen=True)
class Injection:
    """The stack dump of the injected failure."""

    seq: int
    attr: str  # failslab, fail_page_alloc
    frames: tuple[Frame, ...]
    site: Optional[Frame]  # the innermost reliable frame of the module: the call site
    function: Optional[str]  # the frame inside it: what the module called
    allocator: Optional[str]  # the allocation that failed (the frame after the injector's)


@dataclass(frozen=True)
class Consequence:
    kind: str  # a splat rule's name (kasan, kmemleak, warning...), or hang, unload, died
    text: str  # its first line: the splat's record, or what happened
    seq: Optional[int] = None  # the splat's record, when there is one
    detail: str = ""  # more: the console's excerpt of a guest that died, a process's output

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "text": self.text, "seq": self.seq, "detail": self.detail}


@dataclass(frozen=True)
class PointOutcome:
    phase: str
    n: int
    outcome: str  # one of the constants above
    run: Optional[PointRun]  # None: the guest stopped before the walker reported the point
    injection: Optional[Injection] = None
    consequences: tuple[Consequence, ...] = ()
    records: tuple[KmsgRecord, ...] = ()  # the point's kernel records
    guest: int = 0  # which guest of the walk it ran on (0, 1, ...)

    @property
    def injected(self) -> bool:
        return self.injection is not None or (self.run is not None and self.run.injected)

    @property
    def armed(self) -> Optional[ProcRun]:
        return self.run.armed if self.run is not None else None


@dataclass
class FaultLog:
    """The events of one walk on one guest, folded as they arrive (the host's side)."""

    run_id: str
    version: Optional[int] = None
    started: list[tuple[str, int, Optional[int]]] = field(default_factory=list)  # (phase, n, start seq)
    results: dict[tuple[str, int], PointRun] = field(default_factory=dict)
    done: Optional[tuple[str, bool]] = None  # (reason, error)
    checked: set[tuple[str, int]] = field(default_factory=set)  # points kmemleak has looked at
    # The kernel's records, parsed as they come, capped as a run's are (contract.HeadTail): the first
    # KEEP and the last KEEP; ``dropped`` says how many were left out between them.
    dropped: int = 0
    _head: list[KmsgRecord] = field(default_factory=list)
    _tail: "deque[KmsgRecord]" = field(default_factory=lambda: deque(maxlen=KEEP))

    def parsed(self) -> list[KmsgRecord]:
        """The records so far, in order (the middle of an endless log left out)."""
        return self._head + list(self._tail) if self._tail else self._head

    def _keep(self, raw: str) -> None:
        for r in kmsg.parse_records([raw]):
            if len(self._head) < KEEP:
                self._head.append(r)
                continue
            if len(self._tail) == KEEP:
                self.dropped += 1
            self._tail.append(r)

    def feed_line(self, line: str) -> Optional[str]:
        """Fold one channel line; returns its event's kind (None: not ours)."""
        event = contract.decode_event(line)
        if event is None or event.get("run") != self.run_id:
            return None
        kind = event["event"]
        if kind == contract.HELLO:
            self.version = event.get("version")
        elif kind == contract.KMSG:
            self._keep(str(event.get("raw", "")))
        elif kind == contract.FAULT_POINT:
            self.started.append((str(event["phase"]), int(event["n"]), event.get("seq")))
        elif kind == contract.FAULT_RESULT:
            run = PointRun.from_dict(event["point"])
            self.results[(run.phase, run.n)] = run
        elif kind == contract.FAULT_SCAN:
            self.checked |= {(str(p), int(n)) for p, n in event.get("checked", ())}
        elif kind == contract.FAULT_DONE:
            self.done = (str(event.get("reason", "")), bool(event.get("error")))
        return kind

    @property
    def unfinished(self) -> Optional[tuple[str, int, Optional[int]]]:
        """The point that started and never reported: the guest stopped in it."""
        last = self.started[-1] if self.started else None
        return last if last is not None and (last[0], last[1]) not in self.results else None


def parse_injection(records: Sequence[KmsgRecord], module: str) -> Optional[Injection]:
    """The first injection's dump in ``records`` (a point has one at most)."""
    start = next((r for r in records if r.facility == splat.KERNEL_FACILITY and r.text.startswith(INJECTION)), None)
    if start is None:
        return None
    m = _ATTR.search(kmsg.unescape(start.text))
    if m is None:  # read from a console (splat.console_records): the record's second line is one of its own
        after = next((r for r in records if r.seq > start.seq), None)
        m = _ATTR.match(after.text) if after is not None and after.usec == start.usec else None
    frames = tuple(trace.frames(trace.report_records(records, start.seq)))
    sure = [f for f in frames if f.reliable]  # "?" frames are stale words on the stack
    mine = [i for i, f in enumerate(sure) if f.module == module]
    site_i = mine[0] if mine else None
    function = sure[site_i - 1].function if site_i else None
    inj = [i for i, f in enumerate(sure) if f.function in _INJECTOR]
    allocator = sure[inj[-1] + 1].function if inj and inj[-1] + 1 < len(sure) else None
    return Injection(seq=start.seq, attr=m.group(1) if m else "", frames=frames,
                     site=sure[site_i] if site_i is not None else None, function=function, allocator=allocator)


def window(records: Sequence[KmsgRecord], start: Optional[int], end: Optional[int]) -> list[KmsgRecord]:
    return [r for r in records if (start is None or r.seq > start) and (end is None or r.seq <= end)]


@dataclass(frozen=True)
class Judging:
    """What every point of a walk is judged by."""

    rules: tuple[splat.SplatRule, ...]
    module: str  # the kernel's name for it
    names: tuple[str, ...] = ()  # every name it goes by in records (complaints name it)
    expect_rc: Mapping[str, int] = field(default_factory=dict)  # each step's expected exit status
    allow: tuple[trail.Allowance, ...] = ()  # complaints the project says are intended


def judge_point(phase: str, n: int, run: Optional[PointRun], records: Sequence[KmsgRecord], how: Judging,
                start: Optional[int] = None, console: str = "", marker: Optional[str] = None,
                ended: str = "", guest: int = 0, leaks: Sequence[tuple[Consequence, Sequence[KmsgRecord]]] = ()
                ) -> PointOutcome:
    """A point's outcome. ``run`` None: the guest stopped in the point (``start``: its first mark's
    record; ``console``, ``marker``: the guest's console and the point's start mark, the last resort
    for how it died; ``ended``: how the host saw it end). ``leaks``: kmemleak's reports that are the
    point's (``attribute_leaks``), with their records: they come with a later scan, not in its window."""
    lo = run.seq_before if run is not None else start
    win = tuple(window(records, lo, run.seq_after if run is not None else None))
    injection = parse_injection(win, how.module)
    splats = [s for s in splat.find(how.rules, win, how.names or (how.module,)) if s.rule != KMEMLEAK]
    found = cascade([Consequence(s.rule, s.text, s.seq) for s in splats])
    if not splats:  # a report's own stack dump is no complaint of its own
        found += complaints_in(win, how)
    found += [c for c, _ in leaks]
    streamed = win
    win = tuple(sorted({r.seq: r for r in list(win) + [r for _, rs in leaks for r in rs]}.values(),
                       key=lambda r: r.seq))
    if run is None:
        if injection is None and console:  # its dump was printed, but never streamed before the guest died
            injection = parse_injection(list(streamed) + splat.console_records(console, marker, streamed), how.module)
        if not found and console:
            seen, excerpt = splat.find_in_console(how.rules, console, marker, streamed)
            found = cascade([Consequence(s.rule, s.text, detail=excerpt if i == 0 else "")
                             for i, s in enumerate(seen)])
        if not found:
            excerpt = "\n".join(console.splitlines()[-30:])
            found = [Consequence("died", f"the guest stopped during the point ({ended or 'no result came'})",
                                 detail=excerpt)]
        return PointOutcome(phase, n, FINDING, None, injection, tuple(found), win, guest)
    found += _process_consequences(run, how.module)
    if found:
        return PointOutcome(phase, n, FINDING, run, injection, tuple(found), win, guest)
    return PointOutcome(phase, n, _clean_outcome(run, how.expect_rc), run, injection, (), win, guest)


COMPLAINT = "complaint"  # a consequence: the kernel complained about the module (verdict/complaints.py)


def complaints_in(win: Sequence[KmsgRecord], how: Judging) -> list[Consequence]:
    """The kernel's complaints about the module in a point's records that nothing allows
    (``complaints.find``: a known message about a module, or a stack dump while it was loaded).
    The stack dump each injection prints on purpose (lib/fault-inject.c fail_dump(): the
    ``FAULT_INJECTION`` record, then dump_stack()) is left out, and so are the module's own
    warnings: an error path that logs its failure is doing its job, and no trail is checked here."""
    kernel = [r for r in win if r.facility == splat.KERNEL_FACILITY]
    dumps = {b.seq for a, b in zip(kernel, kernel[1:], strict=False) if a.text.startswith(INJECTION)
             and complaints.DUMP_HEAD.match(b.text)}
    said = complaints.find([r for r in kernel if r.seq not in dumps], how.names or (how.module,), (None, None),
                           None, how.allow)
    return [Consequence(COMPLAINT, c.record.text, c.record.seq, detail=c.why) for c in said
            if c.allowed_by is None and c.the_kernels]


# A report that goes on as another: a NULL dereference's "BUG:" line, then its "Oops:"; and the panic
# an Oops makes of itself (every guest boots with oops=panic). They are the first report's consequence.
_FOLLOWS = {"oops": ("bug", "gpf", "kernel-bug", "kasan"), "panic": None}


def cascade(found: Sequence[Consequence]) -> list[Consequence]:
    """The splats of one point without those that are the tail of an earlier one's report."""
    out: list[Consequence] = []
    for c in found:
        after = _FOLLOWS.get(c.kind, ())
        if out and (after is None or out[-1].kind in after):
            continue
        out.append(c)
    return out


def _clean_outcome(run: PointRun, expect_rc: Mapping[str, int]) -> str:
    if run.problem:
        return PROBLEM
    if run.n == 0:
        return COUNTED
    armed = run.armed
    if not run.injected or armed is None:
        return NOT_INJECTED
    want = 0 if run.phase == faultplan.INIT else expect_rc.get(run.phase, 0)
    return HANDLED if armed.returncode == want else ERROR_RETURNED


def _process_consequences(run: PointRun, module: str) -> list[Consequence]:
    out = []
    for p in run.procs:
        if p.timed_out:
            still = "; it stayed stuck in the kernel after SIGKILL" if p.stuck else ""
            out.append(Consequence("hang", f"{p.what} did not end within its limit ({p.timeout:.0f}s){still}",
                                   detail=_output(p)))
    unloads = [p for p in run.procs if p.what == "rmmod"]
    if run.loaded_after:
        last = unloads[-1] if unloads else None
        why = f": {last.stderr.strip()[-300:]}" if last is not None and last.stderr.strip() else ""
        out.append(Consequence("unload", f"module {module} could not be unloaded{why}",
                               detail=_output(last) if last is not None else ""))
    return out


def _output(p: ProcRun) -> str:
    return "\n".join(x for x in (p.stdout.strip(), p.stderr.strip()) if x)[-2000:]

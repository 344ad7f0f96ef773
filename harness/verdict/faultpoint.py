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
from dataclasses import dataclass, field
from typing import Any, Mapping, Optional, Sequence

from harness.guest import contract, faultplan
from harness.guest.faultplan import PointRun, ProcRun
from harness.model import KmsgRecord
from harness.verdict import kmsg, splat, trace
from harness.verdict.trace import Frame

INJECTION = "FAULT_INJECTION: forcing a failure."
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
    records: list[str] = field(default_factory=list)
    started: list[tuple[str, int, Optional[int]]] = field(default_factory=list)  # (phase, n, start seq)
    results: dict[tuple[str, int], PointRun] = field(default_factory=dict)
    done: Optional[tuple[str, bool]] = None  # (reason, error)
    checked: set[tuple[str, int]] = field(default_factory=set)  # points kmemleak has looked at
    _parsed: list[KmsgRecord] = field(default_factory=list)

    def parsed(self) -> list[KmsgRecord]:
        """The records so far, parsed (each raw record once)."""
        if len(self._parsed) < len(self.records):
            self._parsed += kmsg.parse_records(self.records[len(self._parsed):])
        return self._parsed

    def feed_line(self, line: str) -> Optional[str]:
        """Fold one channel line; returns its event's kind (None: not ours)."""
        event = contract.decode_event(line)
        if event is None or event.get("run") != self.run_id:
            return None
        kind = event["event"]
        if kind == contract.HELLO:
            self.version = event.get("version")
        elif kind == contract.KMSG:
            self.records.append(str(event.get("raw", "")))
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


def judge_point(phase: str, n: int, run: Optional[PointRun], records: Sequence[KmsgRecord],
                rules: Sequence[splat.SplatRule], module: str, expect_rc: Mapping[str, int],
                start: Optional[int] = None, console: str = "", marker: Optional[str] = None,
                ended: str = "", guest: int = 0, leaks: Sequence[tuple[Consequence, Sequence[KmsgRecord]]] = ()
                ) -> PointOutcome:
    """A point's outcome. ``run`` None: the guest stopped in the point (``start``: its first mark's
    record; ``console``, ``marker``: the guest's console and the point's start mark, the last resort
    for how it died; ``ended``: how the host saw it end). ``leaks``: kmemleak's reports that are the
    point's (``attribute_leaks``), with their records: they come with a later scan, not in its window."""
    lo = run.seq_before if run is not None else start
    win = tuple(window(records, lo, run.seq_after if run is not None else None))
    injection = parse_injection(win, module)
    found = cascade([Consequence(s.rule, s.text, s.seq) for s in splat.find(rules, win) if s.rule != KMEMLEAK])
    found += [c for c, _ in leaks]
    win = tuple(sorted({r.seq: r for r in list(win) + [r for _, rs in leaks for r in rs]}.values(),
                       key=lambda r: r.seq))
    if run is None:
        if not found and console:
            seen, excerpt = splat.find_in_console(rules, console, marker)
            found = cascade([Consequence(s.rule, s.text, detail=excerpt if i == 0 else "")
                             for i, s in enumerate(seen)])
        if not found:
            excerpt = "\n".join(console.splitlines()[-30:])
            found = [Consequence("died", f"the guest stopped during the point ({ended or 'no result came'})",
                                 detail=excerpt)]
        return PointOutcome(phase, n, FINDING, None, injection, tuple(found), win, guest)
    found += _process_consequences(run, module)
    if found:
        return PointOutcome(phase, n, FINDING, run, injection, tuple(found), win, guest)
    return PointOutcome(phase, n, _clean_outcome(run, expect_rc), run, injection, (), win, guest)


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


# ---- kmemleak's reports, as it logs them with verbose on (mm/kmemleak.c print_unreferenced) ----

_COMM = re.compile(r'comm "([^"]*)", pid (\d+), jiffies (\d+)')
_RAW = re.compile(r"^0x([0-9a-f]+)$")
_SYM = re.compile(r"^(?P<func>[A-Za-z0-9_.$]+)\+0x(?P<off>[0-9a-f]+)/0x(?P<size>[0-9a-f]+)(?: \[(?P<mod>\w+)\])?$")


@dataclass(frozen=True)
class Leak:
    seq: int
    comm: str
    pid: Optional[int]
    frames: tuple[Frame, ...]  # symbolic frames as printed; bare addresses as frames named "0x..."
    raw: tuple[int, ...]  # the bare addresses among them (code that was gone when kmemleak printed)


def _body(text: str) -> str:
    return text[len("kmemleak: "):] if text.startswith("kmemleak: ") else text


def parse_leak(records: Sequence[KmsgRecord], seq: int) -> Optional[Leak]:
    """The report that starts at record ``seq``: who allocated the object and its backtrace."""
    at = next((i for i, r in enumerate(records) if r.seq == seq), None)
    if at is None:
        return None
    comm, pid, frames, raw = "", None, [], []
    in_trace = False
    for r in records[at + 1:at + 80]:
        if r.facility != records[at].facility:
            continue
        body = _body(r.text)
        if body.lstrip().startswith("unreferenced object"):
            break
        m = _COMM.search(body)
        if m and not in_trace:
            comm, pid = m.group(1), int(m.group(2))
        elif body.lstrip().startswith("backtrace"):
            in_trace = True
        elif in_trace:
            if not body.startswith("    "):
                break
            frame = _leak_frame(body.strip(), r.seq)
            if frame is not None:
                frames.append(frame)
                if frame.function.startswith("0x"):
                    raw.append(int(frame.function, 16))
    return Leak(seq, comm, pid, tuple(frames), tuple(raw))


def _leak_frame(text: str, seq: int) -> Optional[Frame]:
    text = re.sub(r"^\[<[0-9a-f]+>\]\s*", "", text)  # older kernels print the address first
    m = _SYM.match(text)
    if m:
        return Frame(m.group("func"), int(m.group("off"), 16), int(m.group("size"), 16), m.group("mod"), True,
                     "stack", seq)
    if _RAW.match(text):
        return Frame(text, 0, 0, None, True, "stack", seq)
    return None


def attribute_leaks(records: Sequence[KmsgRecord], runs: Sequence[PointRun], rules: Sequence[splat.SplatRule],
                    module: str) -> tuple[dict[tuple[str, int], list[tuple[Consequence, list[KmsgRecord]]]],
                                          list[Consequence]]:
    """kmemleak's reports of a guest, each given to the point it belongs to: the one whose process
    allocated the object, else the last one before the report whose load held a bare address of its
    backtrace or whose module a frame names. The rest (the kernel's own, the boot's) are returned apart."""
    out: dict[tuple[str, int], list[tuple[Consequence, list[KmsgRecord]]]] = {}
    stray: list[Consequence] = []
    by_pid = {p.pid: r for r in runs for p in r.procs if p.pid is not None}
    for s in splat.find(rules, records):
        if s.rule != KMEMLEAK or s.seq is None:
            continue
        leak = parse_leak(records, s.seq)
        c = Consequence(s.rule, s.text, s.seq)
        owner = by_pid.get(leak.pid) if leak is not None and leak.pid is not None else None
        if owner is None and leak is not None:
            before = [r for r in runs if r.seq_before is not None and r.seq_before < s.seq]
            named = any(f.module == module for f in leak.frames)
            owner = next((r for r in reversed(before) if named or any(_in_load(a, r) for a in leak.raw)), None)
        if owner is None:
            stray.append(c)
            continue
        out.setdefault((owner.phase, owner.n), []).append((c, report(records, s.seq)))
    return out, stray


def report(records: Sequence[KmsgRecord], seq: int, most: int = 80) -> list[KmsgRecord]:
    """The records of kmemleak's report that starts at ``seq``."""
    at = next((i for i, r in enumerate(records) if r.seq == seq), None)
    if at is None:
        return []
    out = [records[at]]
    for r in records[at + 1:at + most]:
        if r.facility == records[at].facility and (_body(r.text).startswith(" ")):
            out.append(r)
        elif r.facility == records[at].facility:
            break
    return out


def _in_load(address: int, run: PointRun) -> bool:
    """Whether an address is near the module's code in the point's load (within 1 MiB of a section)."""
    bases = list(run.sections.values()) + ([run.init_fn] if run.init_fn else [])
    return any(0 <= address - b < (1 << 20) for b in bases)

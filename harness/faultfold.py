"""What each guest's walk gave, folded into the whole walk: outcomes, phase states, points to walk again.

A guest sends its points' results as they end and, every few points, which points
kmemleak has looked at (``faultwalk.LeakScans``). Once its walk is over, every point it
started is judged with the leaks given to it (``faultleak.attribute_leaks``). Points a
guest that died never got a leak check for are walked again on the next guest; the
new outcome replaces the old.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from harness import contract
from harness.events import Note, Sink
from harness.faultguests import WalkEnd
from harness.phases import Prepared, load_trail, module_names
from harness.verdict import faultleak, faultpoint
from harness.verdict.faultpoint import FaultLog, PointOutcome

Key = tuple[str, int]


@dataclass
class PhaseState:
    name: str
    calls: Optional[int] = None  # what its count pass counted
    counted: bool = False
    next_n: int = 1
    complete: bool = False


@dataclass
class Walk:
    """Everything the walk gathered, read once at the end (however it ended)."""

    outcomes: list[PointOutcome] = field(default_factory=list)
    guests: list[str] = field(default_factory=list)  # why each guest's walk ended
    prep: Optional[Prepared] = None
    states: list[PhaseState] = field(default_factory=list)
    redo: list[Key] = field(default_factory=list)  # points to walk again: their leak check was lost
    build: str = ""  # where the module was built (its debug information names files there)
    how: Optional[faultpoint.Judging] = None  # what every point is judged by (``judging``)
    stray: list[faultpoint.Consequence] = field(default_factory=list)  # leaks of no point: the kernel's own

    def put(self, o: PointOutcome) -> None:
        at = next((i for i, x in enumerate(self.outcomes) if (x.phase, x.n) == (o.phase, o.n)), None)
        if at is None:
            self.outcomes.append(o)
        else:
            self.outcomes[at] = o


def judging(prep: Prepared) -> faultpoint.Judging:
    """What the walk's points are judged by: the splat rules, the module's names, each step's expected
    exit status, and the complaints the project allows (harness.toml's [[allow]], and its trail's
    when it has one: a walk checks no trail, but what it allows is allowed here too)."""
    p = prep.setup.project
    allow = p.allow + (load_trail(p).allow if p.trail.is_file() else ())
    return faultpoint.Judging(tuple(prep.setup.rules), p.module, module_names(p),
                              {s.name: s.expect_rc for s in p.steps}, allow)


def judge(how: faultpoint.Judging, log: FaultLog, phase: str, n: int, end: Optional[WalkEnd], guest: int,
          leaks: Optional[dict[Key, list[tuple[faultpoint.Consequence, list]]]] = None,
          start: Optional[int] = None) -> PointOutcome:
    marker = f"{contract.HARNESS_RECORD}{log.run_id}: fault point {phase} {n} starts"
    ended = (end.why or f"exit status {end.status}") if end is not None else ""
    return faultpoint.judge_point(phase, n, log.results.get((phase, n)), log.parsed(), how, start=start,
                                  console=end.console if end is not None else "", marker=marker, ended=ended,
                                  guest=guest, leaks=(leaks or {}).get((phase, n), []))


def fold(how: faultpoint.Judging, log: FaultLog, end: WalkEnd, w: Walk, guest: int, only: Optional[int],
         max_points: int) -> tuple[int, bool]:
    """The guest's points into the walk: (how many it judged, whether the guest ended for a reason
    of the module's)."""
    by_name = {s.name: s for s in w.states}
    leaks, stray = faultleak.attribute_leaks(log.parsed(), list(log.results.values()), how.rules, how.module)
    w.stray += stray
    died = log.done is None
    for phase, n, seq in log.started:
        run = log.results.get((phase, n))
        w.put(judge(how, log, phase, n, end, guest, leaks, seq))
        if (phase, n) in w.redo:
            w.redo.remove((phase, n))
        if died and run is not None and (phase, n) not in log.checked and n > 0:
            w.redo.append((phase, n))  # its leak check went down with the guest
        st = by_name[phase]
        if n == 0:
            st.counted, st.calls = True, run.calls if run is not None else None
        else:
            st.next_n = max(st.next_n, n + 1)
        if only is not None and n == only:
            st.complete = True
        elif run is not None and (run.problem or (n > 0 and not run.injected) or (n == 0 and run.calls == 0)):
            st.complete = True
        elif n >= max_points:
            st.complete = True
    why = log.done[0] if log.done is not None else (end.why or "the guest stopped")
    w.guests.append(why)
    return len(log.started), died or why != "walked"


class Progress:
    """Point n of about N, and the findings so far: printed as results and leak checks arrive."""

    def __init__(self, how: faultpoint.Judging, w: Walk, sink: Sink, log: FaultLog, guest: int):
        self.how, self.w, self.sink, self.log, self.guest = how, w, sink, log, guest
        self.seen: set[Key] = set()
        self.leaky: set[Key] = set()
        self.found = {(o.phase, o.n) for o in w.outcomes if o.consequences}

    def __call__(self, kind: Optional[str]) -> None:
        if kind == contract.FAULT_RESULT:
            self.points()
        elif kind == contract.FAULT_SCAN:
            self.scanned()

    def points(self) -> None:
        for key, run in self.log.results.items():
            if key in self.seen:
                continue
            self.seen.add(key)
            state = next(s for s in self.w.states if s.name == run.phase)
            if run.n == 0:
                state.calls = run.calls
                self.sink(Note(f"  {run.phase}: the count pass made {run.calls} fault-injectable calls with the "
                               "module's code on the stack"))
                continue
            o = judge(self.how, self.log, run.phase, run.n, None, self.guest)
            if o.consequences:
                self.found.add(key)
            about = f" of about {state.calls}" if state.calls is not None else ""
            what = ", ".join(c.kind for c in o.consequences) or o.outcome
            self.sink(Note(f"  {run.phase} point {run.n}{about}: {what} ({run.seconds:.1f}s); "
                           f"points with findings so far: {len(self.found)}"))

    def scanned(self) -> None:
        leaks, _ = faultleak.attribute_leaks(self.log.parsed(), list(self.log.results.values()), self.how.rules,
                                              self.how.module)
        for key in sorted(set(leaks) - self.leaky):
            self.leaky.add(key)
            self.found.add(key)
            self.sink(Note(f"  {key[0]} point {key[1]}: "
                           f"kmemleak found {len(leaks[key])} leak(s) in kmemleak's scan; points with findings "
                           f"so far: {len(self.found)}"))

"""The fault walk's plan (host to guest) and each point's result (guest to host).

Shared by ``harness faults`` on the host and ``faultwalk.py`` in the guest, which
runs on the guest root's own python3 (3.9 or newer) with the standard library,
``contract.py`` and ``runner.py`` beside it. Keep this module that way: no
third-party imports, nothing from the rest of ``harness`` but ``contract``.

A *point* is one pass of a *phase*: ``init`` (the module loaded with the fault
armed in insmod) or one of the project's steps (the module loaded cleanly, that
step run with the fault armed in its process). Point ``n`` arms the task with
``/proc/<pid>/fail-nth`` = n: the n-th fault-injectable call it makes with
module code on its stack fails (failslab's and fail_page_alloc's stack-trace
filter). Point 0 is the phase's count pass: armed far past any call, nothing
fails, and what fail-nth reads back after says how many calls the pass made.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import asdict, dataclass, field, fields
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Tuple

if TYPE_CHECKING or __package__:
    from harness.contract import PlanStep as WalkStep  # a step: name, argv, timeout, expect_rc, env, cwd
else:  # in the guest, contract.py sits beside this file
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from contract import PlanStep as WalkStep

VERSION = 2  # bump on any change to the plan or to PointRun (2: steps are contract 3's, with kind, env and cwd)
WALKER_FILE = "faultwalk.py"
PLAN_FILE = "faultplan.py"
WALK_FILE = "walk.json"
GUEST_FILES = (WALKER_FILE, PLAN_FILE, "faultsys.py")

INIT = "init"  # the phase of the module's init
COUNT_ARM = 1_000_000_000  # fail-nth of the count pass: no pass makes that many calls
# Taint bits that mean the kernel reported a bug (Documentation/admin-guide/tainted-kernels.rst):
# M machine check (4), B bad page: KASAN (5), D died: an Oops (7), W warning (9), L soft lockup (14).
# O and E (12, 13: an out-of-tree, unsigned module) are every fixture's and mean nothing here.
BUG_TAINTS = (1 << 4) | (1 << 5) | (1 << 7) | (1 << 9) | (1 << 14)



class PlanError(ValueError):
    """A walk plan that does not follow this module's schema."""


@dataclass(frozen=True)
class WalkPlan:
    run_id: str
    module: str  # the kernel's name for it (rmmod, /sys/module)
    ko: str  # its path in the guest
    params: Tuple[str, ...] = ()
    requires: Tuple[str, ...] = ()  # modprobe'd once per guest
    before: Tuple[WalkStep, ...] = ()  # run once per guest, before any point, unarmed
    loaded: Tuple[WalkStep, ...] = ()  # the project's steps that run with the module loaded
    # (phase, first n) to walk, in this order; a phase is INIT or the name of a loaded step
    phases: Tuple[Tuple[str, int], ...] = ()
    counted: Tuple[str, ...] = ()  # phases whose count pass (point 0) was run on an earlier guest
    # points walked again first: an earlier guest died before kmemleak had looked at what they allocated
    redo: Tuple[Tuple[str, int], ...] = ()
    only: bool = False  # walk the first n of each phase, nothing else
    require: Tuple[int, int] = (0, 0)  # [start, end) of the module area: the stack-trace filter
    module_timeout: float = 60.0  # insmod, rmmod, modprobe
    max_points: int = 1000  # per phase: a walk that does not end is cut there
    env: Tuple[Tuple[str, str], ...] = ()
    version: int = VERSION

    def to_json(self) -> str:
        d = asdict(self)
        d["env"] = dict(self.env)
        return json.dumps(d, indent=1)

    @classmethod
    def from_json(cls, text: str) -> "WalkPlan":
        try:
            d = json.loads(text)
            if d.get("version") != VERSION:
                raise PlanError(f"walk plan version {d.get('version')!r}, this walker reads {VERSION}")

            def steps(key: str) -> Tuple[WalkStep, ...]:
                return tuple(WalkStep(**dict(s, argv=tuple(s["argv"]), env=tuple(tuple(e) for e in s.get("env", ()))))
                             for s in d.get(key, []))

            return cls(run_id=d["run_id"], module=d["module"], ko=d["ko"], params=tuple(d.get("params", ())),
                       requires=tuple(d.get("requires", ())), before=steps("before"), loaded=steps("loaded"),
                       phases=tuple((str(p), int(n)) for p, n in d.get("phases", ())),
                       counted=tuple(d.get("counted", ())), only=bool(d.get("only", False)),
                       redo=tuple((str(p), int(n)) for p, n in d.get("redo", ())),
                       require=(int(d["require"][0]), int(d["require"][1])),
                       module_timeout=float(d.get("module_timeout", 60.0)),
                       max_points=int(d.get("max_points", 1000)), env=tuple(sorted(d.get("env", {}).items())))
        except (ValueError, KeyError, TypeError, IndexError, AttributeError) as e:
            if isinstance(e, PlanError):
                raise
            raise PlanError(f"walk plan: malformed ({e!r})") from None

    def step(self, name: str) -> WalkStep:
        return next(s for s in self.loaded if s.name == name)


@dataclass(frozen=True)
class ProcRun:
    """One process the walker ran in a point: what it was, how it ended."""

    what: str  # "insmod", "rmmod", a step's name
    argv: Tuple[str, ...]
    pid: Optional[int] = None
    timeout: float = 0.0  # its limit, in seconds
    returncode: Optional[int] = None  # None: timed out
    timed_out: bool = False
    stuck: bool = False  # timed out and still not gone after SIGKILL (asleep in the kernel)
    armed: Optional[int] = None  # the fail-nth it ran with (None: unarmed)
    remaining: Optional[int] = None  # fail-nth read back after it ended: 0 = the fault was injected
    stdout: str = ""
    stderr: str = ""
    seconds: float = 0.0

    @classmethod
    def from_dict(cls, d: Dict[str, Any]) -> "ProcRun":
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known and k != "argv"}, argv=tuple(d.get("argv", ())))


@dataclass(frozen=True)
class PointRun:
    """What the walker did in one point, and what it saw; the host judges it."""

    phase: str
    n: int
    procs: Tuple[ProcRun, ...] = ()  # in order: the armed one among them
    seq_before: Optional[int] = None  # the walker's mark before the point: its records come after
    seq_after: Optional[int] = None  # the mark after it (after the leak scan): its records end there
    taint_before: int = 0
    taint_after: int = 0
    sections: Dict[str, int] = field(default_factory=dict)  # the module's section addresses in this point's load
    init_fn: Optional[int] = None  # the address of the module's init function in this point's load, if seen
    loaded_after: bool = False  # the module was still loaded once the walker tried to unload it
    fresh: str = ""  # why the walker gave this guest up after this point ("" : it walks on)
    problem: str = ""  # why the point could not be run as planned (a clean load failed, ...)
    seconds: float = 0.0

    @property
    def armed(self) -> Optional[ProcRun]:
        return next((p for p in self.procs if p.armed is not None), None)

    @property
    def injected(self) -> bool:
        a = self.armed
        return a is not None and a.remaining == 0 and self.n > 0

    @property
    def calls(self) -> Optional[int]:
        """For the count pass: the module's fault-injectable calls it made."""
        a = self.armed
        if a is None or a.remaining is None or a.armed is None:
            return None
        return a.armed - a.remaining

    def to_dict(self) -> Dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Dict[str, Any]) -> "PointRun":
        known = {f.name for f in fields(cls)}
        try:
            procs = tuple(ProcRun.from_dict(p) for p in d.get("procs", ()))
            rest = {k: v for k, v in d.items() if k in known and k not in ("procs", "sections")}
            sections = {str(k): int(v) for k, v in (d.get("sections") or {}).items()}
            return cls(procs=procs, sections=sections, **rest)
        except (TypeError, ValueError, AttributeError) as e:
            raise PlanError(f"fault point: malformed ({e!r})") from None


def loaded_steps_before(plan: WalkPlan, step: str) -> List[WalkStep]:
    """The loaded steps that come before ``step``: run unarmed before it, as the project runs them."""
    out: List[WalkStep] = []
    for s in plan.loaded:
        if s.name == step:
            break
        out.append(s)
    return out

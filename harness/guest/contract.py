"""The host-guest contract: the plan the host writes, the events and the report the guest sends.

Defined once, here, and imported by both sides: by the harness on the host, and
by the guest runner (``runner.py``), which runs on the guest root's own python3
(3.9 on bullseye) with the standard library only. Keep this module that way:
no third-party imports, nothing from the rest of ``harness``.

The guest runner speaks on one channel (virtme-ng's exec channel, or the SSH
command's stdout): one event per line, each ``PREFIX`` followed by a JSON object
with ``"event"`` naming its kind and ``"run"`` the plan's run id, which nothing
in the guest but the runner knows to write. Anything else on the channel is not
ours and is kept in the transcript only. Events are sent as they happen, so a
guest that dies still leaves every record and step boundary it got out before
dying.
"""

from __future__ import annotations

import json
from collections import deque
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Dict, List, Optional, Tuple

VERSION = 3  # bump on any change to the plan, the events or the report (3: steps have index, kind, env, cwd)
PREFIX = "@kmod-harness@ "
GUEST_RUN_DIR = "/harness"  # the host's run directory, shared read-write
PLAN_FILE = "plan.json"
REPORT_FILE = "guest-result.json"
RUNNER_FILE = "runner.py"
CONTRACT_FILE = "contract.py"

# Event kinds, in the order a healthy run sends them.
HELLO = "hello"  # {version}: the runner started and speaks VERSION
KMSG = "kmsg"  # {raw}: one /dev/kmsg record, as read
MARKER = "marker"  # {seq}: the runner's own record, written just before the first step
STEP_START = "step-start"  # {name, index}
STEP_END = "step-end"  # {step: StepReport}
REPORT = "report"  # {path}: the whole GuestReport is written at path
EVENTS = (HELLO, KMSG, MARKER, STEP_START, STEP_END, REPORT)

# When a project step runs, relative to the module's insmod and rmmod.
WHEN = ("before", "loaded", "after")

# What a step is: the judge goes by a step's kind and index, never by its name (a user step
# may be called anything, twice if a file says so, and never makes another step's result).
BUILD, MODPROBE, LOAD, STEP, KUNIT, UNLOAD, COVERAGE = "build", "modprobe", "load", "step", "kunit", "unload", \
    "coverage"
KINDS = (BUILD, MODPROBE, LOAD, STEP, KUNIT, UNLOAD, COVERAGE)
WORK_DIR = "/tmp/harness-work"  # the steps' writable directory in the guest (guest RAM), $HARNESS_WORK


# What a report keeps of the kernel log: a kernel that logs without end (a thread printing in a
# loop) must fill neither the guest's memory nor the host's disk. The first KMSG_HEAD records and
# the last KMSG_TAIL are kept; how many were left out between them is said (kmsg_dropped).
KMSG_HEAD = 20000
KMSG_TAIL = 20000


class HeadTail:
    """A list that keeps its first ``head`` items and its last ``tail``, counting what it dropped."""

    def __init__(self, head: int = KMSG_HEAD, tail: int = KMSG_TAIL) -> None:
        self.head: List[str] = []
        self.tail: "deque[str]" = deque(maxlen=tail)
        self.limit = head
        self.dropped = 0

    def append(self, item: str) -> None:
        if len(self.head) < self.limit:
            self.head.append(item)
            return
        if self.tail.maxlen is not None and len(self.tail) == self.tail.maxlen:
            self.dropped += 1
        self.tail.append(item)

    def items(self) -> Tuple[str, ...]:
        return tuple(self.head) + tuple(self.tail)

    def last(self) -> Optional[str]:
        return self.tail[-1] if self.tail else (self.head[-1] if self.head else None)

    def __len__(self) -> int:
        return len(self.head) + len(self.tail)


class ContractError(ValueError):
    """A plan or report that does not follow this contract (or another version of it)."""


@dataclass(frozen=True)
class PlanStep:
    name: str
    argv: Tuple[str, ...]
    timeout: float = 60.0
    expect_rc: int = 0
    required: bool = False  # when it fails, later steps are skipped (but not ``always`` ones)
    always: bool = False  # runs even after a required step failed (rmmod)
    kind: str = STEP  # one of KINDS
    env: Tuple[Tuple[str, str], ...] = ()  # added to the plan's environment for this step
    cwd: Optional[str] = None  # None: WORK_DIR


@dataclass(frozen=True)
class Plan:
    steps: Tuple[PlanStep, ...]
    run_id: str  # written into the marker record, so the host knows the marker is this run's
    env: Tuple[Tuple[str, str], ...] = ()
    version: int = VERSION

    def to_json(self) -> str:
        d = asdict(self)
        d["env"] = dict(self.env)
        return json.dumps(d, indent=1)

    @classmethod
    def from_json(cls, text: str) -> "Plan":
        d = _load(text, "plan")
        try:
            steps = tuple(PlanStep(**dict(s, argv=tuple(s["argv"]), env=tuple(tuple(e) for e in s.get("env", ()))))
                          for s in d["steps"])
            return cls(steps=steps, run_id=d["run_id"], env=tuple(sorted(d.get("env", {}).items())))
        except (KeyError, TypeError) as e:
            raise ContractError(f"plan: malformed ({e})") from None


@dataclass(frozen=True)
class StepReport:
    name: str
    argv: Tuple[str, ...]
    returncode: Optional[int] = None  # None: did not run, or timed out
    stdout: str = ""
    stderr: str = ""
    seconds: float = 0.0
    timed_out: bool = False
    skipped: bool = False
    reason: str = ""  # why it was skipped
    kmsg_seq_before: Optional[int] = None  # the runner's record before the step started (or an earlier one)
    kmsg_seq_after: Optional[int] = None  # the runner's record after it ended: the step's records lie between
    note: str = ""  # what else the runner saw (a child that kept the step's output open)
    index: Optional[int] = None  # the step's place in the plan (0-based); None in reports older than version 3
    kind: str = STEP
    expect_rc: int = 0  # what the plan expected of it

    @property
    def ran(self) -> bool:
        return self.returncode is not None or self.timed_out

    def to_dict(self) -> Dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Dict[str, Any]) -> "StepReport":
        known = {f.name for f in fields(cls)}
        try:
            return cls(**{k: v for k, v in d.items() if k in known and k != "argv"}, argv=tuple(d["argv"]))
        except (KeyError, TypeError) as e:
            raise ContractError(f"step report: malformed ({e})") from None


@dataclass(frozen=True)
class GuestReport:
    steps: Tuple[StepReport, ...]
    kmsg: Tuple[str, ...]  # raw /dev/kmsg records, every one read since the runner started
    marker_seq: Optional[int] = None  # the run's marker record; records after it are the run's
    kmsg_lost: int = 0  # records overwritten before they were read (EPIPE)
    kmsg_dropped: int = 0  # records read but left out of ``kmsg`` (the middle of an endless log: KMSG_HEAD/TAIL)
    kmsg_error: Optional[str] = None
    uptime_at_start: Optional[float] = None  # guest uptime when the runner started
    seconds: float = 0.0  # the runner's own duration
    complete: bool = True  # False: rebuilt on the host from the events of a guest that died
    version: int = VERSION

    def to_json(self) -> str:
        d = asdict(self)
        d["steps"] = [s.to_dict() for s in self.steps]
        return json.dumps(d)

    @classmethod
    def from_json(cls, text: str) -> "GuestReport":
        d = _load(text, "guest report")
        try:
            return cls(
                steps=tuple(StepReport.from_dict(s) for s in d["steps"]), kmsg=tuple(d["kmsg"]),
                marker_seq=d.get("marker_seq"), kmsg_lost=d.get("kmsg_lost", 0), kmsg_error=d.get("kmsg_error"),
                kmsg_dropped=d.get("kmsg_dropped", 0),
                uptime_at_start=d.get("uptime_at_start"), seconds=d.get("seconds", 0.0),
                complete=d.get("complete", True),
            )
        except (KeyError, TypeError) as e:
            raise ContractError(f"guest report: malformed ({e})") from None


def _load(text: str, what: str) -> Dict[str, Any]:
    try:
        d = json.loads(text)
    except ValueError as e:
        raise ContractError(f"{what}: not JSON ({e})") from None
    if not isinstance(d, dict):
        raise ContractError(f"{what}: not a JSON object")
    check_version(d.get("version"), what)
    return d


def check_version(version: object, what: str) -> None:
    if version != VERSION:
        raise ContractError(f"{what} speaks contract version {version!r}, this harness speaks {VERSION}: "
                            "the guest runner and the harness come from different releases")


HARNESS_RECORD = "kmod-harness: run "  # how the runner's own records start (facility LOG_USER)


def marker_text(run_id: str) -> str:
    """The text of the record the runner writes into the kernel log before the first step."""
    return f"{HARNESS_RECORD}{run_id}: first guest step starts"


def step_end_text(run_id: str, index: int) -> str:
    """The text of the record the runner writes after step ``index`` (0-based) ended."""
    return f"{HARNESS_RECORD}{run_id}: step {index + 1} ended"


# ---- the event channel -----------------------------------------------------------------


def encode_event(kind: str, run: str, **data: Any) -> str:
    """One line (without its newline) carrying one event of the run ``run``."""
    return PREFIX + json.dumps(dict(data, event=kind, run=run), separators=(",", ":"))


def decode_event(line: str) -> Optional[Dict[str, Any]]:
    """The event a channel line carries, or None for a line that is not ours (or is cut short)."""
    start = line.find(PREFIX)
    if start < 0:
        return None
    try:
        d = json.loads(line[start + len(PREFIX):])
    except ValueError:
        return None
    if not isinstance(d, dict) or d.get("event") not in EVENTS:
        return None
    return d


@dataclass
class EventLog:
    """What the events of one guest run said, folded as they arrive (the host's side).

    When the guest dies before its report, ``partial_report`` rebuilds one from the
    events: the records up to the last one sent, the steps that ended, and the step
    that was running.
    """

    run_id: str = ""  # events of another run (or forged ones, without it) are ignored
    version: Optional[int] = None
    records: HeadTail = field(default_factory=HeadTail)
    marker_seq: Optional[int] = None
    steps: List[StepReport] = field(default_factory=list)
    running: Optional[str] = None  # the step that started and has not ended
    running_index: Optional[int] = None
    report_path: Optional[str] = None

    def feed(self, event: Dict[str, Any]) -> None:
        if event.get("run") != self.run_id:
            return
        kind = event["event"]
        if kind == HELLO:
            self.version = event.get("version")
        elif kind == KMSG:
            self.records.append(str(event.get("raw", "")))
        elif kind == MARKER:
            self.marker_seq = event.get("seq")
        elif kind == STEP_START:
            self.running = str(event.get("name"))
            index = event.get("index")
            self.running_index = index if isinstance(index, int) else None
        elif kind == STEP_END:
            self.steps.append(StepReport.from_dict(event["step"]))
            self.running = None
        elif kind == REPORT:
            self.report_path = event.get("path")

    def partial_report(self) -> GuestReport:
        steps = list(self.steps)
        if self.running is not None:  # it never ended: the guest died (or hung) inside it
            steps.append(StepReport(name=self.running, argv=(), index=self.running_index,
                                    reason="the guest stopped while it ran"))
        return GuestReport(steps=tuple(steps), kmsg=self.records.items(), marker_seq=self.marker_seq,
                           kmsg_dropped=self.records.dropped,
                           complete=False)

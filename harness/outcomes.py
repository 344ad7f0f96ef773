"""The typed parts of a run's result, kept typed up to the JSON edge (``resultjson``): the frames of
a call trace, a decoded splat, a matched trail record, a KUnit case, a kernel complaint. Frozen
data, no I/O; the verdict code makes them, the reporters read them by attribute."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Optional


@dataclass(frozen=True)
class Frame:
    """One line of a call trace (kernel printk'd ``func+0x16/0x20 [mod]``), decoded when its code is known."""

    function: str
    offset: int
    size: int
    module: Optional[str]  # None: the kernel itself
    reliable: bool  # False: the unwinder printed it with "?", it may be stale
    where: str  # "rip": where it happened; "stack": a frame of the call trace
    seq: int  # the record it came from
    # Filled in by symbolization when the code is known (kernel.symbolize):
    file: Optional[str] = None
    line: Optional[int] = None
    inlined: tuple[tuple[str, str, int], ...] = ()  # (function, file, line) from innermost out

    def describe(self) -> str:
        where = f" at {self.file}:{self.line}" if self.file else ""
        mod = f" [{self.module}]" if self.module else ""
        inl = "".join(f"\n      inlined from {f} at {fi}:{ln}" for f, fi, ln in self.inlined)
        return f"{'' if self.reliable else '? '}{self.function}+{self.offset:#x}/{self.size:#x}{mod}{where}{inl}"


@dataclass(frozen=True)
class SourceExcerpt:
    """The lines around the faulting line of the module's own source."""

    file: str
    line: int
    first: int  # the number of lines[0]
    lines: tuple[str, ...]


@dataclass(frozen=True)
class SplatReport:
    """A splat of the run (or of its boot), with its call trace and what of it is the module's."""

    rule: str
    reason: str
    text: str
    seq: Optional[int] = None  # None: read from the console of a guest that died
    trace: tuple[Frame, ...] = ()
    module_frames: tuple[str, ...] = ()  # the module's frames, described
    source: Optional[SourceExcerpt] = None


@dataclass(frozen=True)
class TrailRecord:
    """A kernel record that matched the trail's expectation of its place."""

    seq: int
    level: int
    usec: int
    text: str


class CaseStatus(str, enum.Enum):
    """A KUnit case's result (KTAP): a string too, as result.json has it."""

    PASS = "pass"
    FAIL = "fail"
    SKIP = "skip"
    TODO = "todo"  # an expected failure
    CRASHED = "crashed"  # no result line came: the kernel died, or the module hung

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True)
class Case:
    """One leaf test: a KUnit test case (or one parameter of a parameterized one)."""

    suite: str  # the enclosing tests' names, outermost first, joined with "."
    name: str
    status: CaseStatus
    reason: str = ""
    diagnostics: tuple[str, ...] = ()

    @property
    def failed(self) -> bool:
        return self.status in (CaseStatus.FAIL, CaseStatus.CRASHED)

    @property
    def full_name(self) -> str:
        return f"{self.suite}.{self.name}" if self.suite else self.name


@dataclass(frozen=True)
class ComplaintReport:
    """A kernel complaint about the module (verdict/complaints.py), and who allowed it, if anyone."""

    seq: int
    level: int
    text: str
    why: str
    kind: str
    allowed_by: Optional[str] = None

"""A matrix against what was known: a baseline matrix.json, and the failures expected. Pure.

Each kernel's outcome is compared with the baseline's (newly failing, fixed, still failing,
new kernel) and with the failure its matrix entry or the project expects. The exit code
counts only what is new: a failure the baseline already had, or one that is expected and
fails the way it is expected to, is reported but does not fail the matrix.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Mapping, Optional, Sequence

from harness.model import RunResult, Verdict, worst


@dataclass(frozen=True)
class Outcome:
    """What a matrix keeps of one kernel's run, and what runs are compared by."""

    kernel: str
    verdict: str
    reason: str = ""  # its first line
    failed_phase: Optional[str] = None
    trail_problem: Optional[str] = None  # the first line of the trail's diff
    splat: Optional[str] = None  # the first splat's text
    kernel_release: Optional[str] = None
    package_version: Optional[str] = None
    classification: Optional[str] = None  # pass, fail or flaky over its attempts (verdict/flaky.py)

    @property
    def state(self) -> str:
        """pass, fail or flaky: what the baseline diff compares (a result without attempts: its verdict)."""
        if self.classification in ("pass", "fail", "flaky"):
            return self.classification
        return "pass" if self.verdict == Verdict.PASS.value else "fail"

    @classmethod
    def of(cls, r: RunResult) -> "Outcome":
        return cls(kernel=r.kernel, verdict=r.verdict.value, reason=r.reason.split("\n")[0],
                   failed_phase=next((p.name for p in r.phases if not p.ok), None),
                   trail_problem=r.trail_diff.split("\n")[0] if r.trail_diff else None,
                   splat=r.splats[0]["text"] if r.splats else None,
                   kernel_release=r.kernel_release, package_version=r.package_version,
                   classification=r.classification)

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> "Outcome":
        """From a matrix.json entry (older files lack some keys: they read as unknown)."""
        return cls(kernel=d["kernel"], verdict=d["verdict"], reason=d.get("reason", ""),
                   failed_phase=d.get("failed_phase"), trail_problem=d.get("trail_problem"), splat=d.get("splat"),
                   kernel_release=d.get("kernel_release"), package_version=d.get("package_version"),
                   classification=d.get("classification"))


@dataclass(frozen=True)
class Expected:
    """A failure that is known: the kernel, the verdict it gives, why, and optionally a regex its reason matches."""

    kernel: str
    verdict: str
    why: str
    match: Optional[str] = None

    def holds(self, o: Outcome) -> bool:
        return o.verdict == self.verdict and (self.match is None or re.search(self.match, o.reason) is not None)


@dataclass(frozen=True)
class Row:
    kernel: str
    status: str  # see STATUSES
    new: Optional[Outcome]
    old: Optional[Outcome] = None
    changes: tuple[str, ...] = ()
    counts: bool = False  # whether it makes the matrix fail
    why: str = ""  # an expected failure's reason

    def to_json(self) -> dict[str, Any]:
        return {"kernel": self.kernel, "status": self.status, "counts": self.counts, "changes": list(self.changes),
                "why": self.why, "old_verdict": self.old.verdict if self.old else None,
                "verdict": self.new.verdict if self.new else None}


STATUSES = ("new failure", "newly flaky", "failing", "flaky", "failed otherwise", "new kernel", "still failing",
            "still flaky", "flaky, was failing", "expected failure", "unexpected pass", "fixed", "pass", "gone")


def changes(old: Outcome, new: Outcome) -> tuple[str, ...]:
    out = []
    if "flaky" in (old.state, new.state) and old.state != new.state:
        out.append(f"attempts: {old.state} -> {new.state}")
    for what, a, b in (("verdict", old.verdict, new.verdict), ("phase", old.failed_phase, new.failed_phase),
                       ("trail", old.trail_problem, new.trail_problem), ("splat", old.splat, new.splat),
                       ("package", old.package_version, new.package_version)):
        if a != b:
            out.append(f"{what}: {a or '-'} -> {b or '-'}")
    return tuple(out)


def compare(new: Sequence[Outcome], old: Optional[Sequence[Outcome]] = None,
            expected: Optional[Mapping[str, Expected]] = None) -> list[Row]:
    """One row per kernel of ``new`` (and one per kernel the baseline had and this matrix has not)."""
    before = {o.kernel: o for o in old or ()}
    rows = [_row(o, before.get(o.kernel), old is not None, (expected or {}).get(o.kernel)) for o in new]
    now = {o.kernel for o in new}
    rows += [Row(k, "gone", None, o) for k, o in before.items() if k not in now]
    return rows


# (state before, state now) -> (status, whether it counts). A flaky cell is a state of its own: it counts when it
# is new (it passed before) or got worse (it now fails every attempt); flaky again, or flaky after failing, does not.
_AGAINST_BASELINE = {
    ("pass", "pass"): ("pass", False), ("pass", "fail"): ("new failure", True),
    ("pass", "flaky"): ("newly flaky", True), ("fail", "pass"): ("fixed", False),
    ("fail", "fail"): ("still failing", False), ("fail", "flaky"): ("flaky, was failing", False),
    ("flaky", "pass"): ("fixed", False), ("flaky", "fail"): ("new failure", True),
    ("flaky", "flaky"): ("still flaky", False),
}


def _row(o: Outcome, prev: Optional[Outcome], have_baseline: bool, exp: Optional[Expected]) -> Row:
    passed = o.state == "pass"
    if exp is not None:
        if exp.holds(o):
            return Row(o.kernel, "expected failure", o, prev, why=exp.why)
        if passed:
            return Row(o.kernel, "unexpected pass", o, prev, why=exp.why)
        return Row(o.kernel, "failed otherwise", o, prev, (f"expected {exp.verdict}, got {o.verdict}: {o.reason}",),
                   counts=True, why=exp.why)
    if not have_baseline:
        return Row(o.kernel, {"pass": "pass", "fail": "failing", "flaky": "flaky"}[o.state], o, counts=not passed)
    if prev is None:
        return Row(o.kernel, "new kernel", o, counts=not passed)
    status, counted = _AGAINST_BASELINE[(prev.state, o.state)]
    return Row(o.kernel, status, o, prev, () if status == "pass" else changes(prev, o), counts=counted)


def exit_code(rows: Sequence[Row]) -> int:
    """The worst verdict among the rows that count; 0 when nothing new failed."""
    counting = [Verdict(r.new.verdict) for r in rows if r.counts and r.new is not None]
    return worst(counting).exit_code if counting else 0


def markdown(rows: Sequence[Row]) -> list[str]:
    """Rows that say something (all but plain passes), as a Markdown table."""
    telling = [r for r in rows if r.status != "pass"]
    if not telling:
        return []
    out = ["| kernel | status | verdict | what changed, or why |", "| --- | --- | --- | --- |"]
    for r in telling:
        verdict = (f"{r.old.verdict} -> " if r.old and r.new and r.old.verdict != r.new.verdict else "") + (
            r.new.verdict if r.new else "-")
        said = "; ".join(r.changes) or r.why or "-"
        out.append(f"| `{r.kernel}` | {'**' + r.status + '**' if r.counts else r.status} | {verdict} | "
                   f"{said.replace('|', '/')} |")
    return out

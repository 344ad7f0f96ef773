"""The expected printk trail: loaded from data, matched against kmsg records.

Every record of the window that matches any expectation is "relevant"; the
relevant records must be exactly the expected sequence (order, count, level).
Records that match nothing are "other": listed, and failing only when the
trail says ``strict = true`` and they are not allowed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Optional, Sequence

from harness import schema
from harness.model import KmsgRecord


@dataclass(frozen=True)
class Expectation:
    regex: re.Pattern[str]
    source: str  # the text or pattern as written, for messages
    level: Optional[int] = None
    count: int = 1

    def matches_text(self, r: KmsgRecord) -> bool:
        return self.regex.fullmatch(r.text) is not None

    def describe(self) -> str:
        lvl = f"<{self.level}>" if self.level is not None else "<any>"
        return f"{lvl} {self.source!r}"


@dataclass(frozen=True)
class Allowance:
    regex: re.Pattern[str]
    reason: str


@dataclass(frozen=True)
class Trail:
    expect: tuple[Expectation, ...]
    allow: tuple[Allowance, ...] = ()
    strict: bool = False


@dataclass
class TrailMatch:
    ok: bool
    matched: list[KmsgRecord] = field(default_factory=list)
    other: list[KmsgRecord] = field(default_factory=list)
    allowed: list[KmsgRecord] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    def diff(self) -> str:
        return "\n".join(self.problems)


def parse_trail(data: dict[str, Any], name: str = "trail", text: str = "") -> Trail:
    """A trail from a parsed trail file (``text``, the file's own, gives errors their line)."""
    return from_model(schema.check(schema.TrailFile, schema.Document(data, text, name)))


def from_model(m: schema.TrailFile) -> Trail:
    expect = tuple(Expectation(regex=re.compile(re.escape(e.text) if e.text is not None else str(e.pattern)),
                               source=e.text if e.text is not None else str(e.pattern), level=e.level, count=e.count)
                   for e in m.expect)
    return Trail(expect=expect, allow=tuple(Allowance(re.compile(a.pattern), a.reason) for a in m.allow),
                 strict=m.strict)


def match(trail: Trail, records: Sequence[KmsgRecord]) -> TrailMatch:
    expected = [e for e in trail.expect for _ in range(e.count)]
    res = TrailMatch(ok=True)
    relevant = []
    for r in records:
        if any(e.matches_text(r) for e in trail.expect):
            relevant.append(r)
        elif any(a.regex.search(r.text) for a in trail.allow):
            res.allowed.append(r)
        else:
            res.other.append(r)
    for i, exp in enumerate(expected):
        got = relevant[i] if i < len(relevant) else None
        if got is None:
            res.problems.append(f"expected record #{i + 1} {exp.describe()}: missing (the trail ended)")
            break
        if not exp.matches_text(got) or (exp.level is not None and got.level != exp.level):
            res.problems.append(
                f"expected record #{i + 1} {exp.describe()}\n"
                f"     but got seq {got.seq} <{got.level}> {got.text!r}"
            )
            break
        res.matched.append(got)
    else:
        for extra in relevant[len(expected):]:
            res.problems.append(f"unexpected extra record seq {extra.seq} <{extra.level}> {extra.text!r}")
    if res.problems and res.other and not trail.strict:
        res.problems.append("records in the window that match no expectation:")
        res.problems += [f"  seq {r.seq} <{r.level}> {r.text!r}" for r in res.other[:10]]
        if len(res.other) > 10:
            res.problems.append(f"  ... and {len(res.other) - 10} more")
    if trail.strict:
        for r in res.other:
            res.problems.append(f"record not in the trail (strict): seq {r.seq} <{r.level}> {r.text!r}")
    res.ok = not res.problems
    return res

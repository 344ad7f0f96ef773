"""KTAP (versions 1 and 2, and TAP 13/14 headers) read from kernel log records: KUnit's results.

KUnit prints one line per record, nesting by indentation: the module's document at
the left margin (``KTAP version 1``, ``1..N``, one result per suite), each suite one
level in (``# Subtest: NAME``, its plan, one result per case). A parameterized case
nests once more, one result per parameter.

The tree is rebuilt from the indentation: a result line (``ok N name``,
``not ok N name # SKIP why``) at some depth closes the test it names, whose subtests
are the results one level further in since then. A failed case's messages come
before its result line (KUnit prints them at the case's depth, and a parameterized
case's at the depth of its parent), so every diagnostic goes to the next result
line: the test that was running. A record of several lines (a message with
newlines, escaped ``\\x0a`` in /dev/kmsg) is diagnostics after its first line,
whatever those lines look like; lines of other sources (the module's own printk)
are diagnostics too, as KTAP allows.

What never got its result line (the kernel died, or the module hung) is reported
``crashed`` under the name its ``# Subtest:`` header gave, and a plan that promised more
results than came counts the missing ones. Pure: record texts in, cases out.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Optional, Sequence

from harness.outcomes import Case, CaseStatus

_VERSION = re.compile(r"^(?:KTAP version [12]|TAP version 1[34])$")
_PLAN = re.compile(r"^1\.\.(\d+)$")
_SUBTEST = re.compile(r"^# Subtest: (.+)$")
_RESULT = re.compile(r"^(?P<not>not )?ok (?P<num>\d+)(?: -)?(?: (?P<name>.*?))?(?: # (?P<dir>.*))?$")
_DIRECTIVE = re.compile(r"^(?P<kind>SKIP|TODO)\b\s*(?P<why>.*)$", re.IGNORECASE)
_STATS = re.compile(r"^# (?:Totals|.+?): pass:\d+ fail:\d+ skip:\d+ total:\d+$")
_ATTRIBUTE = re.compile(r"^# [A-Za-z0-9_.]+: \S")

PASS, FAIL, SKIP, TODO, CRASHED = (CaseStatus.PASS, CaseStatus.FAIL, CaseStatus.SKIP, CaseStatus.TODO,
                                   CaseStatus.CRASHED)


@dataclass
class Test:
    name: str
    status: CaseStatus  # PASS, FAIL, SKIP, TODO (an expected failure), CRASHED (no result line came)
    number: Optional[int] = None
    reason: str = ""  # a SKIP's or TODO's reason
    diagnostics: list[str] = field(default_factory=list)
    children: list["Test"] = field(default_factory=list)
    missing: int = 0  # results its plan promised that never came

    @property
    def failed(self) -> bool:
        return self.status in (FAIL, CRASHED) or self.missing > 0


@dataclass
class _Level:
    """What was seen at one depth since the last result line at a shallower one."""

    results: list[Test] = field(default_factory=list)
    subtest: Optional[str] = None  # the name a "# Subtest:" header gave the test these lines belong to
    plan: Optional[int] = None
    version: bool = False  # a version line was seen here: a document (or a suite's) began


def _depth(line: str) -> tuple[int, str]:
    body = line.lstrip(" \t")
    head = line[:len(line) - len(body)]
    return len(head.expandtabs(8)), body.rstrip()


class _Reader:
    """The state of one pass over the records: the open levels, and the diagnostics waiting for
    the result line of the test that printed them."""

    def __init__(self) -> None:
        self.levels: dict[int, _Level] = {}
        self.pending: list[str] = []
        self.started = False

    def record(self, text: str) -> None:
        """One record: its first line is KTAP or a diagnostic; the lines after it (a multi-line
        message, escaped as \\x0a in /dev/kmsg) are diagnostics, whatever they look like."""
        first, *more = text.split("\\x0a")
        depth, body = _depth(first)
        if not self.started:  # whatever came before the first version line is not KTAP
            if not _VERSION.match(body):
                return
            self.started = True
        self.line(depth, body)
        self.pending += [m.strip() for m in more if m.strip()]

    def line(self, depth: int, body: str) -> None:
        if not body:
            return
        m = _RESULT.match(body)
        if m:
            self.close(depth, m)
            return
        level = self.levels.setdefault(depth, _Level())
        plan = _PLAN.match(body)
        subtest = _SUBTEST.match(body)
        if _VERSION.match(body):
            level.version = True
        elif plan:
            level.plan = int(plan.group(1))
        elif subtest:
            level.subtest = subtest.group(1).strip()
        elif level.subtest is not None and level.plan is None and _ATTRIBUTE.match(body):
            pass  # a suite's attributes between its header and its plan ("# module: NAME")
        elif not _STATS.match(body):
            self.pending.append(body)

    def close(self, depth: int, m: re.Match[str]) -> None:
        """A result line at ``depth``: the test it names takes the deeper levels' results as its
        subtests, and the diagnostics printed since the last result line."""
        children: list[Test] = []
        plan = None
        for d in sorted(d for d in self.levels if d > depth):
            lv = self.levels.pop(d)
            if not children and lv.results:
                children, plan = lv.results, lv.plan
            elif lv.results:  # results further in with no result line of their own here: cut short
                children.append(_crashed(lv, []))
        directive = _DIRECTIVE.match(m.group("dir") or "")
        kind = directive.group("kind").upper() if directive else ""
        status = SKIP if kind == "SKIP" else TODO if kind == "TODO" else FAIL if m.group("not") else PASS
        name = (m.group("name") or "").strip() or f"test {m.group('num')}"
        test = Test(name=name, status=status, number=int(m.group("num")),
                    reason=directive.group("why").strip() if directive else "", diagnostics=self.pending,
                    children=children, missing=max(0, (plan or 0) - len(children)))
        self.pending = []
        self.levels.setdefault(depth, _Level()).results.append(test)

    def tests(self) -> list[Test]:
        """The outermost level's results, with every deeper level that never closed as a crashed test."""
        if not self.levels:
            return []
        depths = sorted(self.levels)
        top = self.levels[depths[0]]
        tests = list(top.results)
        inner: Optional[Test] = None
        for d in reversed(depths[1:]):  # innermost first: each unfinished test is a child of the one outside it
            lv = self.levels[d]
            if not (lv.version or lv.subtest or lv.results or lv.plan is not None):
                continue
            t = _crashed(lv, self.pending if inner is None else [])
            if inner is not None:
                t.children.append(inner)
            inner = t
        if inner is not None:
            tests.append(inner)
        elif top.subtest and not top.results:  # a suite at the top with no result: its plan was its cases'
            return [_crashed(top, self.pending)]
        if top.plan is not None and top.plan > len(tests) and inner is None:
            tests.append(Test(name=f"{top.plan - len(tests)} test(s) of the plan", status=CRASHED,
                              diagnostics=["their results never came"] + self.pending))
        return tests


def parse(records: Sequence[str]) -> list[Test]:
    """The top-level tests of the KTAP documents in the texts of ``records`` (usually one document
    per test module), in order."""
    reader = _Reader()
    for text in records:
        reader.record(text)
    return reader.tests()


def _crashed(level: _Level, diagnostics: list[str]) -> Test:
    return Test(name=level.subtest or "(unnamed)", status=CRASHED, diagnostics=list(diagnostics),
                children=list(level.results), missing=max(0, (level.plan or 0) - len(level.results)))


def cases(tests: Sequence[Test], suite: str = "") -> list[Case]:
    """Every leaf of the trees, in order: the test cases. A test cut short (crashed, or with results
    its plan promised missing), or failed with no failing leaf (a suite whose init failed), is
    itself listed after its cases, as a failing one."""
    out: list[Case] = []
    for t in tests:
        if not t.children:
            out.append(Case(suite, t.name, t.status, t.reason, tuple(t.diagnostics)))
            continue
        inner = cases(t.children, f"{suite}.{t.name}" if suite else t.name)
        out += inner
        if t.status == CRASHED or t.missing or (t.failed and not any(c.failed for c in inner)):
            why = (f"{t.missing} of its results never came" if t.missing else
                   "it failed, though none of its cases did")
            out.append(Case(suite, t.name, FAIL if t.status != CRASHED else CRASHED, why,
                            tuple(t.diagnostics)))
    return out


def summary(found: Sequence[Case]) -> str:
    """``5 passed, 1 failed, 1 skipped`` (what there is of each)."""
    counts = {s: sum(1 for c in found if c.status == s) for s in (PASS, FAIL, CRASHED, SKIP, TODO)}
    words = {PASS: "passed", FAIL: "failed", CRASHED: "crashed", SKIP: "skipped", TODO: "todo"}
    return ", ".join(f"{n} {words[s]}" for s, n in counts.items() if n) or "no test cases"

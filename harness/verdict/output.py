"""A failing step's output, shown where people look: the line that failed first, then the tail. Pure.

The last line of a step's output is often an "ok" line printed after the failure; the line
that says what failed (``FAIL sha256: ... (want ...)``, a Python traceback, an assertion)
is what a maintainer needs on the terminal, in index.html and in junit.xml.
"""

from __future__ import annotations

import re
from typing import Optional, Sequence

from harness.guest.contract import StepReport

TAIL_LINES = 20
LINE_CHARS = 300
# What a line that reports a failure looks like, in test programs of every kind.
FAILURE = re.compile(r"(\bfail(s|ed|ure)?\b|\berror\b|^Traceback \(most recent call last\)|\bassert(ion)?\b|"
                     r"\bnot ok\b|\bpanic\b|\bSegmentation fault\b|\bAborted\b|\bmismatch)", re.I)


def _lines(text: str) -> list[str]:
    return [ln[:LINE_CHARS] + ("..." if len(ln) > LINE_CHARS else "") for ln in text.splitlines() if ln.strip()]


def first_failure(st: StepReport) -> Optional[str]:
    """The first line of stderr, then of stdout, that looks like a failure (None: none does). In a
    unified diff (a test comparing its output with the expected), the first changed line."""
    for text in (st.stderr, st.stdout):
        lines = _lines(text)
        changed = _first_change(lines)
        if changed is not None:
            return changed
        for line in lines:
            if FAILURE.search(line):
                return line
    return None


def _first_change(lines: list[str]) -> Optional[str]:
    """The first - or + line after a diff's first hunk header (``@@ -a,b +c,d @@``), if there is one."""
    hunk = next((i for i, ln in enumerate(lines) if re.match(r"@@ -\d+(,\d+)? \+\d+(,\d+)? @@", ln)), None)
    if hunk is None:
        return None
    return next((ln for ln in lines[hunk + 1:] if ln[:1] in "-+" and not ln.startswith(("---", "+++"))), None)


def tail(text: str, n: int = TAIL_LINES) -> list[str]:
    return _lines(text)[-n:]


def excerpt(st: StepReport) -> str:
    """``: <the failing line>`` and the tails of stderr and stdout, for a verdict's reason."""
    first = first_failure(st) or next(iter(reversed(_lines(st.stderr) or _lines(st.stdout))), None)
    out = f": {first}" if first else ""
    for name, text in (("stderr", st.stderr), ("stdout", st.stdout)):
        lines = tail(text)
        if lines and lines != [first]:
            out += f"\n  {name} (last {len(lines)} lines):\n" + "\n".join(f"    {ln}" for ln in lines)
    if st.note:
        out += f"\n  note: {st.note}"
    return out


def failing_step(steps: Sequence[StepReport]) -> Optional[StepReport]:
    """The step that failed a run: the first that timed out, else the first whose exit status is not
    the one its plan expected (reports since contract v3 carry it)."""
    timed = next((s for s in steps if s.timed_out), None)
    return timed or next((s for s in steps if s.returncode is not None and s.returncode != s.expect_rc), None)

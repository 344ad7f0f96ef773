"""Each cell's history over earlier runs: when it started failing, the first commit that failed. Pure.

A history entry is one run's matrix.json with a ``run`` object (commit, date, ref, url and ``ok``:
whether that report passed, i.e. nothing new failed). ``harness report --history DIR`` keeps them
(``harness/history_store.py``); here they are read, the baseline is chosen (the newest run that
was ok: the last successful one) and each cell's line of states is drawn.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from html import escape
from typing import Any, Mapping, Optional, Sequence

from harness.verdict import compare

SHOWN = 30  # points drawn per cell in index.html


@dataclass(frozen=True)
class Entry:
    commit: str
    date: str  # ISO 8601, UTC
    ref: str = ""
    url: str = ""
    ok: bool = False  # the report passed: a baseline candidate
    outcomes: tuple[compare.Outcome, ...] = ()

    def outcome(self, kernel: str) -> Optional[compare.Outcome]:
        return next((o for o in self.outcomes if o.kernel == kernel), None)


def run_meta(e: Entry) -> dict[str, Any]:
    """The ``run`` object of a matrix.json."""
    return {"commit": e.commit, "date": e.date, "ref": e.ref, "url": e.url, "ok": e.ok}


def _text(d: Mapping[str, Any], key: str, required: bool = False) -> str:
    v = d.get(key, "")
    if not isinstance(v, str) or (required and not v):
        raise ValueError(f"run.{key} must be a{' non-empty' if required else ''} string, got {v!r}")
    return v


def entry_from_json(d: Any) -> Entry:
    """An entry from a matrix.json that has a ``run``; ValueError names what is wrong."""
    if not isinstance(d, Mapping) or not isinstance(d.get("run"), Mapping):
        raise ValueError("not a matrix.json with a run object (commit, date, ok)")
    run = d["run"]
    date = _text(run, "date", required=True)
    try:
        datetime.fromisoformat(date)
    except ValueError:
        raise ValueError(f"run.date is not an ISO 8601 date: {date!r}") from None
    if not isinstance(run.get("ok"), bool):
        raise ValueError(f"run.ok must be true or false, got {run.get('ok')!r}")
    kernels = d.get("kernels")
    if not isinstance(kernels, list):
        raise ValueError("kernels must be a list")
    try:
        outcomes = tuple(compare.Outcome.from_json(k) for k in kernels)
    except (KeyError, TypeError, AttributeError) as e:
        raise ValueError(f"a kernel entry is malformed ({type(e).__name__}: {e})") from None
    if not all(isinstance(o.kernel, str) and isinstance(o.verdict, str) for o in outcomes):
        raise ValueError("each kernel entry needs kernel and verdict strings")
    return Entry(_text(run, "commit", required=True), date, _text(run, "ref"), _text(run, "url"), run["ok"],
                 outcomes)


def ordered(entries: Sequence[Entry]) -> list[Entry]:
    """Oldest first, by date (then commit, for entries of the same second)."""
    return sorted(entries, key=lambda e: (datetime.fromisoformat(e.date), e.commit))


def baseline(entries: Sequence[Entry]) -> Optional[Entry]:
    """The last successful run: the newest entry whose report was ok."""
    good = [e for e in ordered(entries) if e.ok]
    return good[-1] if good else None


@dataclass(frozen=True)
class Point:
    commit: str
    date: str
    url: str
    state: str  # pass, fail, flaky; "-" when the run had no such cell
    verdict: str


@dataclass(frozen=True)
class CellHistory:
    kernel: str
    points: tuple[Point, ...]  # oldest first, this run last
    since: Optional[Point]  # the first point of the current streak of failing (or flaky) runs
    since_the_start: bool  # that streak goes back to the oldest run kept

    @property
    def failing(self) -> bool:
        return self.since is not None


def cell(kernel: str, entries: Sequence[Entry], now: Entry) -> CellHistory:
    points = []
    for e in [*ordered(entries), now]:
        o = e.outcome(kernel)
        points.append(Point(e.commit, e.date, e.url, o.state if o else "-", o.verdict if o else "-"))
    streak = 0
    for p in reversed(points):
        if p.state in ("pass", "-"):
            break
        streak += 1
    since = points[-streak] if streak else None
    return CellHistory(kernel, tuple(points), since, streak == len(points) and streak > 0)


def cells(kernels: Sequence[str], entries: Sequence[Entry], now: Entry) -> dict[str, CellHistory]:
    return {k: cell(k, entries, now) for k in kernels}


def sentence(h: CellHistory) -> str:
    """``failing since 2026-12-01 (first failing commit 1a2b3c4d5e6f)`` and the like."""
    runs = len(h.points)
    if h.since is None:
        return f"passing ({runs} run{'s' * (runs != 1)} in the history)"
    state = "failing" if h.points[-1].state == "fail" else "failing or flaky"
    at_least = "at least " if h.since_the_start and runs > 1 else ""
    first = "this run" if h.since is h.points[-1] else f"commit {h.since.commit[:12]}"
    return f"{state} since {at_least}{h.since.date[:10]} (first failing: {first}; {runs} run{'s' * (runs != 1)} in " \
        "the history)"


def html(h: CellHistory) -> str:
    """A row of squares, oldest first, each titled with its date, commit and verdict; then the sentence."""
    cells_ = []
    for p in h.points[-SHOWN:]:
        title = escape(f"{p.date[:19]} {p.commit[:12]} {p.verdict} ({p.state})", quote=True)
        square = f'<span class="hist {escape(p.state if p.state != "-" else "none")}" title="{title}"></span>'
        if p.url.startswith(("https://", "http://")):
            square = f'<a href="{escape(p.url, quote=True)}">{square}</a>'
        cells_.append(square)
    return f'<span class=history>{"".join(cells_)}</span> {escape(sentence(h))}'


CSS = (".hist{display:inline-block;width:.8em;height:.8em;margin-right:1px;border:1px solid #999}"
       ".hist.pass{background:#5cb85c}.hist.fail{background:#d9534f}.hist.flaky{background:#f0ad4e}"
       ".hist.none{background:#fff}")

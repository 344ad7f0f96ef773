"""Results of many machines merged into one report (``harness report``). Pure: results in, results out.

The same cell (kernel spec) found in two results directories (two machines, two CI jobs, a run
and its rerun) is not a second row that would hide the first: both are **attempts of one cell**.
Their attempts are put together, each named by the directory (``source``) and the machine it
came from, and the cell is classified over all of them as ``verdict/flaky.py`` does for
``--repeat``: a cell that passed on one machine and crashed on another is flaky, and the
report shows where each attempt ran. The attempt that stands for the cell (the first one
that failed) gives the cell's verdict, reason and evidence.

A result that cannot be read is a cell of its own with the verdict ``infra`` and a reason
naming the file, never a traceback (``broken``).
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from html import escape
from typing import Any, Mapping, Optional, Sequence

from harness.model import RunResult, Verdict
from harness.verdict import compare, flaky
from harness.verdict import history as hist

SOURCES_DIR = "sources"  # a cell's other sources' evidence: sources/<label>/ under the cell's directory
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


@dataclass(frozen=True)
class Part:
    """One results directory's result for one cell."""

    label: str  # names the results directory it came from, filesystem-safe and unique in the report
    result: RunResult


@dataclass(frozen=True)
class Cell:
    result: RunResult  # the merged one: the representative's, with every attempt
    shown: str  # the label whose evidence is the cell's own (its directory's top)
    others: tuple[str, ...] = ()  # labels whose evidence is under sources/<label>/


def clean(doc: Any) -> Any:
    """Every string of a JSON document without control characters (but tab and newline): read
    from another machine, it may hold anything, and JUnit XML cannot carry them."""
    if isinstance(doc, str):
        return _CONTROL.sub("\ufffd", doc)
    if isinstance(doc, list):
        return [clean(x) for x in doc]
    if isinstance(doc, dict):
        return {clean(k): clean(v) for k, v in doc.items()}
    return doc


def attempts_of(r: RunResult, label: str) -> list[flaky.Attempt]:
    """A result's attempts (one, made from its verdict, when it has none), each naming its source: the
    one it already names (a report merged again), else ``label``. ValueError when one is malformed."""
    if not r.attempts:
        return [flaky.Attempt(n=1, verdict=r.verdict.value, reason=r.reason.split("\n")[0], seconds=r.seconds,
                              counted=flaky.counts(r.verdict), machine=r.machine, source=label,
                              started_at=r.started_at)]
    out = []
    for a in map(flaky.from_json, r.attempts):
        out.append(dataclasses.replace(a, source=a.source or label))
    return out


def merge(parts: Sequence[Part]) -> list[Cell]:
    """One cell per kernel, in the order the kernels were first found."""
    kernels: dict[str, list[Part]] = {}
    for p in parts:
        kernels.setdefault(p.result.kernel, []).append(p)
    return [_cell(ps) for ps in kernels.values()]


def _cell(parts: Sequence[Part]) -> Cell:
    every = [(p, a) for p in parts for a in attempts_of(p.result, p.label)]
    attempts = [a for _, a in every]
    shown = every[flaky.representative(attempts)][0]
    merged = [dataclasses.replace(a, dir=_where(a, p.label, shown.label)) for p, a in every]
    classification = flaky.classify(merged) if len(parts) > 1 or shown.result.attempts \
        else (shown.result.classification or flaky.classify(merged))
    result = dataclasses.replace(shown.result, attempts=tuple(a.to_json() for a in merged),
                                 classification=classification)
    return Cell(result, shown.label, tuple(p.label for p in parts if p is not shown))


def _where(a: flaky.Attempt, part: str, shown: str) -> Optional[str]:
    """An attempt's evidence, relative to the merged cell's directory (``part``: the results
    directory it was found in; ``shown``: the one whose evidence is the cell's own)."""
    if part == shown:
        return a.dir
    base = f"{SOURCES_DIR}/{part}"
    return f"{base}/{a.dir}" if a.dir else base


def broken(kernel: str, label: str, why: str) -> RunResult:
    """The cell of a result that could not be read: infra, the reason naming what was wrong."""
    return RunResult(kernel=kernel, verdict=Verdict.INFRA, reason=f"unreadable result from {label}: {why}",
                     harness_version="?", started_at="", seconds=0.0, classification="fail")


def from_matrix_entry(d: Mapping[str, Any]) -> RunResult:
    """A cell known only from a matrix.json entry (no result.json beside it): what the entry says.
    KeyError, TypeError or ValueError when it is malformed."""
    o = compare.Outcome.from_json(d)
    attempts = d.get("attempts", [])
    if not isinstance(attempts, list):
        raise TypeError("attempts must be a list")
    return RunResult(kernel=o.kernel, verdict=Verdict(o.verdict), reason=o.reason, harness_version="?",
                     started_at="", seconds=float(d.get("seconds", 0.0)), kernel_release=o.kernel_release,
                     package_version=o.package_version, classification=o.classification, attempts=tuple(attempts))


def _n(n: int, what: str) -> str:
    return f"{n} {what}{'s' * (n != 1)}"


def _md(text: str) -> str:
    """Text for a Markdown table cell."""
    return text.replace("|", "/").replace("`", "'").replace("\n", " ")


def attempts_column(r: RunResult) -> str:
    try:
        return flaky.describe(attempts_of(r, "?"))
    except ValueError:
        return "?"


def summary_markdown(results: Sequence[RunResult], rows: Sequence[compare.Row],
                     histories: Mapping[str, hist.CellHistory], notes: Sequence[str] = ()) -> str:
    """The report as GitHub's step summary shows it: one row a cell, then what changed, then why each failed."""
    machines = sorted({a.get("machine") or a.get("source") or "?" for r in results for a in r.attempts})
    out = ["## kmod-harness report", "",
           f"{_n(len(results), 'cell')} from {_n(len(machines), 'machine')}"
           f" ({_md(', '.join(machines))}).", ""]
    out += [f"- {_md(n)}" for n in notes] + ([""] if notes else [])
    out += ["| kernel | release | verdict | attempts | history |", "| --- | --- | --- | --- | --- |"]
    for r in results:
        mark = "pass" if r.verdict is Verdict.PASS else f"**{r.verdict.value}**"
        if r.classification == "flaky":
            mark = f"**flaky** ({r.verdict.value})"
        h = histories.get(r.kernel)
        out.append(f"| `{_md(r.kernel)}` | {_md(r.kernel_release or '-')} | {mark} | {_md(attempts_column(r))} | "
                   f"{_md(hist.sentence(h)) if h else '-'} |")
    table = compare.markdown(rows)
    if table:
        out += ["", "### Against the baseline and the known failures", "", *table]
    for r in results:
        if r.verdict is not Verdict.PASS:
            out += ["", f"<details><summary>{escape(_md(r.kernel))}: {r.verdict.value}</summary>", "", "~~~~",
                    r.reason[:4000].replace("~~~~", "~ ~ ~ ~"), "~~~~", "", "</details>"]
    return "\n".join(out) + "\n"


def attempts_html(r: RunResult, base: str) -> str:
    """A cell's attempts as a table, each linking to its evidence (``base``: the cell's directory)."""
    try:
        attempts = attempts_of(r, "-")
    except ValueError:
        return ""
    if len(attempts) < 2:
        return ""
    rows = []
    for a in attempts:
        where = f"{base}/{a.dir}" if a.dir else base
        rows.append(f'<tr class="{escape(a.verdict)}"><td>{a.n}</td><td>{escape(a.machine or "-")}</td>'
                    f"<td>{escape(a.source or '-')}</td><td>{escape(a.verdict)}{'' if a.counted else ' (not counted)'}"
                    f"</td><td>{a.seconds:.0f}</td><td>{escape(a.reason)}</td>"
                    f'<td><a href="{escape(where, quote=True)}/result.json">result.json</a></td></tr>')
    return (f"<h3>attempts: {escape(flaky.describe(attempts))}</h3><table class=attempts><tr><th>#</th>"
            "<th>machine</th><th>from</th><th>verdict</th><th>seconds</th><th>reason</th><th>evidence</th></tr>"
            + "".join(rows) + "</table>")

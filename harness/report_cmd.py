"""``harness report DIR...``: one report from the results directories of many machines.

Anything that leaves results directories feeds it: the cells of a GitHub Actions fan-out
(their artifacts downloaded side by side), a shell loop over ssh hosts, a Kubernetes Indexed
Job writing to a shared volume. Each DIR is searched (through no symbolic link, at most a
few levels deep) for ``<kernel>/result.json`` files and ``matrix.json`` files; a kernel a
matrix.json lists without its result.json beside it is taken from what the matrix.json says.

Output, in ``--results OUT``: matrix.json, index.html, junit.xml, summary.md (also appended to
``$GITHUB_STEP_SUMMARY`` when that is set) and each cell's evidence, copied from where it was
found (no links, no devices). The exit code counts only what is new: as ``harness matrix``,
against ``--baseline`` and the known failures. How the same cell found twice is merged:
``verdict/fanin.py``.
"""

from __future__ import annotations

import dataclasses
import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from datetime import datetime, timezone
from html import escape
from pathlib import Path
from typing import IO, Any, Optional, Sequence

from harness import history_store, matrix, procs
from harness.errors import HarnessError, InfraError, UsageError
from harness.events import Printer
from harness.locks import write_atomic
from harness.model import RunResult, result_from_json
from harness.run import EVIDENCE, RESULT_FILES, results_id, writable_dir
from harness.untrusted import copy_tree, read_json, walk
from harness.verdict import compare, fanin, history, html, junit, report

SKIP = frozenset({"attempts", fanin.SOURCES_DIR, "modules", "coverage", "history"})  # never holds other cells


@dataclass(frozen=True)
class Found:
    part: fanin.Part
    cell_dir: Optional[Path] = None  # where its evidence is; None: known from a matrix.json only


def _label(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._+-]+", "-", text).strip("-.") or "results"


class Labels:
    """A filesystem-safe, unique name for each results directory found."""

    def __init__(self) -> None:
        self.by_dir: dict[Path, str] = {}

    def __call__(self, results_dir: Path, top: Path) -> str:
        key = results_dir.resolve()
        if key not in self.by_dir:
            rel = results_dir.relative_to(top).as_posix() if results_dir != top else ""
            base = _label("-".join(x for x in (top.resolve().name, rel) if x))
            name, i = base, 2
            while name in self.by_dir.values():
                name, i = f"{base}-{i}", i + 1
            self.by_dir[key] = name
        return self.by_dir[key]


def result_of(doc: Any) -> RunResult:
    """A result.json's RunResult, checked as far as the reports read it; ValueError says what is wrong."""
    if not isinstance(doc, dict):
        raise ValueError("not a JSON object")
    schema = doc.get("schema", "kmod-harness/result/v1")
    if not isinstance(schema, str) or not schema.startswith("kmod-harness/result/"):
        raise ValueError(f"not a kmod-harness result.json (schema {schema!r})")
    kernel = doc.get("kernel")
    if not isinstance(kernel, str) or not 0 < len(kernel) <= 300:
        raise ValueError(f"kernel must be a spec string, got {str(kernel)[:80]!r}")
    try:
        r = result_from_json(doc)
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise ValueError(f"malformed ({type(e).__name__}: {e})") from None
    evidence = {k: v for k, v in r.evidence.items() if k in RESULT_FILES and isinstance(v, str)}
    r = dataclasses.replace(r, evidence=evidence, read_first=r.read_first if r.read_first in evidence else None)
    fanin.attempts_of(r, "-")  # raises ValueError for a malformed attempt
    try:  # whatever the reporters would trip over, found now, as a broken cell rather than a traceback
        html.page([r], [], "probe", lambda _r, name: name)
        junit.junit_xml([r])
        report.matrix_json([r], 0.0)
        report.summary_markdown([r], 0.0)
    except Exception as e:  # noqa: BLE001 - hostile input: any failure to render is the input's
        raise ValueError(f"cannot be reported ({type(e).__name__}: {e})") from None
    return r


def _one_result(path: Path, labels: Labels, top: Path) -> Found:
    cell_dir = path.parent
    label = labels(cell_dir.parent if cell_dir != top else top, top)
    doc: Any = None
    try:
        doc = read_json(path)
        return Found(fanin.Part(label, result_of(doc)), cell_dir)
    except ValueError as e:
        kernel = doc.get("kernel") if isinstance(doc, dict) else None
        name = kernel if isinstance(kernel, str) and 0 < len(kernel) <= 300 else f"?{label}/{cell_dir.name}"
        return Found(fanin.Part(label, fanin.broken(name, label, str(e))), None)


def _from_matrix(path: Path, have: set[str], labels: Labels, top: Path) -> list[Found]:
    """The kernels a matrix.json lists that no result.json below it gave."""
    label = labels(path.parent, top)
    try:
        doc = read_json(path)
        kernels = doc["kernels"] if isinstance(doc, dict) else None
        if not isinstance(kernels, list):
            raise ValueError("no kernels list: not a kmod-harness matrix.json")
    except (ValueError, KeyError) as e:
        return [Found(fanin.Part(label, fanin.broken(f"?{label}", label, str(e))))]
    out = []
    for i, k in enumerate(kernels):
        try:
            r = fanin.from_matrix_entry(k)
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            out.append(Found(fanin.Part(label, fanin.broken(f"?{label}#{i + 1}", label,
                                                             f"{path}: kernel entry {i + 1}: {e}"))))
            continue
        if r.kernel not in have:
            out.append(Found(fanin.Part(label, r)))
    return out


def discover(inputs: Sequence[Path], out: Path) -> list[Found]:
    """Every result in the inputs, in the order found; a usage error for an input that holds none."""
    labels, found = Labels(), []
    for top in inputs:
        if not top.exists():
            raise UsageError(f"{top}: no such directory", hint="give results directories (or result.json files)")
        if top.is_file():
            if top.name not in ("result.json", "matrix.json"):
                raise UsageError(f"{top}: give a results directory, a result.json or a matrix.json")
            top_dir, files = top.parent, [top]
        else:
            top_dir = top
            files = [d / name for d in walk(top, SKIP, out) for name in ("result.json", "matrix.json")
                     if (d / name).is_file()]
        results = [_one_result(f, labels, top_dir) for f in files if f.name == "result.json"]
        have = {f.part.result.kernel for f in results}
        matrices = [m for f in files if f.name == "matrix.json" for m in _from_matrix(f, have, labels, top_dir)]
        if not results and not matrices:
            raise UsageError(f"{top}: holds no results (no <kernel>/result.json, no matrix.json)",
                             hint="give the directory a harness run, harness matrix or harness report wrote")
        found += results + matrices
    return found


def load_baseline(path: Path, printer: Printer) -> Optional[list[compare.Outcome]]:
    """--baseline: a matrix.json, a directory holding one, or a history directory (its last
    successful run; none yet is no baseline, said so)."""
    if history_store.is_store(path):
        entries, problems = history_store.load(path)
        for p in problems:
            printer.line(f"baseline: {p}")
        base = history.baseline(entries)
        if base is None:
            printer.line(f"baseline: {path} has no successful run yet; comparing with nothing")
            return None
        printer.line(f"baseline: the run of {base.date[:19]} on commit {base.commit[:12]} ({path})")
        return list(base.outcomes)
    target = path / "matrix.json" if path.is_dir() else path
    try:
        doc = read_json(target)
        return [compare.Outcome.from_json(k) for k in doc["kernels"]]
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        raise UsageError(f"--baseline {path}: not a kmod-harness matrix.json or history ({e})",
                         hint="give an earlier report's matrix.json, or the --history directory of earlier runs"
                         ) from None


def _git_head() -> str:
    try:
        p = procs.quick(["git", "rev-parse", "HEAD"], timeout=10, what="git rev-parse")
    except HarnessError:
        return ""
    return p.stdout.strip() if p.returncode == 0 else ""


def this_run(commit: Optional[str], date: Optional[str]) -> history.Entry:
    """What the history keeps of this run (``ok`` and the outcomes are filled in once known):
    the commit and ref from GitHub's variables, or git's HEAD here."""
    env = os.environ
    url = ""
    if env.get("GITHUB_SERVER_URL") and env.get("GITHUB_REPOSITORY") and env.get("GITHUB_RUN_ID"):
        url = f"{env['GITHUB_SERVER_URL']}/{env['GITHUB_REPOSITORY']}/actions/runs/{env['GITHUB_RUN_ID']}"
    when = date or datetime.now(timezone.utc).isoformat(timespec="seconds")
    try:
        datetime.fromisoformat(when)
    except ValueError:
        raise UsageError(f"--date {when!r}: give an ISO 8601 date, e.g. 2026-12-05T09:30:00+00:00") from None
    return history.Entry(commit=commit or env.get("GITHUB_SHA") or _git_head() or "unknown", date=when,
                         ref=env.get("GITHUB_REF_NAME", ""), url=url)


def place_evidence(cells: Sequence[fanin.Cell], found: Sequence[Found], out: Path, staging: Path) -> list[RunResult]:
    """Each cell's evidence under OUT/<cell>/: the shown source's at the top, the others' under sources/.
    A source that is OUT/<cell> itself (a report written over one of its inputs) is copied to ``staging``
    first. The results returned name the evidence that is there (what a result.json claimed is not trusted)."""
    where = {(f.part.label, f.part.result.kernel): f.cell_dir for f in found}
    placed = []
    for c in cells:
        dest = out / results_id(c.result.kernel)
        own = where.get((c.shown, c.result.kernel))
        others = {label: where.get((label, c.result.kernel)) for label in c.others}
        for label, src in others.items():
            if src is not None and src.resolve() == dest.resolve():
                kept = staging / results_id(c.result.kernel) / label
                copy_tree(src, kept)
                others[label] = kept
        if own is None or own.resolve() != dest.resolve():
            shutil.rmtree(dest, ignore_errors=True)
            if own is not None:
                copy_tree(own, dest)
        for label, src in others.items():
            if src is not None:
                copy_tree(src, dest / fanin.SOURCES_DIR / label)
        dest.mkdir(parents=True, exist_ok=True)
        evidence = {name: what for name, what in EVIDENCE.items() if name == "result.json" or (dest / name).exists()}
        r = dataclasses.replace(c.result, evidence=evidence,
                                read_first=c.result.read_first if c.result.read_first in evidence else None)
        write_atomic(dest / "result.json", report.result_json(r))
        placed.append(r)
    return placed


def render(results: Sequence[RunResult], rows: Sequence[compare.Row], histories: dict[str, history.CellHistory],
           notes: Sequence[str], extra: dict[str, Any]) -> dict[str, str]:
    """The report's files, by name."""
    grid = {r.kernel: escape(fanin.attempts_column(r)) + ("<br>" + history.html(histories[r.kernel])
                                                          if r.kernel in histories else "") for r in results}
    sections = {r.kernel: fanin.attempts_html(r, results_id(r.kernel)) for r in results}
    return {
        "matrix.json": report.matrix_json(results, 0.0, rows, extra),
        "index.html": html.page(results, rows, "kmod-harness report", lambda r, name: f"{results_id(r.kernel)}/{name}",
                                notes=grid, sections=sections, css=history.CSS),
        "junit.xml": junit.junit_xml(results),
        "summary.md": fanin.summary_markdown(results, rows, histories, notes),
    }


def step_summary(text: str, printer: Printer) -> None:
    """Append to GitHub's job summary, when there is one."""
    path = os.environ.get("GITHUB_STEP_SUMMARY")
    if not path:
        return
    try:
        with open(path, "a") as f:
            f.write(text)
    except OSError as e:
        printer.line(f"warning: cannot append to $GITHUB_STEP_SUMMARY ({path}): {e.strerror or e}")


def main(args: Any, printer: Printer, out: IO[str]) -> int:
    found = discover(args.dirs, args.results)
    baseline = load_baseline(args.baseline, printer) if args.baseline is not None else None
    expected = matrix.expectations(matrix.load_matrix(args.matrix_file), args.project)
    run = this_run(args.commit, args.date)
    if args.history is not None:
        history_store.prepare(args.history)
    writable_dir(args.results)  # every input checked: from here on, the report is written
    cells = fanin.merge([f.part for f in found])
    results = [c.result for c in cells]
    rows = compare.compare([compare.Outcome.of(r) for r in results], baseline, expected)
    code = matrix.matrix_exit_code(rows)
    now = dataclasses.replace(run, ok=code == 0, outcomes=tuple(compare.Outcome.of(r) for r in results))
    dirs = len({f.part.label for f in found})
    notes = [f"{len(found)} result{'s' * (len(found) != 1)} from {dirs} director{'ies' if dirs != 1 else 'y'}"
             + ("" if baseline is not None else "; no baseline")]
    histories: dict[str, history.CellHistory] = {}
    if args.history is not None:
        past, problems = history_store.load(args.history)
        notes += problems
        histories = history.cells([r.kernel for r in results], past, now)
    try:
        with tempfile.TemporaryDirectory(prefix="kmod-harness-report-") as staging:
            results = place_evidence(cells, found, args.results, Path(staging))
        extra = {"run": history.run_meta(now), "sources": sorted({f.part.label for f in found})}
        files = render(results, rows, histories, notes, extra)
        for name, text in files.items():
            write_atomic(args.results / name, text)
        if args.history is not None:
            printer.line(f"history: kept as {history_store.add(args.history, files['matrix.json'], now)}")
    except OSError as e:
        raise InfraError(f"cannot write the report in {args.results}: {e.strerror or e}",
                         hint="is the disk full, or the directory someone else's?") from None
    step_summary(files["summary.md"], printer)
    out.write(files["summary.md"])
    printer.line(f"report: {args.results}/index.html, summary.md, matrix.json, junit.xml (exit {code})")
    return code

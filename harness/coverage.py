"""The module's line and branch coverage, from the gcov counters a run copied out of the guest.

On a kernel with ``CONFIG_GCOV_KERNEL`` (``debian-src:SUITE+gcov``) the module is built with
``GCOV_PROFILE=y`` (kbuild writes a ``.gcno`` beside each object), and the guest's coverage
step copies ``/sys/kernel/debug/gcov`` into the run directory: one ``.gcda`` per object, under
the absolute path the object was built at. Each goes back beside its ``.gcno``, and gcovr,
with the host gcc's own gcov (the compiler that built the module for a kernel tree), makes
the reports: an HTML page per source file, Cobertura XML for CI services, gcovr's JSON (which
``harness matrix`` merges over kernels) and a summary.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path
from typing import Any, Optional, Sequence

from harness import procs
from harness.plan import GCOV_DIR

OUT_DIR = "coverage"  # under the kernel's results directory
REPORTS = {"index.html": "--html-details", "coverage.xml": "--cobertura", "coverage.json": "--json",
           "summary.json": "--json-summary"}


def gcov_tool(compiler: str) -> str:
    """The gcov of a compiler: gcc-12 -> gcov-12, x86_64-linux-gnu-gcc-14 -> x86_64-linux-gnu-gcov-14."""
    head, sep, tail = compiler.rpartition("gcc")
    return f"{head}gcov{tail}" if sep else "gcov"


def place_counters(gcov_dir: Path, build_dir: Path) -> list[Path]:
    """Put each copied ``.gcda`` back at the path its object was built at, if that is in
    ``build_dir`` (this run's build): the counters of other objects are not the project's."""
    placed = []
    root = build_dir.resolve()
    for f in sorted(gcov_dir.rglob("*.gcda")) if gcov_dir.is_dir() else []:
        target = Path("/", f.relative_to(gcov_dir))
        if target.parent.resolve() == root or root in target.parent.resolve().parents:
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(f, target)
            placed.append(target)
    return placed


def unloaded(build_dir: Path) -> list[Path]:
    """Drop the notes of objects with no counters: those of modules the run built but never loaded
    (a KUnit test module on a run without it), which are not what it covered. Every object of
    a loaded module has counters, run or not. Returns what was dropped."""
    gone = [n for n in build_dir.rglob("*.gcno") if not n.with_suffix(".gcda").exists()]
    for n in gone:
        n.unlink()
    return gone


def gcovr_argv(build_dir: Path, out: Path, compiler: str, exclude: Sequence[str] = (),
               tracefiles: Sequence[Path] = (), root: Optional[Path] = None) -> list[str]:
    """gcovr on a build directory (or, with ``tracefiles``, merging their JSON), writing every report."""
    argv = [sys.executable, "-m", "gcovr", "--root", str(root or build_dir), "--gcov-executable", gcov_tool(compiler),
            "--exclude", r".*\.mod\.c$", "--html-title", "kmod-harness coverage",
            # kbuild compiles in the kernel tree: the kernel's headers are named relative to it, and
            # are not the module's sources anyway (they fall outside the root)
            "--gcov-ignore-errors=source_not_found"]
    for name in exclude:
        argv += ["--exclude", rf"(.*/)?{name}$"]
    for name, flag in REPORTS.items():
        argv += [flag, str(out / name)]
    if tracefiles:
        return argv + [a for t in tracefiles for a in ("--add-tracefile", str(t))]
    return argv + ["--object-directory", str(build_dir), str(build_dir)]


def figures(summary: dict[str, Any]) -> dict[str, Any]:
    """Lines and branches covered, overall and per file, from gcovr's JSON summary."""

    def part(d: dict[str, Any], kind: str) -> dict[str, Any]:
        total, covered = int(d.get(f"{kind}_total") or 0), int(d.get(f"{kind}_covered") or 0)
        return {"covered": covered, "total": total, "percent": round(100.0 * covered / total, 1) if total else None}

    return {"lines": part(summary, "line"), "branches": part(summary, "branch"),
            "functions": part(summary, "function"),
            "files": [{"file": f.get("filename"), "lines": part(f, "line"), "branches": part(f, "branch")}
                      for f in summary.get("files", [])]}


def report(run_dir: Path, build_dir: Path, out_dir: Path, compiler: str, exclude: Sequence[str] = (),
           timeout: float = 300) -> dict[str, Any]:
    """Coverage of this run's build from the counters the guest copied; ``{"error": why}`` when
    there is none to give. Reports go to ``out_dir/coverage/``."""
    placed = place_counters(run_dir / GCOV_DIR, build_dir)
    if not placed:
        return {"error": "no gcov counters of the module came out of the guest (see the coverage step in "
                         "result.json: was /sys/kernel/debug/gcov there?)"}
    unloaded(build_dir)
    return run_gcovr(gcovr_argv(build_dir, out_dir / OUT_DIR, compiler, exclude), out_dir / OUT_DIR, timeout)


def merge(tracefiles: Sequence[Path], source: Path, out: Path, timeout: float = 300) -> dict[str, Any]:
    """One report over several kernels' ``coverage.json`` (each relative to its build directory,
    a copy of the project's source, so the files are found in ``source``): a line counts as
    covered when any kernel ran it. No gcov runs: the tracefiles hold the counts."""
    return run_gcovr(gcovr_argv(source, out, "gcc", tracefiles=tracefiles), out, timeout)


def run_gcovr(argv: list[str], out: Path, timeout: float) -> dict[str, Any]:
    out.mkdir(parents=True, exist_ok=True)
    res = procs.quick(argv, timeout=timeout)
    summary = out / "summary.json"
    if res.returncode != 0 or not summary.is_file():
        (out / "gcovr.log").write_text(res.stdout + res.stderr)
        last = (res.stderr.strip().splitlines() or ["no output"])[-1]
        return {"error": f"gcovr failed (exit {res.returncode}): {last}; see {out / 'gcovr.log'}"}
    found = figures(json.loads(summary.read_text()))
    found["reports"] = {name: f"{OUT_DIR}/{name}" for name in REPORTS if (out / name).is_file()}
    return found

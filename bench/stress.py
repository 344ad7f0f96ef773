#!/usr/bin/env python3
"""Verdicts under load: harness runs at twice as many VMs as cores, beside a CPU hog, on one cache.

Every run here should pass (the default project on the default kernel): any other verdict is a
false one, and its results directory is kept for the evidence. Scenarios, in waves:

  together   N runs started at once (exec and ssh transports alternating), a CPU hog beside them
  staggered  N runs started a few seconds apart on the same kernel and cache
  mixed      a harness run, a harness matrix of two kernels and a pytest session with the plugin, at once

    python3 bench/stress.py [--runs 40] [--parallel N] [--json FILE] [--markdown FILE]

Prints a table of verdicts per scenario and the wall time of each run. Not a timed test: the figures
go to docs/RELIABILITY.md.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
HARNESS = [sys.executable, "-m", "harness"]
MATRIX_KERNELS = "debian:bookworm,debian:trixie"


def hog(stop: "multiprocessing.synchronize.Event") -> None:  # type: ignore[name-defined]
    while not stop.is_set():
        sum(i * i for i in range(10000))


def one_run(results: Path, transport: str, delay: float = 0.0) -> dict:
    time.sleep(delay)
    t0 = time.monotonic()
    p = subprocess.run([*HARNESS, "run", "--results", str(results), "--transport", transport],
                       cwd=REPO, capture_output=True, text=True)
    res = _result(results / "debian-bookworm" / "result.json")
    return {"kind": f"run/{transport}", "exit": p.returncode, "verdict": res.get("verdict"),
            "reason": (res.get("reason") or p.stderr[-300:]).split("\n")[0], "seconds": time.monotonic() - t0,
            "results": str(results)}


def one_matrix(results: Path) -> list[dict]:
    t0 = time.monotonic()
    p = subprocess.run([*HARNESS, "matrix", "--kernels", MATRIX_KERNELS, "--results", str(results), "-j", "2"],
                       cwd=REPO, capture_output=True, text=True)
    doc = _result(results / "matrix.json")
    return [{"kind": "matrix", "exit": p.returncode, "verdict": k["verdict"], "reason": k["reason"],
             "seconds": time.monotonic() - t0, "results": str(results / k["kernel"].replace(":", "-"))}
            for k in doc.get("kernels", [])] or [{"kind": "matrix", "exit": p.returncode, "verdict": None,
                                                  "reason": p.stderr[-300:], "seconds": time.monotonic() - t0,
                                                  "results": str(results)}]


def one_pytest(results: Path) -> dict:
    t0 = time.monotonic()
    p = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-m", "vm",
                        "tests/vm/test_netlink_guest.py", "--harness-results", str(results)],
                       cwd=REPO, capture_output=True, text=True)
    tail = p.stdout.strip().splitlines()[-1:] or [""]
    return {"kind": "pytest", "exit": p.returncode, "verdict": "pass" if p.returncode == 0 else "fail",
            "reason": tail[0], "seconds": time.monotonic() - t0, "results": str(results)}


def _result(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def wave(kind: str, n: int, base: Path, stop_hog: bool = True) -> list[dict]:
    stop = multiprocessing.Event()
    hogs = [multiprocessing.Process(target=hog, args=(stop,), daemon=True) for _ in range(os.cpu_count() or 1)]
    for h in hogs:
        h.start()
    try:
        with ThreadPoolExecutor(max_workers=n + 2) as pool:
            if kind == "mixed":
                futures = [pool.submit(one_run, base / "run", "exec"), pool.submit(one_matrix, base / "matrix"),
                           pool.submit(one_pytest, base / "pytest")]
            else:
                futures = [pool.submit(one_run, base / f"r{i}", ("exec", "ssh")[i % 2],
                                       i * 7.0 if kind == "staggered" else 0.0) for i in range(n)]
            out: list[dict] = []
            for f in futures:
                r = f.result()
                out += r if isinstance(r, list) else [r]
    finally:
        stop.set()
        for h in hogs:
            h.join(5)
    for r in out:
        r["scenario"] = kind
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=40, help="at least this many verdicts in all (default 40)")
    ap.add_argument("--parallel", type=int, default=2 * (os.cpu_count() or 1),
                    help="runs at once in the together and staggered waves (default: twice the cores)")
    ap.add_argument("--json", type=Path)
    ap.add_argument("--markdown", type=Path)
    a = ap.parse_args()
    base = Path(tempfile.mkdtemp(prefix="kmod-harness-stress-"))
    runs: list[dict] = []
    t0 = time.monotonic()
    i = 0
    while len(runs) < a.runs:
        kind = ("together", "staggered", "mixed")[i % 3]
        got = wave(kind, a.parallel, base / f"wave{i}-{kind}")
        runs += got
        bad = [r for r in got if r["verdict"] != "pass"]
        print(f"wave {i + 1} ({kind}): {len(got) - len(bad)}/{len(got)} pass"
              + "".join(f"\n    {r['kind']}: {r['verdict']}: {r['reason']} ({r['results']})" for r in bad),
              file=sys.stderr, flush=True)
        i += 1
    wall = time.monotonic() - t0
    text = report(runs, wall, a.parallel)
    print(text)
    if a.markdown:
        a.markdown.parent.mkdir(parents=True, exist_ok=True)
        a.markdown.write_text(text)
    if a.json:
        a.json.parent.mkdir(parents=True, exist_ok=True)
        a.json.write_text(json.dumps({"runs": runs, "wall": wall}, indent=1))
    false = [r for r in runs if r["verdict"] != "pass"]
    if not false:
        shutil.rmtree(base, ignore_errors=True)
    return 1 if false else 0


def report(runs: list[dict], wall: float, parallel: int) -> str:
    lines = [f"{len(runs)} verdicts in {wall / 60:.0f} min, {os.cpu_count()} cores, up to {parallel} runs at once "
             "beside a CPU hog per core.", "",
             "| scenario | kind | runs | pass | other verdicts | seconds (median, max) |",
             "| --- | --- | ---: | ---: | --- | ---: |"]
    groups: dict[tuple[str, str], list[dict]] = {}
    for r in runs:
        groups.setdefault((r["scenario"], r["kind"]), []).append(r)
    for (scenario, kind), rs in sorted(groups.items()):
        secs = sorted(r["seconds"] for r in rs)
        other = ", ".join(f"{r['verdict']}: {r['reason']}" for r in rs if r["verdict"] != "pass") or "-"
        lines.append(f"| {scenario} | {kind} | {len(rs)} | {sum(r['verdict'] == 'pass' for r in rs)} | {other} | "
                     f"{secs[len(secs) // 2]:.0f}, {secs[-1]:.0f} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""harness fuzz: time to find the blog module's crash, and executions per second.

  find      N runs of `harness fuzz` on the blog's unmodified module (tests/fixtures/netlink/
            blog_fuzz.toml: `[[fuzz.netlink]] protocol = 30` alone), each from an empty corpus,
            stopping at the first confirmed finding: seconds to the crash (the fuzz guest died),
            seconds to the finding confirmed and minimized (repro written), executions
  magic     tests/fixtures/fuzz_targets (a bug behind a 4-byte magic compared byte by byte), --runs times
            with kcov's feedback and --runs times without, alternated, each for --magic-duration seconds
            from an empty corpus, stopping at the first confirmed finding: found or not, when, executions
  rate      the fixed module (this repository's harness.toml) fuzzed for --rate-duration seconds,
            a fork per input (the default) against --per-child inputs per forked child, one after
            the other in the same session: executions per second in the guests' fuzzing loops

    .venv/bin/python bench/fuzz.py [--runs 3] [--kernel debian-src:trixie+debug] [--rate-duration 300]
                                   [--magic-duration 600] [--per-child 100] [--only find,magic,rate]
                                   [--json FILE] [--markdown FILE]
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
HARNESS = [sys.executable, "-m", "harness"]


def fuzz(args: list[str], results: Path, log: Path) -> tuple[int, dict[str, Any], float]:
    t0 = time.monotonic()
    with open(log, "w") as f:
        code = subprocess.run([*HARNESS, "fuzz", "--results", str(results), "--cpus", "1", *args], cwd=REPO,
                              stdout=f, stderr=subprocess.STDOUT).returncode
    if not (results / "fuzz.json").is_file():  # it never started: say why, not a traceback of ours
        tail = "".join(log.read_text(errors="replace").splitlines(True)[-15:])
        raise SystemExit(f"harness fuzz wrote no fuzz.json (exit {code}; run this with the virtualenv's "
                         f"python, e.g. .venv/bin/python bench/fuzz.py); the end of its output:\n{tail}")
    return code, json.loads((results / "fuzz.json").read_text()), time.monotonic() - t0


def find_runs(n: int, kernel: str, work: Path) -> list[dict[str, Any]]:
    out = []
    for i in range(n):
        project = work / f"find-{i}" / "netlink"
        shutil.copytree(REPO / "tests/fixtures/netlink", project)
        code, d, wall = fuzz(["--kernel", kernel, "--project", str(project / "blog_fuzz.toml"), "--corpus",
                              str(work / f"find-{i}" / "corpus"), "--duration", "600", "--max-findings", "1",
                              "--seed", str(i + 1)], work / f"find-{i}" / "results", work / f"find-{i}.log")
        f = (d.get("findings") or [{}])[0]
        row = {"run": i + 1, "exit": code, "found_at": d.get("first_finding_at"),
               "confirmed_at": d.get("first_finding_confirmed_at"), "execs": d.get("execs"),
               "consequence": f.get("consequence"),
               "minimized": f"{f.get('input_bytes')} -> {f.get('minimized_bytes')}",
               "wall": round(wall, 1)}
        print(json.dumps(row), flush=True)
        out.append(row)
    return out


def magic_runs(n: int, kernel: str, seconds: float, work: Path) -> list[dict[str, Any]]:
    out = []
    for i in range(n):
        for feedback in (True, False):
            tag = f"magic-{'on' if feedback else 'off'}-{i}"
            project = work / tag / "fuzz_targets"
            shutil.copytree(REPO / "tests/fixtures/fuzz_targets", project)
            code, d, wall = fuzz(["--kernel", kernel, "--project", str(project / "harness.toml"), "--corpus",
                                  str(work / tag / "corpus"), "--duration", str(seconds), "--max-findings", "1",
                                  "--minimize-rounds", "0", "--seed", str(i + 1)]
                                 + ([] if feedback else ["--no-coverage"]), work / tag / "results", work / f"{tag}.log")
            row = {"run": i + 1, "feedback": feedback, "exit": code, "found_at": d.get("first_finding_at"),
                   "execs": d.get("execs"), "fuzz_seconds": d.get("fuzz_seconds"),
                   "pcs": (d.get("coverage") or {}).get("pcs"), "wall": round(wall, 1)}
            print(json.dumps(row), flush=True)
            out.append(row)
    return out


def rate_runs(kernel: str, seconds: float, per_child: int, work: Path) -> list[dict[str, Any]]:
    out = []
    for n in (1, per_child):
        code, d, wall = fuzz(["--kernel", kernel, "--project", str(REPO), "--corpus", str(work / f"rate-{n}-corpus"),
                              "--duration", str(seconds), "--execs-per-child", str(n), "--seed", "1"],
                             work / f"rate-{n}", work / f"rate-{n}.log")
        row = {"execs_per_child": n, "exit": code, "execs": d.get("execs"), "fuzz_seconds": d.get("fuzz_seconds"),
               "execs_per_second": d.get("execs_per_second"), "pcs": (d.get("coverage") or {}).get("pcs"),
               "wall": round(wall, 1)}
        print(json.dumps(row), flush=True)
        out.append(row)
    return out


def _secs(t: Any) -> str:
    return "-" if t is None else f"{t:.0f}"


def magic_markdown(magic: list[dict[str, Any]]) -> list[str]:
    lines = ["", "| run | kcov feedback | exit | found at (s) | executions | seconds fuzzing | module PCs |",
             "| ---: | --- | ---: | ---: | ---: | ---: | ---: |"]
    lines += [f"| {r['run']} | {'on' if r['feedback'] else 'off'} | {r['exit']} | "
              f"{_secs(r['found_at'])} | {r['execs']} | "
              f"{r['fuzz_seconds'] or 0:.0f} | {r['pcs']} |" for r in magic]
    for feedback in (True, False):
        rows = [r for r in magic if r["feedback"] is feedback]
        found = [r["found_at"] for r in rows if r["found_at"] is not None]
        lines += ["", f"feedback {'on' if feedback else 'off'}: found in {len(found)} of {len(rows)} runs"
                  + (f", median {statistics.median(found):.0f} s" if found else "")]
    return lines


def markdown(find: list[dict[str, Any]], magic: list[dict[str, Any]], rate: list[dict[str, Any]],
             kernel: str) -> str:
    lines = [f"`harness fuzz` on `{kernel}`, TCG, 1 vCPU ({platform.node()}, {time.strftime('%Y-%m-%d')})", ""]
    if find:
        lines += ["| run | exit | crash found at (s) | confirmed and minimized at (s) | executions | input (bytes) |",
                  "| ---: | ---: | ---: | ---: | ---: | --- |"]
        lines += [f"| {r['run']} | {r['exit']} | {r['found_at']:.0f} | {r['confirmed_at']:.0f} | {r['execs']} | "
                  f"{r['minimized']} |" for r in find if r["found_at"] is not None]
        found = [r["found_at"] for r in find if r["found_at"] is not None]
        confirmed = [r["confirmed_at"] for r in find if r["confirmed_at"] is not None]
        if found:
            lines += ["", f"median: found at {statistics.median(found):.0f} s, confirmed and minimized at "
                      f"{statistics.median(confirmed):.0f} s ({len(found)} of {len(find)} runs found it)"]
    if magic:
        lines += magic_markdown(magic)
    if rate:
        base = rate[0]["execs_per_second"] or 0
        lines += ["", "| inputs per forked child | executions | seconds fuzzing | per second | against a fork each |",
                  "| ---: | ---: | ---: | ---: | ---: |"]
        lines += [f"| {r['execs_per_child']} | {r['execs']} | {r['fuzz_seconds']:.0f} | {r['execs_per_second']} | "
                  f"{(r['execs_per_second'] or 0) / base if base else 0:.1f}x |" for r in rate]
    return "\n".join(lines) + "\n"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--kernel", default="debian-src:trixie+debug")
    p.add_argument("--rate-duration", type=float, default=300)
    p.add_argument("--per-child", type=int, default=100)
    p.add_argument("--magic-duration", type=float, default=600)
    p.add_argument("--only", default="find,magic,rate", help="which measurements, comma-separated")
    p.add_argument("--json", type=Path)
    p.add_argument("--markdown", type=Path)
    args = p.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-fuzz-") as tmp:
        work = Path(tmp)
        only = set(args.only.split(","))
        find = find_runs(args.runs, args.kernel, work) if "find" in only else []
        magic = magic_runs(args.runs, args.kernel, args.magic_duration, work) if "magic" in only else []
        rate = rate_runs(args.kernel, args.rate_duration, args.per_child, work) if "rate" in only else []
    text = markdown(find, magic, rate, args.kernel)
    print(text)
    if args.json:
        args.json.write_text(json.dumps({"find": find, "magic": magic, "rate": rate}, indent=1) + "\n")
    if args.markdown:
        args.markdown.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())

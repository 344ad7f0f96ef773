#!/usr/bin/env python3
"""Benchmark: one kernel on each guest architecture, alternated, in one sitting.

    .venv/bin/python bench/arches.py [--kernel debian:trixie] [--arch amd64 --arch riscv64 ...] [--reps 3]

First each architecture's root is made when missing (`harness kernels fetch`, not timed: through
qemu-user that takes 10-25 minutes). Then each round runs `harness run --kernel KERNEL --arch ARCH`
once per architecture, in turn, on a copy of this repository's project whose module source gains
a comment naming the round: the module is built every time (the build cache never answers), the
root is reused. The first architecture (the host's, by default) is the baseline. Prints the medians of the
run's wall time, the build and vm phases and where the vm phase went; --json writes every figure,
--markdown the table.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PROJECT_PARTS = ("harness.toml", "kernel_src", "vm/trail.toml", "userspace")
BOOT_PARTS = ("qemu_to_kernel", "kernel_to_init", "init_to_runner", "guest_steps", "shutdown")


def project_copy(dest: Path, mark: str) -> Path:
    for part in PROJECT_PARTS:
        src, to = REPO / part, dest / part
        to.parent.mkdir(parents=True, exist_ok=True)
        (shutil.copytree if src.is_dir() else shutil.copy)(src, to)
    source = dest / "kernel_src" / "netlink_kernel.c"
    source.write_text(source.read_text() + f"\n/* bench/arches.py: {mark} */\n")
    return dest


def fetch(kernel: str, arch: str) -> None:
    argv = [str(REPO / ".venv/bin/harness"), "kernels", "fetch", "--kernel", kernel, "--arch", arch]
    print(f"making the root of {kernel} for {arch} when it is missing", file=sys.stderr, flush=True)
    proc = subprocess.run(argv, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")


def one_run(kernel: str, arch: str, project: Path, results: Path, timeout: int) -> dict:
    argv = [str(REPO / ".venv/bin/harness"), "run", "--kernel", kernel, "--arch", arch, "--project", str(project),
            "--results", str(results), "--timeout", str(timeout)]
    t0 = time.monotonic()
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout + 600)
    wall = time.monotonic() - t0
    found = list(results.glob("*/result.json"))
    if proc.returncode != 0 or len(found) != 1:
        raise SystemExit(f"{' '.join(argv)} failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
    res = json.loads(found[0].read_text())
    phases = {p["name"]: p["seconds"] for p in res["phases"]}
    return {"arch": arch, "kernel": res["kernel"], "release": res["kernel_release"], "wall": round(wall, 1),
            "build": phases.get("build"), "vm": phases.get("vm"), "boot": res.get("boot", {})}


def medians(runs: list[dict]) -> dict[str, float]:
    out = {k: statistics.median(r[k] for r in runs) for k in ("wall", "build", "vm")}
    for part in BOOT_PARTS:
        values = [r["boot"][part] for r in runs if part in r["boot"]]
        if values:
            out[part] = statistics.median(values)
    return out


def table(by_arch: dict[str, list[dict]], base: str) -> str:
    archs = list(by_arch)
    rows = ["| | " + " | ".join(f"{a} ({by_arch[a][0]['release']})" for a in archs) + " |",
            "| --- |" + " ---: |" * len(archs)]
    meds = {a: medians(runs) for a, runs in by_arch.items()}
    for key in ("wall", "build", "vm", *BOOT_PARTS):
        if all(key in meds[a] for a in archs):
            cells = [f"{meds[a][key]:.1f} s" + (f" ({meds[a][key] / meds[base][key]:.1f}x)"
                                                if a != base and meds[base][key] else "") for a in archs]
            rows.append(f"| {key if key in BOOT_PARTS else key + ' (median)'} | " + " | ".join(cells) + " |")
    return "\n".join(rows) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--kernel", default="debian:trixie")
    ap.add_argument("--arch", action="append", help="repeat; the first is the baseline (default: amd64 arm64 riscv64)")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--timeout", type=int, default=1500)
    ap.add_argument("--json", type=Path)
    ap.add_argument("--markdown", type=Path)
    args = ap.parse_args()
    archs = args.arch or ["amd64", "arm64", "riscv64"]
    by_arch: dict[str, list[dict]] = {a: [] for a in archs}
    for arch in archs:
        fetch(args.kernel, arch)
    with tempfile.TemporaryDirectory(prefix="bench-arches-") as tmp:
        for rep in range(args.reps):
            for arch in archs:
                work = Path(tmp) / f"{rep}-{arch}"
                run = one_run(args.kernel, arch, project_copy(work / "project", f"{rep} {arch} {time.time()}"),
                              work / "results", args.timeout)
                by_arch[arch].append(run)
                print(f"round {rep + 1} {arch}: wall {run['wall']} s, build {run['build']} s, vm {run['vm']} s",
                      file=sys.stderr, flush=True)
    text = table(by_arch, archs[0])
    print(text)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"kernel": args.kernel, "runs": by_arch}, indent=1) + "\n")
    if args.markdown:
        args.markdown.parent.mkdir(parents=True, exist_ok=True)
        args.markdown.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""Benchmark: `harness run` against plain virtme-ng doing the same job, in one sitting.

    .venv/bin/python bench/startup.py [--reps 5] [--cold] [--json FILE] [--markdown FILE]

Contenders, alternated so that noise hits them alike:
  vng      the plain command: vng [--disable-kvm] -r KERNEL --root ROOT --rwdir ... --exec
           'insmod ...; python3 netlink_client.py -n; rmmod ...; dmesg', module prebuilt,
           on the same kernel and the same packages: a copy of the cached root with the
           harness's start-up cuts undone (the root as mmdebstrap made it);
  harness  `harness run` on the same kernel with the root cached (resolve, root check,
           build, boot, guest steps, judge, report), with its phases and vm breakdown;
  vng-cut  the plain command on the harness's own root, to show what the cuts buy
           and what the harness itself adds.
With --cold, one `harness run` with an empty cache (download, root, build, boot) at the end.
Prints medians and spread; --json writes every figure, --markdown the table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from harness import procs, virtme  # noqa: E402
from harness.events import discard  # noqa: E402
from harness.kernel import cuts  # noqa: E402
from harness.model import Accel  # noqa: E402
from harness.phases import Prepared, RunRequest, prepare  # noqa: E402
from harness.run import run  # noqa: E402

GUEST_CMD = ("insmod /harness/build/netlink_kernel.ko && python3 /harness/netlink_client.py -n "
             "&& rmmod netlink_kernel && dmesg | tail -5")


def plain_root(prep: Prepared) -> Path:
    """The harness's cached root with its start-up cuts undone: the same packages as
    mmdebstrap installed them, which is what a plain vng user boots."""
    dest = Path(tempfile.mkdtemp(prefix="kmod-harness-plain-root-"))
    done = procs.run(["cp", "-a", "--reflink=auto", f"{prep.root.path}/.", str(dest)], timeout=600,
                     what="copying the root")
    if done.returncode != 0:
        raise SystemExit(f"copying the root failed: {done.stderr}")
    cuts.undo_startup_cuts(dest)
    return dest


def plain_vng(prep: Prepared, run_dir: Path, root: Path) -> float:
    # The same accelerator the harness chose: TCG here, KVM on GitHub's runners.
    accel = ["--disable-kvm"] if prep.setup.accel is Accel.TCG else []
    argv = [prep.setup.vng, *accel, "--run", str(prep.root.vmlinuz), "--root", str(root),
            "--rwdir", f"/harness={run_dir}", "--exec", GUEST_CMD]
    t0 = time.monotonic()
    done = procs.run(argv, timeout=600, what="plain vng", env=virtme.vng_env())
    took = time.monotonic() - t0
    if done.returncode != 0 or "exiting myNetLink module" not in done.stdout:
        raise SystemExit(f"plain vng failed ({done.returncode}):\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
    return took


def harness_run(results: Path, cache: Path | None = None) -> dict:
    t0 = time.monotonic()
    r = run(RunRequest(results=results, project=REPO, cache=cache), discard)
    took = time.monotonic() - t0
    if r.verdict.value != "pass":
        raise SystemExit(f"harness run: {r.verdict.value}: {r.reason}")
    return {"wall": took, "phases": {p.name: p.seconds for p in r.phases}, "boot": r.boot}


def spread(xs: list[float]) -> str:
    return f"{statistics.median(xs):.1f} ({min(xs):.1f}-{max(xs):.1f})"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--cold", action="store_true", help="also one run with an empty cache")
    ap.add_argument("--json", type=Path)
    ap.add_argument("--markdown", type=Path)
    a = ap.parse_args()
    results = Path(tempfile.mkdtemp(prefix="kmod-harness-bench-"))
    run_dir = Path(tempfile.mkdtemp(prefix="kmod-harness-bench-run-"))
    with procs.SignalGuard():
        prep = prepare(RunRequest(results=results, project=REPO), discard, run_dir, [])
        shutil.copy(REPO / "userspace" / "netlink_client.py", run_dir)
        plain = plain_root(prep)
        harness_run(results)  # warm-up: the build cache and the package index are now current
        vng_t, vng_cut, har = [], [], []
        try:
            for i in range(a.reps):
                vng_t.append(plain_vng(prep, run_dir, plain))
                har.append(harness_run(results))
                vng_cut.append(plain_vng(prep, run_dir, prep.root.path))
                print(f"  rep {i + 1}/{a.reps}: vng {vng_t[-1]:.1f}s, harness {har[-1]['wall']:.1f}s, "
                      f"vng on the harness's root {vng_cut[-1]:.1f}s", file=sys.stderr, flush=True)
        finally:
            shutil.rmtree(plain, ignore_errors=True)
        cold = None
        if a.cold:
            cache = Path(tempfile.mkdtemp(prefix="kmod-harness-cold-"))
            try:
                cold = harness_run(results, cache=cache)
            finally:
                shutil.rmtree(cache, ignore_errors=True)
    har_wall = [h["wall"] for h in har]
    ratio = statistics.median(har_wall) / statistics.median(vng_t)
    keys = sorted({k for h in har for k in h["phases"]}, key=["resolve", "kernel", "root", "build", "vm"].index)
    bkeys = list(har[0]["boot"])
    lines = [
        f"Machine: {platform.node()} {platform.machine()}, {os.cpu_count()} CPUs, {prep.setup.accel.value.upper()}; "
        f"{a.reps} alternating repetitions, median (min-max) in seconds.", "",
        "| contender | wall |", "| --- | ---: |",
        f"| plain vng (module prebuilt; the root as mmdebstrap made it) | {spread(vng_t)} |",
        f"| harness run, warm | {spread(har_wall)} |",
        f"| plain vng on the harness's root (its start-up cuts, see harness/kernel/cuts.py) | {spread(vng_cut)} |",
    ]
    if cold:
        lines.append(f"| harness run, cold cache (once) | {cold['wall']:.1f} |")
    ratio_cut = statistics.median(har_wall) / statistics.median(vng_cut)
    lines += ["", f"warm harness / plain vng = {ratio:.2f}; "
              f"warm harness / plain vng on the harness's root = {ratio_cut:.2f}", "",
              "| harness phase (warm) | seconds |", "| --- | ---: |"]
    lines += [f"| {k} | {spread([h['phases'][k] for h in har])} |" for k in keys]
    lines += [f"| vm: {k.replace('_', ' ')} | {spread([h['boot'][k] for h in har if k in h['boot']])} |"
              for k in bkeys]
    if cold:
        lines += ["", "Cold run phases: " + ", ".join(f"{k} {v:.1f}s" for k, v in cold["phases"].items())]
    text = "\n".join(lines) + "\n"
    print(text)
    for f in (a.markdown, a.json):
        if f:
            f.parent.mkdir(parents=True, exist_ok=True)
    if a.markdown:
        a.markdown.write_text(text)
    if a.json:
        a.json.write_text(json.dumps({"vng": vng_t, "vng_harness_root": vng_cut, "harness": har, "cold": cold,
                                      "ratio": ratio}, indent=1))
    shutil.rmtree(run_dir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

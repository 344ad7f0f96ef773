"""Verdicts under load (the short form of bench/stress.py): three runs of the default project at once
on one kernel and one cache, exec and ssh, beside a CPU hog on every core. Each must pass; a false
verdict keeps its results directory (pytest's tmp_path) for the evidence."""

import json
import multiprocessing
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import pytest

from conftest import REPO

pytestmark = [pytest.mark.vm, pytest.mark.stress]


def hog(stop) -> None:
    while not stop.is_set():
        sum(i * i for i in range(10000))


def run(results, transport: str) -> dict:
    p = subprocess.run([sys.executable, "-m", "harness", "run", "--results", str(results), "--transport", transport,
                        "--timeout", "900"], cwd=REPO, capture_output=True, text=True, timeout=1200)
    res = json.loads((results / "debian-bookworm" / "result.json").read_text())
    return {"exit": p.returncode, "verdict": res["verdict"], "reason": res["reason"], "results": str(results)}


def test_three_runs_at_once_beside_a_cpu_hog_all_pass(own_tmp):
    stop = multiprocessing.Event()
    hogs = [multiprocessing.Process(target=hog, args=(stop,), daemon=True) for _ in range(os.cpu_count() or 1)]
    for h in hogs:
        h.start()
    try:
        with ThreadPoolExecutor(max_workers=3) as pool:
            runs = list(pool.map(lambda a: run(own_tmp / f"r{a[0]}", a[1]), enumerate(("exec", "ssh", "exec"))))
    finally:
        stop.set()
        for h in hogs:
            h.join(5)
    bad = [r for r in runs if r["verdict"] != "pass" or r["exit"] != 0]
    assert not bad, bad

#!/usr/bin/env python3
"""Edit to verdict: harness watch (a spare guest booted ahead) against a warm harness run per edit.

On a copy of examples/module-repo, the module's source is edited N times (a comment changes: the
module is rebuilt, its behaviour is the same). Each edit is timed from the file's write to the
verdict printed:

  watch, paced   the edit waits until the next spare is ready (a developer's pace: longer than a boot)
  run            `harness run` on the same sources, alternated with watch: each starts once the
                 watcher's next spare is up, so both share the machine with one idle guest
  watch, rapid   M edits half a second apart: the watcher folds them, and the screen says so

    python3 bench/watch.py [--edits 10] [--rapid 5] [--json FILE] [--markdown FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
HARNESS = [sys.executable, "-m", "harness"]


class Watch:
    def __init__(self, project: Path, results: Path):
        self.proc = subprocess.Popen([*HARNESS, "watch", "--project", str(project), "--results", str(results)],
                                     cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.lines: list[tuple[float, str]] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append((time.monotonic(), line.rstrip("\n")))

    def wait(self, pattern: str, after: int, timeout: float = 900) -> tuple[int, float]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for i in range(after, len(self.lines)):
                if re.search(pattern, self.lines[i][1]):
                    return i + 1, self.lines[i][0]
            time.sleep(0.05)
        raise SystemExit(f"watch: no {pattern!r}:\n" + "\n".join(t for _, t in self.lines[-30:]))

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(120)


def touch(source: Path, n: int) -> float:
    """A new source each time, never one built before (the build cache would answer at once)."""
    text = re.sub(r"/\* bench edit \d+ \d+ \*/\n", "", source.read_text())
    source.write_text(f"/* bench edit {n} {time.time_ns()} */\n" + text)
    return time.monotonic()


def warm_run(project: Path, results: Path) -> float:
    t0 = time.monotonic()
    p = subprocess.run([*HARNESS, "run", "--project", str(project), "--results", str(results)], cwd=REPO,
                       capture_output=True, text=True)
    if p.returncode != 0:
        reasons = [json.loads(f.read_text())["reason"] for f in results.glob("*/result.json")]
        raise SystemExit(f"harness run failed ({p.returncode}): {reasons}; results kept in {results}\n"
                         f"{p.stderr[-2000:]}")
    return time.monotonic() - t0


def phases(results: Path) -> dict[str, float]:
    """The build and vm phases of the run whose result.json is under ``results``, and its steps' time."""
    res = json.loads(next(results.glob("*/result.json")).read_text())
    out = {p["name"]: p["seconds"] for p in res["phases"]}
    out["steps"] = sum(st.get("seconds") or 0 for st in res.get("steps", []))
    return out


def spread(xs: list[float]) -> str:
    return f"{statistics.median(xs):.1f} ({min(xs):.1f}-{max(xs):.1f})" if xs else "-"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--edits", type=int, default=10)
    ap.add_argument("--rapid", type=int, default=5)
    ap.add_argument("--json", type=Path)
    ap.add_argument("--markdown", type=Path)
    a = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="kmod-harness-bench-watch-"))
    project = tmp / "module-repo"
    shutil.copytree(REPO / "examples" / "module-repo", project, ignore=shutil.ignore_patterns(".github"))
    source = project / "module" / "kh_greeter.c"
    warm_run(project, tmp / "warm")  # the root, the index and the build cache are current
    w = Watch(project, tmp / "watch")
    paced, runs, rapid_wall = [], [], 0.0
    parts: list[dict[str, float]] = []
    try:
        at, _ = w.wait("spare guest ready", 0)
        for i in range(a.edits):
            t0 = touch(source, i)
            at, t1 = w.wait(r"^verdict: PASS", at)
            paced.append(t1 - t0)
            parts.append(phases(tmp / "watch"))
            # The next spare boots once the verdict is out: the warm run waits for it, so that it
            # shares the machine with an idle guest, as the watched edit did.
            at, _ = w.wait("spare guest ready", at)
            runs.append(warm_run(project, tmp / "run"))  # alternated: the same sitting, the same load
            print(f"  edit {i + 1}/{a.edits}: watch {paced[-1]:.1f}s, harness run {runs[-1]:.1f}s",
                  file=sys.stderr, flush=True)
        t0 = time.monotonic()
        for j in range(a.rapid):
            touch(source, 1000 + j)
            time.sleep(0.5)
        at, t1 = w.wait(r"^verdict: PASS", at)
        folded = sum("changed while that ran" in t for _, t in w.lines[at:])
        at, t1 = w.wait(r"^verdict: PASS", at) if folded else (at, t1)
        rapid_wall = t1 - t0
        verdicts = sum(t.startswith("verdict:") for _, t in w.lines)
    except BaseException:
        print(f"kept for a look: {tmp}", file=sys.stderr)
        raise
    else:
        shutil.rmtree(tmp, ignore_errors=True)
    finally:
        w.stop()
    ratio = statistics.median(paced) / statistics.median(runs)
    text = "\n".join([
        f"Machine: {platform.node()} {platform.machine()}, {os.cpu_count()} CPUs; {a.edits} edits, alternated; "
        "seconds from the file's write to the verdict, median (min-max).", "",
        "| contender | edit to verdict |", "| --- | ---: |",
        f"| harness watch, a spare ready | {spread(paced)} |",
        f"| warm harness run | {spread(runs)} |", "",
        f"watch / run = {ratio:.2f} ({1 / ratio:.1f}x faster)", "",
        "Where a watched edit's time goes, median (min-max) s: "
        + "; ".join(f"{k} {spread([p.get(k, 0.0) for p in parts])}" for k in ("build", "vm", "steps"))
        + " (vm: the plan on the spare over SSH, the runner's start included; steps: the guest steps alone)", "",
        f"{a.rapid} edits 0.5 s apart: {verdicts - a.edits} more verdicts, the last {rapid_wall:.1f}s after the "
        "first edit (the edits that came during a run were folded into the next)"]) + "\n"
    print(text)
    for f in (a.markdown, a.json):
        if f:
            f.parent.mkdir(parents=True, exist_ok=True)
    if a.markdown:
        a.markdown.write_text(text)
    if a.json:
        a.json.write_text(json.dumps({"watch": paced, "run": runs, "watch_phases": parts, "rapid_wall": rapid_wall,
                                      "ratio": ratio}))
    return 0


if __name__ == "__main__":
    sys.exit(main())

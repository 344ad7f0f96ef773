#!/usr/bin/env python3
"""The module's line coverage: what `harness fuzz` reached, against the default run and the hostile suite.

All three are measured the same way, by gcov, on a kernel with it (default
debian-src:trixie+kunit+gcov), in one session:

  default   this repository's harness.toml: the client's hello (and the KUnit suite, on that kernel)
  hostile   tests/hostile: every hostile case
  fuzzer    the fuzzer's corpus (--corpus, e.g. from a 30-minute `harness fuzz`), replayed in order by a
            step script that `harness fuzz`'s repro generator writes (the fuzzer's own sending code):
            the corpus holds every input that reached module code no input before it had, so
            replaying it reaches what the fuzzer reached

    python3 bench/fuzz_coverage.py --corpus DIR [--kernel debian-src:trixie+kunit+gcov] [--markdown FILE]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from harness import fuzzdecl as decl  # noqa: E402
from harness.fuzz import repro  # noqa: E402
from harness.fuzz.corpus import Corpus  # noqa: E402
from harness.guest import fuzzer  # noqa: E402


def replay_project(corpus: Path, where: Path) -> tuple[Path, int]:
    """A project of this repository's module whose one step sends every corpus input in order (its trail,
    in the same throwaway directory, is recorded from the run: the replay's records are not what it checks)."""
    targets = decl.FuzzDecl.model_validate({"netlink": [{"protocol": 30}]}).targets()
    case = [fuzzer.decode_input(i) for i in Corpus(corpus).seeds(targets)]
    (where / "replay.py").write_text(repro.script("replay", targets, case, [f"the corpus {corpus}, replayed"]))
    (where / "harness.toml").write_text(
        f'[module]\nname = "netlink_kernel"\nsource = "{REPO / "kernel_src"}"\ntrail = "trail.toml"\n\n'
        '[[step]]\nname = "replay"\nrun = ["python3", "/project/replay.py"]\ntimeout = 600\n')
    return where / "harness.toml", len(case)


def run(kernel: str, project: Path, results: Path, *more: str) -> dict[str, Any]:
    subprocess.run([sys.executable, "-m", "harness", "run", "--kernel", kernel, "--project", str(project), "--results",
                    str(results), "--timeout", "1500", "--cpus", "1", *more], cwd=REPO)
    res = json.loads(next(results.glob("*/result.json")).read_text())
    return {"verdict": res["verdict"], **(res.get("coverage") or {})}


def row(name: str, cov: dict[str, Any]) -> str:
    files = {Path(f["file"]).name: f for f in cov.get("files", [])}

    def cell(f: str, kind: str) -> str:
        d = files.get(f, {}).get(kind) or {}
        return f"{d.get('covered', '-')}/{d.get('total', '-')}" + (f" ({d['percent']}%)" if d.get("percent") else "")

    lines, branches = cov.get("lines") or {}, cov.get("branches") or {}
    return (f"| {name} | {cov.get('verdict')} | {cell('netlink_kernel.c', 'lines')} "
            f"| {cell('netlink_kernel.c', 'branches')} | {cell('netlink_msg.h', 'lines')} "
            f"| {lines.get('covered')}/{lines.get('total')} ({lines.get('percent')}%) "
            f"| {branches.get('covered')}/{branches.get('total')} |")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--corpus", type=Path, required=True)
    p.add_argument("--kernel", default="debian-src:trixie+kunit+gcov")
    p.add_argument("--markdown", type=Path)
    args = p.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-fuzzcov-") as tmp:
        t = Path(tmp)
        (t / "replay").mkdir()
        replay, n = replay_project(args.corpus.resolve(), t / "replay")
        rows = [("the default run (`harness.toml`: the client's hello, the KUnit suite)",
                 run(args.kernel, REPO, t / "d")),
                ("the hostile-input suite (`tests/hostile`)", run(args.kernel, REPO / "tests/hostile", t / "h")),
                (f"the fuzzer's corpus replayed ({n} inputs)",
                 run(args.kernel, replay, t / "f", "--record-trail"))]
    head = ["| run | verdict | netlink_kernel.c lines | branches | netlink_msg.h lines | all lines | all branches |",
            "| --- | --- | ---: | ---: | ---: | ---: | ---: |"]
    text = "\n".join(head + [row(name, cov) for name, cov in rows]) + "\n"
    print(text)
    if args.markdown:
        args.markdown.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())

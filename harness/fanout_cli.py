"""Command-line options of the matrix across machines: ``harness report`` and ``--repeat`` for run and matrix.

Kept apart from ``cli.py`` (which calls these), and light: nothing here imports a run's machinery.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any, Callable


def _count(least: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            n = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if n < least:
            raise argparse.ArgumentTypeError(f"{text!r}: give at least {least}")
        return n
    return parse


def add_repeat_opts(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("attempts")
    g.add_argument("--repeat", type=_count(1), default=1, metavar="N",
                   help="run each kernel N times and classify it: pass (every attempt passed), fail (none did) or "
                   "flaky (some did); result.json lists every attempt under `attempts` (default 1)")
    g.add_argument("--retry-infra", type=_count(0), default=1, metavar="N",
                   help="run an attempt whose verdict is infra (download, root, QEMU, boot) again, up to N times in "
                   "all; it does not count. A module's failure (fail, crash, timeout) is never retried (default 1)")


def add_report_parser(sub: Any, help_end: str) -> None:
    rp = sub.add_parser(
        "report", help="merge the results directories of many machines into one report", epilog=help_end,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Read results directories (each with <kernel>/result.json files or a matrix.json: CI "
        "artifacts, other machines' --results) and write one matrix.json, index.html, junit.xml and summary.md "
        "(also appended to $GITHUB_STEP_SUMMARY when set). The same kernel found more than once is one cell with "
        "several attempts (pass, fail or flaky over them all). Exit code: the worst verdict among what is new, "
        "against --baseline and the known failures, as for harness matrix.")
    rp.add_argument("dirs", nargs="+", type=Path, metavar="DIR", help="a results directory (searched a few levels "
                    "deep), a result.json or a matrix.json")
    rp.add_argument("--baseline", type=Path, metavar="DIR|MATRIX_JSON",
                    help="an earlier report's matrix.json (or its directory), or a --history directory: its last "
                    "successful run")
    rp.add_argument("--history", type=Path, metavar="DIR",
                    help="keep this run's matrix.json in DIR (by date and commit) and show each kernel's history")
    rp.add_argument("--results", type=Path, default=Path("report"), metavar="OUT",
                    help="where the report and each kernel's evidence go (default ./report)")
    rp.add_argument("--matrix-file", type=Path, default=None, metavar="FILE",
                    help="the kernel list whose `expect` entries are known failures (default: kmod-harness's)")
    rp.add_argument("--project", type=Path, default=Path("."), metavar="DIR",
                    help="the project whose harness.toml [[known_failure]] entries count (default .)")
    rp.add_argument("--commit", metavar="SHA", help="the commit this run tested (default $GITHUB_SHA, else git HEAD)")
    rp.add_argument("--date", metavar="ISO8601", help="when it ran, for the history (default now)")

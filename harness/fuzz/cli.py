"""``harness fuzz`` on the command line: its options and its handler (``harness/cli.py`` registers both).

Light at import: the parser is built for every ``harness`` command, so the fuzzing machinery is
imported by the handler only.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import IO, Any

from harness.events import Printer
from harness.fuzz.request import DEBUG_KERNEL, FuzzRequest


def add_parser(sub: Any, help_end: str) -> None:
    from harness.cli import _positive, add_guest_opts, add_kernel_opts

    f = sub.add_parser("fuzz", help="coverage-guided fuzzing of the module's netlink, device and /proc interfaces",
                       epilog=help_end, formatter_class=argparse.RawDescriptionHelpFormatter,
                       description="Fuzz the interfaces harness.toml declares ([[fuzz.netlink]], [[fuzz.chardev]], "
                       "[[fuzz.file]]; inferred from the sources when there are none) in a VM, with kcov coverage "
                       "of the module. A crash is confirmed in a fresh guest, minimized, and written as "
                       "repro/NAME.py with the [[step]] that adds it; fuzzing then goes on. Writes DIR/fuzz.json "
                       "and DIR/index.html. Exit 4 when a crash was found and confirmed, 0 when none was.")
    add_kernel_opts(f, many=True)
    f.add_argument("--kernel", "-k", default=DEBUG_KERNEL, metavar="SPEC",
                   help=f"kernel to fuzz on; it needs CONFIG_KCOV (default {DEBUG_KERNEL}, built from source once)")
    add_guest_opts(f)
    g = f.add_argument_group("fuzzing")
    g.add_argument("--duration", type=_positive, default=FuzzRequest.duration, metavar="S",
                   help=f"seconds for it all: boots, fuzzing, confirmations (default {FuzzRequest.duration:.0f})")
    g.add_argument("--corpus", type=Path, default=None, metavar="DIR",
                   help="where the inputs that reached new module code are kept and read back "
                   "(default PROJECT/fuzz/corpus/MODULE)")
    g.add_argument("--results", type=Path, default=Path("results"), metavar="DIR",
                   help="where fuzz.json, index.html and the evidence go (default ./results)")
    g.add_argument("--no-coverage", action="store_true",
                   help="no kcov feedback: mutate the seeds blindly (any kernel; a baseline for the feedback)")
    g.add_argument("--seed", type=int, default=None, metavar="N", help="the mutations' random seed")
    g.add_argument("--max-findings", type=int, default=0, metavar="N",
                   help="stop after N confirmed crashes (default 0: fuzz for the whole duration)")
    g.add_argument("--exec-timeout", type=_positive, default=FuzzRequest.exec_timeout, metavar="S",
                   help=f"limit for one input in the guest (default {FuzzRequest.exec_timeout:.0f})")
    g.add_argument("--execs-per-child", type=int, default=FuzzRequest.execs_per_child, metavar="N",
                   help="inputs one forked child executes before the next is forked (default 1: a fork per input; "
                   "forking costs far more than most inputs on the debug kernel under TCG, see docs/PERFORMANCE.md)")
    g.add_argument("--minimize-rounds", type=int, default=FuzzRequest.minimize_rounds, metavar="N",
                   help="fresh guests spent shrinking a crash's input, at most "
                   f"(default {FuzzRequest.minimize_rounds})")
    f.add_argument("-v", "--verbose", action="store_true", help="show the kernel consoles as they boot")


def main(args: argparse.Namespace, printer: Printer, out: IO[str]) -> int:
    from harness.cli import _cpus_of
    from harness.fuzz.loop import fuzz
    from harness.fuzz.prepare import check
    from harness.phases import RunRequest

    req = RunRequest(kernel=args.kernel, project=args.project, results=args.results, accel=args.accel,
                     build_in="host", mirror=args.mirror, apt_options=tuple(args.apt_option), refresh=args.refresh,
                     cpus=_cpus_of(args, fallback=1))
    freq = FuzzRequest(run=req, duration=args.duration, corpus=args.corpus, coverage=not args.no_coverage,
                       seed=args.seed, max_findings=args.max_findings, exec_timeout=args.exec_timeout,
                       minimize_rounds=args.minimize_rounds, execs_per_child=args.execs_per_child)
    check(freq)
    fr = fuzz(freq, printer)
    d = json.loads((args.results / "fuzz.json").read_text())
    printer.line(f"fuzzed {d.get('execs', 0)} inputs ({d.get('execs_per_second') or 0}/s), corpus "
                 f"{(d.get('corpus') or {}).get('size', 0)}, {(d.get('coverage') or {}).get('pcs', 0)} module PCs")
    printer.verdict(fr.verdict, d["reason"])
    printer.line(f"report: {args.results / 'fuzz.json'}, {args.results / 'index.html'}")
    return fr.verdict.exit_code

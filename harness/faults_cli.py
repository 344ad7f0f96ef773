"""Command-line options of ``harness faults``, and its handler (cli.py calls these; the walk is faults.py).

Light: nothing here imports the walk's machinery until the command runs.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import IO, Any, Callable

from harness.events import Printer
from harness.model import Timeouts

DEFAULT_KERNEL = "debian-src:trixie+debug"  # vm/configs/debug.config: fault injection, KASAN, kmemleak
DESCRIPTION = (
    "For the module's init and each step run with the module loaded, and for n = 1, 2, ... until a pass makes "
    "fewer calls: fail the n-th fault-injectable call made with the module's code on the stack (slab and page "
    "allocations, through the kernel's fail-nth), and judge the point: a splat (KASAN, WARN, Oops), a leak "
    "(kmemleak after the unload), a kernel complaint about the module, a hang or a module that will not unload "
    "is a finding; a clean error returned to userspace is a pass. Needs a kernel with fault injection, KASAN "
    f"and kmemleak: {DEFAULT_KERNEL} (the default; built once). Exit 0: no finding; 1: findings (whatever their "
    "consequence, a crash included); 2: usage; 3: the walk could not be done.")


def add_parser(sub: Any, help_end: str, add_kernel_opts: Callable[[argparse.ArgumentParser], None],
               add_guest_opts: Callable[[argparse.ArgumentParser], None], seconds: Callable[[str], float]) -> None:
    f = sub.add_parser("faults", help="walk every error path of the module: each point fails one call, then judged",
                       epilog=help_end, formatter_class=argparse.RawDescriptionHelpFormatter, description=DESCRIPTION)
    add_kernel_opts(f)
    f.set_defaults(kernel=DEFAULT_KERNEL)
    for action in f._actions:
        if action.dest == "kernel":
            action.help = f"kernel to walk on (default {DEFAULT_KERNEL}: fault injection, KASAN, kmemleak)"
    add_guest_opts(f)
    g = f.add_argument_group("the walk")
    g.add_argument("--results", type=Path, default=Path("results"), metavar="DIR",
                   help="where faults.json, index.html and junit.xml go (default ./results)")
    g.add_argument("--only", type=int, default=None, metavar="N",
                   help="walk point N only (of --step, else of every step): what a finding's command repeats")
    g.add_argument("--step", default=None, metavar="NAME",
                   help="walk this step only: 'init' (the module's load) or a step run with the module loaded")
    g.add_argument("--max-points", type=int, default=500, metavar="N",
                   help="points per step at most (default 500): a walk that finds no end is cut there")
    g.add_argument("--timeout", type=seconds, default=1200, metavar="S",
                   help="limit for a guest's boot (default 1200: the debug kernel boots in 1.5-5 minutes under "
                   "TCG, more on a loaded machine)")


def main(args: argparse.Namespace, printer: Printer, out: IO[str]) -> int:
    from harness import faults
    from harness.phases import default_cpus
    from harness.run import results_id

    run = faults.request(args.kernel, args.project, args.results, accel=args.accel,
                         cpus=args.cpus if args.cpus is not None else default_cpus(),
                         mirror=args.mirror, apt_options=tuple(args.apt_option), refresh=args.refresh,
                         timeouts=Timeouts(guest=args.timeout))
    code, _ = faults.faults(faults.FaultRequest(run, only=args.only, step=args.step, max_points=args.max_points),
                            printer)
    printer.line(f"report: {args.results / results_id(args.kernel) / 'faults.json'}, {args.results / 'index.html'}, "
                 f"{args.results / 'junit.xml'}")
    return code

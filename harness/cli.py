"""Command line: ``main(argv) -> int``. Exit codes come from ``model.EXIT_CODES`` only."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Callable, Optional, Sequence

from harness import __version__, arches, fanout_cli, faults_cli, procs, resources
from harness.errors import HarnessError, UsageError
from harness.events import Printer
from harness.fuzz import cli as fuzz_cli
from harness.kernel import spec
from harness.model import EXIT_CODES, Timeouts, Verdict

if TYPE_CHECKING:
    from harness.model import RunResult
    from harness.phases import RunRequest

def epilog() -> str:
    """The help's epilog, from the one table of exit codes and the known specs (built with the parser)."""
    codes = "\n".join(f"  {EXIT_CODES[v]:<3} {v.meaning}" for v in Verdict)
    forms = "\n".join("  " + ln for ln in spec.SPEC_FORMS.splitlines())
    return (f"exit codes:\n{codes}\n\nkernel specs:\n{forms}\n  suites: {', '.join(spec.SUITES)}\n"
            f"  debian-src flavours: {', '.join(resources.flavours())}\n\n"
            "environment:\n"
            "  HARNESS_MIRROR, HARNESS_SECURITY_MIRROR   Debian mirrors (default deb.debian.org)\n"
            "  HARNESS_APT_OPTIONS   extra apt options, e.g. Acquire::Check-Valid-Until=false\n"
            "  HARNESS_CACHE         cache directory (default $XDG_CACHE_HOME/kmod-harness)\n"
            "  HARNESS_INDEX_TTL     seconds a downloaded package index counts as current (default 3600)\n"
            "  HARNESS_CPUS          guest vCPUs when --cpus is not given (default 2; the matrix 1)\n")


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]  # exit 2 through main, not sys.exit
        raise UsageError(f"{self.prog}: {message}", hint=f"see `{self.prog} --help`")


MAX_SECONDS = 7 * 86400.0  # a week: any longer limit is a typo


def _positive(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not 0 < v <= MAX_SECONDS:  # also false for nan
        raise argparse.ArgumentTypeError(f"{text!r}: give a number of seconds more than 0 and at most "
                                         f"{MAX_SECONDS:.0f}")
    return v


def _cpus(text: str) -> int:
    from harness.phases import parse_cpus

    try:
        return parse_cpus(text, "--cpus")
    except UsageError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def add_kernel_opts(p: argparse.ArgumentParser, many: bool = False) -> None:
    g = p.add_argument_group("kernel and archive")
    if not many:
        g.add_argument("--kernel", "-k", default=spec.DEFAULT_KERNEL, metavar="SPEC",
                       help=f"kernel to test (default {spec.DEFAULT_KERNEL}: bookworm's current 6.1)")
    g.add_argument("--arch", metavar="ARCH", default=None,
                   help=f"the guest's architecture, Debian's name: {', '.join(arches.ARCHES)} (default: the host's, "
                   f"{arches.host().name}); another than the host's runs under TCG, its root and module build "
                   "through qemu-user (qemu-user-static with binfmt_misc; `make setup`)")
    g.add_argument("--mirror", metavar="URL", help="Debian mirror (default $HARNESS_MIRROR or deb.debian.org)")
    g.add_argument("--apt-option", action="append", default=[], metavar="KEY=VALUE",
                   help="extra apt option, repeatable (e.g. Acquire::Check-Valid-Until=false for an expired sid)")
    g.add_argument("--refresh", action="store_true",
                   help="download the package index now, even if the cached one is younger than "
                   "HARNESS_INDEX_TTL seconds")


def add_guest_opts(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("the guest")
    g.add_argument("--accel", choices=("auto", "kvm", "tcg"), default="auto",
                   help="auto uses KVM only when /dev/kvm is read-writable and the CPU has vmx/svm")
    g.add_argument("--cpus", type=_cpus, default=None, metavar="N",
                   help="guest vCPUs (default $HARNESS_CPUS, else 2; the matrix 1 per guest)")
    g.add_argument("--project", type=Path, default=Path("."), metavar="DIR",
                   help="directory with harness.toml (or [tool.harness] in pyproject.toml) describing the module, "
                   "or a .toml file with that description (default .; `harness init` writes one)")


def add_run_opts(p: argparse.ArgumentParser) -> None:
    add_guest_opts(p)
    g = p.add_argument_group("the run")
    g.add_argument("--build-in", choices=("auto", "host", "guest"), default="auto",
                   help="where to build the module: auto = host under TCG, guest under KVM")
    g.add_argument("--timeout", type=_positive, default=Timeouts.guest, metavar="S",
                   help=f"limit for boot + guest steps + shutdown (default {Timeouts.guest:.0f})")
    g.add_argument("--results", type=Path, default=Path("results"), metavar="DIR",
                   help="where result.json, console.log and junit.xml go (default ./results)")
    g.add_argument("--transport", choices=("exec", "ssh"), default="exec",
                   help="start the guest runner through virtme-ng's exec channel (default) or over SSH "
                   "(paramiko; sshd in the guest on a free 127.0.0.1 port)")
    g.add_argument("--append", action="append", default=[], metavar="PARAM",
                   help="extra kernel parameter, repeatable (e.g. --append kasan.fault=panic)")
    g.add_argument("--console-level", type=int, choices=range(0, 9), default=7, metavar="N",
                   help="records below level N go to the serial console (default 7, virtme-ng's; lower it "
                   "for modules that log per message: under TCG console output is slow, but a guest "
                   "that dies before its records are sent may then take its last ones with it). /dev/kmsg "
                   "records, and so result.json, always hold every level")


def build_parser() -> argparse.ArgumentParser:
    help_end = epilog()
    p = _Parser(prog="harness", description="Test a Linux kernel module in throwaway QEMU VMs (virtme-ng).",
                epilog=help_end, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--version", action="store_true", help="print kmod-harness's version and exit")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    fmt = argparse.RawDescriptionHelpFormatter

    r = sub.add_parser("run", help="build, boot, load, exercise and check the module on one kernel", epilog=help_end,
                       formatter_class=fmt,
                       description="Build the module against KERNEL's own headers and compiler, boot KERNEL in "
                       "a throwaway VM, insmod, run the guest steps, rmmod, check the printk trail.")
    add_kernel_opts(r)
    add_run_opts(r)
    r.add_argument("--record-trail", action="store_true",
                   help="do not check the trail: write the project's trail file from this run's own records "
                   "(when it passes otherwise), with the taint lines of a first load as [[allow]] entries")
    r.add_argument("-v", "--verbose", action="store_true", help="show the kernel console as it boots")
    fanout_cli.add_repeat_opts(r)

    m = sub.add_parser("matrix", help="harness run for every kernel of the matrix, in parallel", epilog=help_end,
                       formatter_class=fmt,
                       description="Run the job on each kernel of the matrix file (or --kernels), several at a "
                       "time. Writes DIR/matrix.json, DIR/summary.md, DIR/junit.xml and DIR/<kernel>/*. Exit "
                       "code: the worst verdict's, among the kernels that failed and are not known to "
                       "(the matrix file's `expect`, the project's [[known_failure]]) or, with --baseline, "
                       "that did not fail before.")
    m.add_argument("--kernels", metavar="SPEC,...", help="comma-separated specs (default: all of --matrix-file)")
    m.add_argument("--matrix-file", type=Path, default=None, metavar="FILE",
                   help="kernel list (default: the vm/kernels.toml that comes with kmod-harness)")
    m.add_argument("-j", "--jobs", type=int, default=None, metavar="N",
                   help="kernels at a time (default: from CPU count and free memory)")
    m.add_argument("--shard", metavar="I/N", help="run only the I-th of N slices of the kernel list (CI)")
    m.add_argument("--list", action="store_true", help="print the selected kernels as JSON and exit")
    m.add_argument("--baseline", type=Path, metavar="MATRIX_JSON",
                   help="an earlier run's matrix.json: report per kernel what is newly failing, fixed, still "
                   "failing or new; the exit code then counts only what is new")
    add_kernel_opts(m, many=True)
    add_run_opts(m)
    fanout_cli.add_repeat_opts(m)

    sh = sub.add_parser("shell", help="an interactive shell in a fresh VM with the module built and loaded",
                        description="Boot KERNEL with sshd, build and insmod the module, and open a shell over "
                        "SSH. The project directory is at /project, the built module at /harness/build. "
                        "Leaving the shell shuts the VM down.")
    add_kernel_opts(sh)
    add_guest_opts(sh)
    sh.add_argument("--no-load", action="store_true", help="do not insmod the module")

    w = sub.add_parser("watch", help="on every edit: rebuild, run on a guest booted in advance, judge",
                       epilog=help_end, formatter_class=fmt,
                       description="Watch the module's sources and the project's files. On each change, rebuild "
                       "the module on the host (a build error shows at once), run the guest steps on a spare guest "
                       "booted in advance over SSH, judge the run as `harness run` does and write the same results. "
                       "Each spare is used once (its kernel has loaded the module) and the next boots meanwhile. "
                       "Edits made while a run is under way are folded into the next run. Ctrl-C stops it all.")
    add_kernel_opts(w)
    add_guest_opts(w)
    w.add_argument("--results", type=Path, default=Path("results"), metavar="DIR",
                   help="where each run's results go (default ./results)")
    w.add_argument("--timeout", type=_positive, default=Timeouts.guest, metavar="S",
                   help=f"limit for a run's guest steps (default {Timeouts.guest:.0f})")
    w.add_argument("--spare-max-age", type=_positive, default=600, metavar="S",
                   help="a spare booted longer ago than this is booted again before use (default 600)")
    w.add_argument("--runs", type=int, default=None, metavar="N", help="stop after N verdicts (default: never)")
    w.add_argument("--now", action="store_true", help="also run once at start, before any change")

    i = sub.add_parser("init", help="write a harness.toml for an existing kbuild module directory",
                       description="Look at DIR's Kbuild or Makefile (its obj-m names) and write DIR/harness.toml "
                       "describing the module(s). Then `harness run --project DIR --record-trail` records the "
                       "trail from a passing run.")
    i.add_argument("dir", nargs="?", type=Path, default=Path("."), metavar="DIR", help="the module directory")
    i.add_argument("--force", action="store_true", help="replace an existing harness.toml")

    from harness import kernels_cmd as manage
    manage.add_parser(sub, add_kernel_opts)
    fanout_cli.add_report_parser(sub, help_end)
    faults_cli.add_parser(sub, help_end, add_kernel_opts, add_guest_opts, _positive)
    fuzz_cli.add_parser(sub, help_end)
    return p


def main(argv: Optional[Sequence[str]] = None, out: Optional[IO[str]] = None) -> int:
    out = out or sys.stdout
    printer = Printer(sys.stderr)
    try:
        args = build_parser().parse_args(argv)
        if args.version:
            out.write(f"kmod-harness {__version__}\n")
            return 0
        if getattr(args, "verbose", False):
            printer = Printer(sys.stderr, verbose=True)
        handler = _HANDLERS.get(args.command)
        if handler is None:
            build_parser().print_help(out)
            return EXIT_CODES[Verdict.ERROR]
        if getattr(args, "arch", None) is not None and isinstance(getattr(args, "kernel", None), str):
            args.kernel = spec.with_arch(args.kernel, args.arch)  # the one written form: debian:SUITE:ARCH
        return handler(args, printer, out)
    except HarnessError as e:
        printer.line(f"harness: error: {e}")
        return e.verdict.exit_code
    except KeyboardInterrupt:
        printer.line("harness: interrupted")
        return EXIT_CODES[Verdict.INTERRUPTED]
    except BrokenPipeError:  # `harness kernels list | head`: the reader has what it wanted
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except OSError as e:  # the host, not the input: a full disk, a file that went away
        where = f"{e.filename}: " if e.filename else ""
        printer.line(f"harness: error: {where}{e.strerror or e}")
        printer.line("  hint: the host refused a file operation (disk full, permissions?); nothing else went wrong")
        return EXIT_CODES[Verdict.INFRA]
    except Exception as e:  # a bug of the harness: one line, the traceback on request
        if os.environ.get("HARNESS_DEBUG") == "1":
            raise
        printer.line(f"harness: internal error: {type(e).__name__}: {e}")
        printer.line("  hint: please report it; HARNESS_DEBUG=1 shows the traceback")
        return EXIT_CODES[Verdict.INFRA]


def _request(args: argparse.Namespace, **more: Any) -> "RunRequest":
    from harness.phases import RunRequest

    more.setdefault("cpus", _cpus_of(args))
    return RunRequest(project=args.project, results=args.results, accel=args.accel, build_in=args.build_in,
                      timeouts=Timeouts(guest=args.timeout), mirror=args.mirror, apt_options=tuple(args.apt_option),
                      append=tuple(args.append), transport=args.transport, refresh=args.refresh,
                      console_level=args.console_level, **more)


def _cpus_of(args: argparse.Namespace, fallback: int = 2) -> int:
    """Guest vCPUs: --cpus, else $HARNESS_CPUS, else ``fallback``."""
    from harness.phases import default_cpus

    return args.cpus if args.cpus is not None else default_cpus(fallback)


def _cmd_run(args: argparse.Namespace, printer: Printer, out: IO[str]) -> int:
    from harness.locks import write_atomic
    from harness.phases import check_request
    from harness.repeat import run_repeated
    from harness.run import index_html, results_id
    from harness.verdict import junit, report

    req = _request(args, kernel=args.kernel, record_trail=args.record_trail)
    check_request(req)
    result = run_repeated(req, printer,
                          args.repeat, args.retry_infra)
    write_atomic(args.results / "junit.xml", junit.junit_xml([result]))
    write_atomic(args.results / "index.html", index_html([result], [], f"kmod-harness: {result.kernel}"))
    for line in report.summary_lines(result):
        printer.line(line)
    printer.verdict(result.verdict, result.reason)
    if result.read_first:
        printer.line(f"read first: {args.results / results_id(result.kernel) / result.read_first}")
    printer.line(f"report: {args.results}")
    return result.verdict.exit_code


def _cmd_matrix(args: argparse.Namespace, printer: Printer, out: IO[str]) -> int:
    from harness import matrix, repeat
    from harness.verdict import compare, report

    entries = matrix.load_matrix(args.matrix_file)
    entries = matrix.select(entries, [s for s in (args.kernels or "").split(",") if s.strip()])
    if args.arch is not None:
        entries = matrix.for_arch(entries, args.arch)
    if args.shard:
        entries = matrix.shard(entries, *matrix.parse_shard(args.shard))
    if args.list:
        out.write(json.dumps([e.spec for e in entries]) + "\n")
        return 0
    if args.jobs is not None and args.jobs < 1:
        raise UsageError(f"-j {args.jobs}: give at least 1")
    req = _request(args, cpus=_cpus_of(args, fallback=1))
    from harness.phases import check_request

    for e in entries:  # each kernel's spec and apt options; the project, trail and environment once
        check_request(dataclasses.replace(req, kernel=e.spec, apt_options=req.apt_options + e.apt_options))
    jobs = args.jobs or matrix.default_jobs(guest_cpus=req.cpus)
    baseline = matrix.load_baseline(args.baseline) if args.baseline else None
    expected = matrix.expectations(entries, args.project)
    t0 = time.monotonic()
    results = matrix.run_matrix(entries, req, jobs, printer, repeat.runner(args.repeat, args.retry_infra))
    wall = time.monotonic() - t0
    rows = compare.compare([compare.Outcome.of(r) for r in results], baseline, expected)
    matrix.write_reports(results, rows, args.results, wall)
    merged = matrix.merge_coverage(results, args.results, args.project)
    if merged is not None:
        printer.line(f"merged over kernels: {report.coverage_line(merged)}")
    out.write(report.summary_markdown(results, wall, rows))
    printer.line(f"report: {args.results}/summary.md, matrix.json, junit.xml")
    return matrix.matrix_exit_code(rows)


def _cmd_shell(args: argparse.Namespace, printer: Printer, out: IO[str]) -> int:
    from harness.guest import ssh
    from harness.phases import RunRequest
    from harness.session import Session

    with tempfile.TemporaryDirectory(prefix="kmod-harness-shell-") as results:
        req = RunRequest(kernel=args.kernel, project=args.project, results=Path(results), accel=args.accel,
                         build_in="host", mirror=args.mirror, apt_options=tuple(args.apt_option),
                         refresh=args.refresh, cpus=_cpus_of(args))
        from harness.phases import check_request

        check_request(dataclasses.replace(req, record_trail=True))  # a shell checks no trail
        with procs.SignalGuard(), Session(req, printer) as s:
            if not args.no_load:
                r = s.run(f"insmod {s.ko}")
                if r.status != 0:
                    printer.line(f"harness: insmod failed: {r.stderr.strip()}")
            assert s.live is not None and s.run_dir is not None
            keys = s.live.ssh.keys
            known = ssh.known_hosts(keys, s.live.port, s.run_dir / "known_hosts")
            printer.line(f"shell: {s.module} {'not ' if args.no_load else ''}loaded; the project is at "
                         "/project; exit the shell to power the VM off")
            return procs.interactive(ssh.ssh_argv(keys, s.live.port, known))


def _cmd_watch(args: argparse.Namespace, printer: Printer, out: IO[str]) -> int:
    from harness.phases import RunRequest, prepare
    from harness.run import results_id
    from harness.verdict import report
    from harness.watch import Watcher

    req = RunRequest(kernel=args.kernel, project=args.project, results=args.results, accel=args.accel,
                     build_in="host", transport="ssh", mirror=args.mirror, apt_options=tuple(args.apt_option),
                     refresh=args.refresh, timeouts=Timeouts(guest=args.timeout), cpus=_cpus_of(args))

    def show(r: "RunResult") -> None:
        for sp in r.splats[:3]:
            for line in report.splat_lines(sp):
                printer.line(line)
        printer.verdict(r.verdict, r.reason)
        if r.read_first:
            printer.line(f"read first: {args.results}/{results_id(r.kernel)}/{r.read_first}")

    from harness.phases import check_request

    check_request(req)
    with tempfile.TemporaryDirectory(prefix="kmod-harness-watch-") as tmp, procs.SignalGuard():
        prep = prepare(req, printer, Path(tmp), [])
        w = Watcher(req, prep, printer, max_age=args.spare_max_age, on_result=show)
        if args.runs is not None and args.runs < 1:
            raise UsageError(f"--runs {args.runs}: give at least 1")
        return w.loop(runs=args.runs, now=args.now)


def _cmd_init(args: argparse.Namespace, printer: Printer, out: IO[str]) -> int:
    from harness import scaffold

    path, text = scaffold.init(args.dir, force=args.force)
    out.write(text)
    printer.line(f"wrote {path}; next: harness run --project {args.dir} --record-trail")
    return 0


def _cmd_kernels(args: argparse.Namespace, printer: Printer, out: IO[str]) -> int:
    from harness import kernels_cmd as manage

    return manage.main(args, printer, out)


_HANDLERS: dict[Optional[str], Callable[[argparse.Namespace, Printer, IO[str]], int]] = {
    "run": _cmd_run, "matrix": _cmd_matrix, "shell": _cmd_shell, "init": _cmd_init, "kernels": _cmd_kernels,
    "watch": _cmd_watch,
}


# ---- harness report, and --repeat for run and matrix (the matrix across machines: fanout_cli.py) ------------


def _cmd_report(args: argparse.Namespace, printer: Printer, out: IO[str]) -> int:
    from harness import report_cmd

    return report_cmd.main(args, printer, out)


_HANDLERS["report"] = _cmd_report
_HANDLERS["faults"] = faults_cli.main  # harness faults: its options and handler in faults_cli.py
_HANDLERS["fuzz"] = fuzz_cli.main  # harness fuzz: harness/fuzz/cli.py

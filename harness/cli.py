"""Command line: ``main(argv) -> int``. Exit codes come from ``model.EXIT_CODES`` only."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import IO, Optional, Sequence

from harness import buildroot, kbuild, kernels, ktree, matrix, procs, report
from harness.errors import HarnessError, UsageError
from harness.model import EXIT_CODES, Verdict
from harness.progress import Printer
from harness.run import RunRequest, Timeouts, resolve_spec, run

EPILOG = """\
exit codes:
  0  pass
  1  the module under test failed (build error, trail mismatch, client error)
  2  usage or configuration error
  3  infrastructure error (download, root, QEMU missing, boot)
  4  kernel crash or splat (Oops, BUG, WARNING, panic)
  5  timeout
  130 interrupted (Ctrl-C, SIGTERM)

kernel specs:
""" + "\n".join("  " + ln for ln in kernels.SPEC_FORMS.splitlines()) + """
  suites: """ + ", ".join(kernels.SUITES) + """
  debian-src flavours: """ + ", ".join(kernels.flavours()) + """

environment:
  HARNESS_MIRROR, HARNESS_SECURITY_MIRROR   Debian mirrors (default deb.debian.org)
  HARNESS_APT_OPTIONS   extra apt options, e.g. Acquire::Check-Valid-Until=false
  HARNESS_CACHE         cache directory (default $XDG_CACHE_HOME/kmod-harness)
"""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # exit 2 through main, not sys.exit deep inside
        raise UsageError(f"{self.prog}: {message}", hint=f"see `{self.prog} --help`")


def _positive(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if v <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be more than 0 seconds")
    return v


def add_kernel_opts(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("kernel and archive")
    g.add_argument("--kernel", "-k", default=kernels.DEFAULT_KERNEL, metavar="SPEC",
                   help=f"kernel to test (default {kernels.DEFAULT_KERNEL}: bookworm's current 6.1)")
    g.add_argument("--mirror", metavar="URL", help="Debian mirror (default $HARNESS_MIRROR or deb.debian.org)")
    g.add_argument("--apt-option", action="append", default=[], metavar="KEY=VALUE",
                   help="extra apt option, repeatable (e.g. Acquire::Check-Valid-Until=false for an expired sid)")
    g.add_argument("--refresh", action="store_true",
                   help="download the package index now, even if the cached one is younger than "
                   "HARNESS_INDEX_TTL seconds (default 3600)")


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="harness", description="Test a Linux kernel module in throwaway QEMU VMs (virtme-ng).",
                epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    r = sub.add_parser("run", help="build, boot, load, exercise and check the module on one kernel",
                       description="Build the module against KERNEL's own headers and compiler, boot KERNEL in "
                       "a throwaway VM, insmod, run the guest steps, rmmod, check the printk trail.",
                       epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_kernel_opts(r)
    r.add_argument("--accel", choices=("auto", "kvm", "tcg"), default="auto",
                   help="auto uses KVM only when /dev/kvm is read-writable and the CPU has vmx/svm")
    r.add_argument("--build-in", choices=("auto", "host", "guest"), default="auto",
                   help="where to build the module: auto = host under TCG, guest under KVM")
    r.add_argument("--timeout", type=_positive, default=Timeouts.guest, metavar="S",
                   help=f"limit for boot + guest steps + shutdown (default {Timeouts.guest:.0f})")
    r.add_argument("--results", type=Path, default=Path("results"), metavar="DIR",
                   help="where result.json, console.log and junit.xml go (default ./results)")
    r.add_argument("--project", type=Path, default=Path("."), metavar="DIR",
                   help="directory with harness.toml (or [tool.harness] in pyproject.toml) describing the module, "
                   "or a .toml file with that description (default .)")
    r.add_argument("--transport", choices=("exec", "ssh"), default="exec",
                   help="start the guest runner through virtme-ng's exec channel (default) or over SSH "
                   "(paramiko; sshd in the guest on a free 127.0.0.1 port)")
    r.add_argument("--append", action="append", default=[], metavar="PARAM",
                   help="extra kernel parameter, repeatable (e.g. --append kasan.fault=panic)")
    r.add_argument("--console-level", type=int, choices=range(0, 9), default=7, metavar="N",
                   help="records below level N go to the serial console (default 7, virtme-ng's; lower it "
                   "for modules that log per message: under TCG console output is slow, but a guest "
                   "that dies may then take its last records with it). /dev/kmsg records, and so "
                   "result.json, always hold every level")
    r.add_argument("-v", "--verbose", action="store_true", help="show the kernel console as it boots")

    m = sub.add_parser("matrix", help="harness run for every kernel of the matrix, in parallel",
                       description="Run the job on each kernel of vm/kernels.toml (or --kernels), several at "
                       "a time. Writes DIR/matrix.json, DIR/summary.md, DIR/junit.xml and DIR/<kernel>/*. "
                       "Exit code: the worst verdict's.",
                       epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    m.add_argument("--kernels", metavar="SPEC,...", help="comma-separated specs (default: all of --matrix-file)")
    m.add_argument("--matrix-file", type=Path, default=None, metavar="FILE",
                   help="kernel list (default vm/kernels.toml)")
    m.add_argument("-j", "--jobs", type=int, default=None, metavar="N",
                   help="kernels at a time (default: from CPU count and free memory)")
    m.add_argument("--shard", metavar="I/N", help="run only the I-th of N slices of the kernel list (CI)")
    m.add_argument("--list", action="store_true", help="print the selected kernels as JSON and exit")
    m.add_argument("--accel", choices=("auto", "kvm", "tcg"), default="auto")
    m.add_argument("--timeout", type=_positive, default=Timeouts.guest, metavar="S",
                   help="limit for boot + guest steps + shutdown, per kernel")
    m.add_argument("--results", type=Path, default=Path("results"), metavar="DIR")
    m.add_argument("--project", type=Path, default=Path("."), metavar="DIR")
    m.add_argument("--mirror", metavar="URL")
    m.add_argument("--apt-option", action="append", default=[], metavar="KEY=VALUE")

    sh = sub.add_parser("shell", help="an interactive shell in a fresh VM with the module built and loaded",
                        description="Boot KERNEL with sshd, build and insmod the module, and open a shell over "
                        "SSH. The project directory is at /project, the built module at /harness/build. "
                        "Leaving the shell shuts the VM down.")
    add_kernel_opts(sh)
    sh.add_argument("--accel", choices=("auto", "kvm", "tcg"), default="auto")
    sh.add_argument("--project", type=Path, default=Path("."), metavar="DIR")
    sh.add_argument("--no-load", action="store_true", help="do not insmod the module")

    k = sub.add_parser("kernels", help="list, fetch or prune cached kernel roots")
    ksub = k.add_subparsers(dest="kcommand", metavar="ACTION", parser_class=_Parser)
    ksub.add_parser("list", help="cached roots and the known suites")
    kf = ksub.add_parser("fetch", help="resolve a kernel, build it (debian-src:) and make its root now")
    add_kernel_opts(kf)
    kr = ksub.add_parser("resolve", help="print the concrete kernel a spec names now (no root is made)")
    add_kernel_opts(kr)
    kr.add_argument("--matrix-options", action="store_true",
                    help="also use the apt options vm/kernels.toml gives this kernel")
    kp = ksub.add_parser("prune", help="delete every cached root and installed tree modules "
                                       "(and with --kernels, every built kernel)")
    kp.add_argument("--kernels", action="store_true",
                    help="also delete kernels built from source (debian-src:), which take long to rebuild")
    kp.add_argument("--stale", action="store_true",
                    help="delete only roots this harness will not use again: another root format, "
                         "broken or unfinished entries, and for each kernel every root but the one used last "
                         "(do not run it while harness runs are booting)")
    kp.add_argument("--dry-run", action="store_true", help="say what would be deleted, delete nothing")
    return p


def main(argv: Optional[Sequence[str]] = None, out: Optional[IO[str]] = None) -> int:
    out = out or sys.stdout
    printer = Printer(sys.stderr)
    try:
        args = build_parser().parse_args(argv)
        if args.command == "run":
            printer.verbose = args.verbose
            return _cmd_run(args, printer, out)
        if args.command == "matrix":
            return _cmd_matrix(args, printer, out)
        if args.command == "shell":
            return _cmd_shell(args, printer)
        if args.command == "kernels":
            return _cmd_kernels(args, printer, out)
        build_parser().print_help(out)
        return EXIT_CODES[Verdict.ERROR]
    except HarnessError as e:
        printer.line(f"harness: error: {e}")
        return e.verdict.exit_code
    except KeyboardInterrupt:
        printer.line("harness: interrupted")
        return EXIT_CODES[Verdict.INTERRUPTED]
    except BrokenPipeError:  # `harness kernels list | head`: the reader has what it wanted
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


def _cmd_run(args: argparse.Namespace, printer: Printer, out: IO[str]) -> int:
    req = RunRequest(kernel=args.kernel, project=args.project, results=args.results, accel=args.accel,
                     build_in=args.build_in, timeouts=Timeouts(guest=args.timeout), mirror=args.mirror,
                     apt_options=tuple(args.apt_option), append=tuple(args.append), transport=args.transport,
                     refresh=args.refresh, console_level=args.console_level)
    result = run(req, printer)
    report.write_atomic(args.results / "junit.xml", report.junit_xml([result]))
    for line in report.summary_lines(result):
        printer.line(line)
    printer.verdict(result.verdict, result.reason)
    printer.line(f"report: {args.results}")
    return result.verdict.exit_code


def _cmd_matrix(args: argparse.Namespace, printer: Printer, out: IO[str]) -> int:
    entries = matrix.load_matrix(args.matrix_file or matrix.DEFAULT_MATRIX)
    entries = matrix.select(entries, [s for s in (args.kernels or "").split(",") if s.strip()])
    if args.shard:
        entries = matrix.shard(entries, *matrix.parse_shard(args.shard))
    if args.list:
        out.write(json.dumps([e.spec for e in entries]) + "\n")
        return 0
    if args.jobs is not None and args.jobs < 1:
        raise UsageError(f"-j {args.jobs}: give at least 1")
    jobs = args.jobs or matrix.default_jobs()
    base = RunRequest(project=args.project, results=args.results, accel=args.accel, build_in="auto",
                      timeouts=Timeouts(guest=args.timeout), mirror=args.mirror,
                      apt_options=tuple(args.apt_option), cpus=1)
    t0 = time.monotonic()
    results = matrix.run_matrix(entries, base, jobs, printer)
    wall = time.monotonic() - t0
    matrix.write_reports(results, args.results, wall)
    out.write(report.summary_markdown(results, wall))
    printer.line(f"report: {args.results}/summary.md, matrix.json, junit.xml")
    return matrix.matrix_exit_code(results)


def _cmd_shell(args: argparse.Namespace, printer: Printer) -> int:
    import subprocess

    from harness import ssh
    from harness.session import Session

    with tempfile.TemporaryDirectory(prefix="kmod-harness-shell-") as results:
        req = RunRequest(kernel=args.kernel, project=args.project, results=Path(results), accel=args.accel,
                         build_in="host", mirror=args.mirror, apt_options=tuple(args.apt_option))
        with procs.SignalGuard(), Session(req, printer) as s:
            if not args.no_load:
                r = s.run(f"insmod {s.ko}")
                if r.status != 0:
                    printer.line(f"harness: insmod failed: {r.stderr.strip()}")
            assert s.guest is not None and s.run_dir is not None
            known = ssh.known_hosts(s.guest.keys, s.guest.port, s.run_dir / "known_hosts")
            printer.line(f"shell: {s.module} {'not ' if args.no_load else ''}loaded; the project is at "
                         "/project; exit the shell to power the VM off")
            return subprocess.call(ssh.ssh_argv(s.guest.keys, s.guest.port, known))


def _cmd_kernels(args: argparse.Namespace, printer: Printer, out: IO[str]) -> int:
    cache = buildroot.cache_dir()
    roots, built = cache / "roots", cache / "kernels"
    if args.kcommand == "list":
        out.write("known suites: " + ", ".join(kernels.SUITES) + "\n")
        out.write("debian-src flavours (vm/configs): " + ", ".join(kernels.flavours()) + "\n")
        for d in sorted(roots.glob("*")) if roots.is_dir() else []:
            if d.is_dir() and not d.name.startswith("."):
                out.write(f"root\t{d.name}\t{d}\n")
        for d in sorted(built.glob("*")) if built.is_dir() else []:
            if d.is_dir() and not d.name.startswith("."):
                out.write(f"kernel\t{d.name}\t{d / ktree.TREE_DIR}\n")
        return 0
    if args.kcommand in ("fetch", "resolve"):
        spec = kernels.parse_spec(args.kernel)
        extra = tuple(args.apt_option)
        if getattr(args, "matrix_options", False):
            extra += matrix.select(matrix.load_matrix(), [args.kernel])[0].apt_options
        mirror = kernels.Mirror.from_env(args.mirror, extra)
        kernel, src, index = resolve_spec(spec, mirror, cache, 0)
        if args.kcommand == "resolve":  # a cache key: changes exactly when the kernel does
            out.write((f"debian-src-{src.key}" if src is not None else
                       f"{kernel.kernel_id}-{kernel.package_version}" if spec.source == "debian" else
                       f"{kernel.kernel_id}-{ktree.tree_fingerprint(kernel.tree)}") + "\n")
            return 0
        if src is not None:
            assert index is not None
            with printer.phase("kernel", f"{spec}: {src.package} {src.version}"):
                kernel = ktree.ensure_built(src, index, cache, printer, Timeouts.kernel)
        assert kernel is not None
        root = buildroot.ensure_root(kernel, mirror, printer, Timeouts.root)
        if kernel.tree is not None:
            kbuild.tree_modules(kernel.tree, cache, printer)
        out.write(f"{spec}\t{kernel.release}\t{kernel.package_version}\t{root.path}"
                  + (f"\t{kernel.tree}" if kernel.tree else "") + "\n")
        return 0
    if args.kcommand == "prune" and args.stale:
        if args.kernels:
            raise UsageError("--stale and --kernels do not go together",
                             hint="--stale keeps every built kernel; --kernels deletes them all")
        freed = 0
        for d, why in buildroot.stale_roots(roots):
            size = buildroot.disk_usage(d)
            if not args.dry_run:
                buildroot.remove_root(d)
            freed += size
            out.write(f"{'would remove' if args.dry_run else 'removed'} {d} ({size / 2**20:.0f} MiB): {why}\n")
        out.write(f"{'would free' if args.dry_run else 'freed'} {freed / 2**30:.1f} GiB\n")
        return 0
    if args.kcommand == "prune":
        mods = cache / kbuild.TREE_MODULES
        for d in (roots, mods, built) if args.kernels else (roots, mods):
            if args.dry_run:
                out.write(f"would remove {d}\n")
                continue
            if d.is_dir():
                shutil.rmtree(d)
            out.write(f"removed {d}\n")
        return 0
    raise UsageError("harness kernels: give an action: list, fetch or prune")


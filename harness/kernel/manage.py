"""``harness kernels``: list, resolve, fetch and prune what the cache holds."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import IO, Any, Callable, Optional

from harness import resources
from harness.cache import cache_dir, disk_usage, usable_cache
from harness.errors import UsageError
from harness.events import Printer, phase
from harness.kernel import apt, roots, spec, trees
from harness.locks import remove_tree
from harness.model import Phase, ResolvedKernel, Timeouts


def add_parser(sub: Any, add_kernel_opts: Callable[[argparse.ArgumentParser], None]) -> None:
    k = sub.add_parser("kernels", help="list, resolve, fetch or prune cached kernels and roots",
                       description="Manage the cache ($HARNESS_CACHE, default ~/.cache/kmod-harness): the Debian "
                       "roots made for each kernel, and kernels built from source.")
    ksub = k.add_subparsers(dest="kcommand", metavar="ACTION", parser_class=type(k))
    ksub.add_parser("list", help="cached roots and built kernels, and the known suites")
    kf = ksub.add_parser("fetch", help="resolve a kernel, build it (debian-src:) and make its root now; prints "
                         "spec, release, package version, root (and kernel tree), tab-separated")
    kr = ksub.add_parser("resolve", help="print a cache key for the concrete kernel a spec names now (no root is made)")
    for p in (kf, kr):
        add_kernel_opts(p)
        p.add_argument("--matrix-options", action="store_true",
                       help="also use the apt options the matrix file gives this kernel")
        p.add_argument("--matrix-file", type=Path, metavar="FILE",
                       help="the matrix file for --matrix-options (default: the one that comes with kmod-harness)")
    kp = ksub.add_parser("prune", help="delete every cached root and installed tree modules "
                                       "(and with --kernels, every built kernel)")
    kp.add_argument("--kernels", action="store_true",
                    help="also delete kernels built from source (debian-src:), which take long to rebuild")
    kp.add_argument("--stale", action="store_true",
                    help="delete only roots this harness will not use again: another root format, "
                         "broken or unfinished entries, and for each kernel every root but the one used last "
                         "(do not run it while harness runs are booting)")
    kp.add_argument("--dry-run", action="store_true", help="say what would be deleted, delete nothing")


def main(args: argparse.Namespace, printer: Printer, out: IO[str]) -> int:
    if args.kcommand == "list":
        return _list(out)
    if args.kcommand in ("fetch", "resolve"):
        return _fetch_or_resolve(args, printer, out)
    if args.kcommand == "prune":
        return _prune_stale(args, out) if args.stale else _prune(args, out)
    raise UsageError("harness kernels: give an action: list, resolve, fetch or prune",
                     hint="see `harness kernels --help`")


def _list(out: IO[str]) -> int:
    cache = cache_dir()
    out.write("known suites: " + ", ".join(spec.SUITES) + "\n")
    out.write("debian-src flavours (vm/configs): " + ", ".join(resources.flavours()) + "\n")
    for kind, d, sub in (("root", cache / "roots", ""), ("kernel", cache / "kernels", trees.TREE_DIR)):
        for e in sorted(d.glob("*")) if d.is_dir() else []:
            if e.is_dir() and not e.name.startswith("."):
                out.write(f"{kind}\t{e.name}\t{e / sub if sub else e}\n")
    return 0


def _fetch_or_resolve(args: argparse.Namespace, printer: Printer, out: IO[str]) -> int:
    from harness.phases import resolve_spec

    cache = usable_cache()
    kspec = spec.parse_spec(args.kernel)
    extra = tuple(args.apt_option)
    if args.matrix_options:
        from harness.matrix import load_matrix, select
        extra += select(load_matrix(args.matrix_file), [args.kernel])[0].apt_options
    mirror = apt.Mirror.from_env(args.mirror, extra)
    kernel, src, index = resolve_spec(kspec, mirror, cache, 0 if args.refresh else apt.index_ttl())
    if args.kcommand == "resolve":
        out.write(cache_key(kernel, src) + "\n")
        return 0
    done: list[Phase] = []
    if src is not None:
        assert index is not None
        with phase(printer, done, "kernel", f"{kspec}: {src.package} {src.version}"):
            kernel = trees.ensure_built(src, index, cache, printer, Timeouts.kernel)
    assert kernel is not None
    with phase(printer, done, "root", f"Debian {kspec.suite} root for {kernel.release}"):
        root = roots.ensure_root(kernel, mirror, printer, Timeouts.root, cache)
        if kernel.tree is not None:
            trees.tree_modules(kernel.tree, cache, printer, Timeouts.modules_install)
    out.write(f"{kspec}\t{kernel.release}\t{kernel.package_version}\t{root.path}"
              + (f"\t{kernel.tree}" if kernel.tree else "") + "\n")
    return 0


def cache_key(kernel: Optional[ResolvedKernel], src: Optional[trees.SourceKernel]) -> str:
    """Names exactly what a spec resolved to: changes when, and only when, the kernel does (CI caches)."""
    if src is not None:
        return f"debian-src-{src.key}"
    assert kernel is not None
    if kernel.tree is not None:
        return f"{kernel.kernel_id}-{trees.tree_fingerprint(kernel.tree)}"
    return f"{kernel.kernel_id}-{kernel.package_version}"


def _prune_stale(args: argparse.Namespace, out: IO[str]) -> int:
    if args.kernels:
        raise UsageError("--stale and --kernels do not go together",
                         hint="--stale keeps every built kernel; --kernels deletes them all")
    freed = 0
    for d, why in roots.stale_roots(cache_dir() / "roots"):
        size = disk_usage(d)
        left = [] if args.dry_run else roots.remove_root(d)
        freed += size
        out.write(f"{'would remove' if args.dry_run else 'removed'} {d} ({size / 2**20:.0f} MiB): {why}\n")
        out.writelines(f"  left: {x}\n" for x in left[:5])
    out.write(f"{'would free' if args.dry_run else 'freed'} {freed / 2**30:.1f} GiB\n")
    return 0


def _prune(args: argparse.Namespace, out: IO[str]) -> int:
    cache = cache_dir()
    dirs = [cache / "roots", cache / trees.TREE_MODULES] + ([cache / "kernels"] if args.kernels else [])
    for d in dirs:
        if args.dry_run:
            out.write(f"would remove {d}\n")
            continue
        left = remove_tree(d) if d.is_dir() else []
        out.write(f"removed {d}\n")
        out.writelines(f"  left: {x}\n" for x in left[:5])
    return 0

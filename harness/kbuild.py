"""Build the module against a kernel's own headers with that kernel's own compiler.

On the host the build runs inside the kernel's root with bubblewrap: the root
is bound read-only at /, only a copy of the module source is writable, there
is no network, and the headers sit at the absolute paths their Makefiles name.
The same command line runs in the guest for ``--build-in guest``.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from harness import ktree, procs
from harness.buildroot import Root
from harness.kernels import require_tool
from harness.progress import Printer

_WARNING = re.compile(r"(\bwarning: |^WARNING: )")
_IGNORE = ("Skipping BTF generation",)  # headers-only builds have no vmlinux for BTF: not the module's fault
BUILD_PRODUCT_RE = re.compile(r"(\.o|\.ko|\.mod|\.mod\.c|\.a|^Module\.symvers|^modules\.order|^\..*\.cmd)$")
BUILD_PRODUCTS = shutil.ignore_patterns("*.o", "*.ko", "*.mod", "*.mod.c", ".*.cmd", "Module.symvers",
                                        "modules.order", ".tmp_versions", "*.a")


@dataclass
class BuildResult:
    ok: bool
    ko: Optional[Path]
    log: str
    warnings: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    cached: bool = False


def make_argv(root: Root, build_dir: str) -> list[str]:
    return ["make", "-C", root.headers, f"M={build_dir}", "W=1", f"CC={root.kernel.compiler}", "modules"]


def prepare_source(source: Path, dest: Path) -> None:
    """Copy the module source without build products (the user's tree is never written)."""
    shutil.copytree(source, dest, ignore=BUILD_PRODUCTS, symlinks=True)


def source_key(source: Path, root: Root) -> str:
    """What a built module depends on: every source file, the kernel and its compiler, the build command."""
    h = hashlib.sha256()
    for p in sorted(source.rglob("*")):
        if p.is_file() and not BUILD_PRODUCT_RE.search(p.name):
            h.update(str(p.relative_to(source)).encode() + b"\0" + p.read_bytes() + b"\0")
    tree = root.kernel.tree
    h.update(json.dumps([root.path.name, root.kernel.release, root.kernel.package_version, root.kernel.compiler,
                         make_argv(root, "/tmp/build"),
                         ktree.tree_fingerprint(tree) if tree is not None else None]).encode())
    return h.hexdigest()[:16]


def build_cached(root: Root, source: Path, build: Path, module: str, timeout: float, printer: Printer,
                 cache: Path) -> BuildResult:
    """Build, or reuse the .ko built from identical sources for the same kernel and root.

    Only successful builds are kept (with their log and warnings); entries are written
    to a temporary directory and renamed into place, so a half-written one never exists.
    """
    entry = cache / "builds" / f"{module}-{source_key(source, root)}"
    ko = entry / f"{module}.ko"
    if ko.is_file() and (entry / "build.log").is_file():
        shutil.copy(ko, build / f"{module}.ko")
        log = (entry / "build.log").read_text()
        printer.detail(f"reusing {ko} (sources unchanged)")
        res = summarize(True, log, build, module)
        res.cached = True
        return res
    res = build_on_host(root, build, module, timeout, printer)
    if res.ok and res.ko is not None:
        entry.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{entry.name}-", dir=entry.parent))
        try:
            shutil.copy(res.ko, tmp / ko.name)
            (tmp / "build.log").write_text(res.log)
            os.rename(tmp, entry)
        except OSError:  # another run stored the same entry first: fine
            shutil.rmtree(tmp, ignore_errors=True)
    return res


def build_on_host(root: Root, build: Path, module: str, timeout: float, printer: Printer) -> BuildResult:
    """Build in a sandbox: the root's toolchain and headers, or, for a kernel tree, the host's
    toolchain with the tree; either way read-only but for the build directory, no network."""
    bwrap = require_tool("bwrap", "bubblewrap")
    if root.kernel.tree is None:
        inside, tmp = "/tmp/build", "/tmp"
        system = ["--ro-bind", str(root.path), "/", "--tmpfs", "/tmp"]
    else:
        # The host's / read-only, so the tree is where it is (even under /tmp); the build
        # directory at its own path and the only writable place (TMPDIR too).
        inside = tmp = str(build)
        system = ["--ro-bind", "/", "/"]
    argv = [
        bwrap, *system, "--proc", "/proc", "--dev", "/dev",
        "--bind", str(build), inside, "--chdir", inside,
        "--unshare-all", "--die-with-parent", "--clearenv",
        "--setenv", "PATH", "/usr/sbin:/usr/bin:/sbin:/bin", "--setenv", "HOME", tmp, "--setenv", "TMPDIR", tmp,
        "--setenv", "LC_ALL", "C",
        *make_argv(root, inside),
    ]
    res = procs.run(argv, timeout=timeout, what="module build", on_line=lambda _n, ln: printer.status(ln))
    return summarize(res.returncode == 0, res.output, build, module)


def summarize(ok: bool, log: str, build: Path, module: str) -> BuildResult:
    lines = log.splitlines()
    warnings = [ln for ln in lines if _WARNING.search(ln) and not ln.startswith(_IGNORE)]
    errors = [ln for ln in lines if re.search(r"\berror\b|\bError \d", ln)]
    ko = build / f"{module}.ko"
    if ok and not ko.is_file():
        ok = False
        errors.append(f"the build succeeded but produced no {module}.ko (is obj-m += {module}.o in the Kbuild file?)")
    return BuildResult(ok=ok, ko=ko if ok else None, log=log, warnings=warnings, errors=errors)

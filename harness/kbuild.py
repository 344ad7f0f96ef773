"""Build the module against a kernel's own headers with that kernel's own compiler.

On the host the build runs inside the kernel's root with bubblewrap: the root
is bound read-only at /, only a copy of the module source is writable, there
is no network, and the headers sit at the absolute paths their Makefiles name.
The same command line runs in the guest for ``--build-in guest``.
"""

from __future__ import annotations

import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from harness import procs
from harness.buildroot import Root
from harness.kernels import require_tool
from harness.progress import Printer

_WARNING = re.compile(r"(\bwarning: |^WARNING: )")
_IGNORE = ("Skipping BTF generation",)  # headers-only builds have no vmlinux for BTF: not the module's fault
BUILD_PRODUCTS = shutil.ignore_patterns("*.o", "*.ko", "*.mod", "*.mod.c", ".*.cmd", "Module.symvers",
                                        "modules.order", ".tmp_versions", "*.a")


@dataclass
class BuildResult:
    ok: bool
    ko: Optional[Path]
    log: str
    warnings: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


def make_argv(root: Root, build_dir: str) -> list[str]:
    return ["make", "-C", root.headers, f"M={build_dir}", "W=1", f"CC={root.kernel.compiler}", "modules"]


def prepare_source(source: Path, dest: Path) -> None:
    """Copy the module source without build products (the user's tree is never written)."""
    shutil.copytree(source, dest, ignore=BUILD_PRODUCTS, symlinks=True)


def build_on_host(root: Root, build: Path, module: str, timeout: float, printer: Printer) -> BuildResult:
    bwrap = require_tool("bwrap", "bubblewrap")
    inside = "/tmp/build"
    argv = [
        bwrap, "--ro-bind", str(root.path), "/", "--proc", "/proc", "--dev", "/dev",
        "--tmpfs", "/tmp", "--bind", str(build), inside, "--chdir", inside,
        "--unshare-all", "--die-with-parent", "--clearenv",
        "--setenv", "PATH", "/usr/sbin:/usr/bin:/sbin:/bin", "--setenv", "HOME", "/tmp",
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

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
from harness.errors import InfraError
from harness.kernels import require_tool
from harness.locks import locked
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
    argv = sandbox_argv(bwrap, system, build, inside, tmp) + make_argv(root, inside)
    res = procs.run(argv, timeout=timeout, what="module build", on_line=lambda _n, ln: printer.status(ln))
    return summarize(res.returncode == 0, res.output, build, module)


def sandbox_argv(bwrap: str, system: list[str], writable: Path, inside: str, tmp: str) -> list[str]:
    """bubblewrap around a build: ``system`` as the file system, ``writable`` bound at
    ``inside`` (the working directory) and nothing else writable, no network, a clean
    environment."""
    return [
        bwrap, *system, "--proc", "/proc", "--dev", "/dev",
        "--bind", str(writable), inside, "--chdir", inside,
        "--unshare-all", "--die-with-parent", "--clearenv",
        "--setenv", "PATH", "/usr/sbin:/usr/bin:/sbin:/bin", "--setenv", "HOME", tmp, "--setenv", "TMPDIR", tmp,
        "--setenv", "LC_ALL", "C",
    ]


def summarize(ok: bool, log: str, build: Path, module: str) -> BuildResult:
    lines = log.splitlines()
    warnings = [ln for ln in lines if _WARNING.search(ln) and not ln.startswith(_IGNORE)]
    errors = [ln for ln in lines if re.search(r"\berror\b|\bError \d", ln)]
    ko = build / f"{module}.ko"
    if ok and not ko.is_file():
        ok = False
        errors.append(f"the build succeeded but produced no {module}.ko (is obj-m += {module}.o in the Kbuild file?)")
    return BuildResult(ok=ok, ko=ko if ok else None, log=log, warnings=warnings, errors=errors)


TREE_MODULES = "tree-modules"  # under the cache: a kernel tree's modules, installed


def tree_modules(tree: Path, cache: Path, printer: Printer, timeout: float = 600) -> Path:
    """The kernel tree's own modules, installed by its ``make modules_install`` into the
    cache (keyed by the tree's fingerprint): the directory the guest mounts at /lib/modules,
    so modprobe in the guest finds what the tree built as modules, and modules.builtin.

    The tree is only read (the host read-only in bubblewrap); a failed install leaves nothing.
    """
    base = cache / TREE_MODULES
    base.mkdir(parents=True, exist_ok=True)
    key = ktree.tree_fingerprint(tree)
    dest, release = base / key, ktree.tree_release(tree)
    done = dest / "lib/modules" / release / "modules.dep"
    with locked(base / f"{key}.lock"):
        if done.is_file():
            return dest / "lib/modules"
        shutil.rmtree(dest, ignore_errors=True)
        bwrap = require_tool("bwrap", "bubblewrap")
        require_tool("depmod", "kmod")
        tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{key}-", dir=base))
        try:
            argv = sandbox_argv(bwrap, ["--ro-bind", "/", "/"], tmp, str(tmp), str(tmp)) + [
                "make", "-C", str(tree), "-s", "modules_install", f"INSTALL_MOD_PATH={tmp}", "INSTALL_MOD_STRIP=1"]
            res = procs.run(argv, timeout=timeout, what="make modules_install",
                            on_line=lambda _n, ln: printer.status(ln))
            if res.returncode != 0 or not (tmp / done.relative_to(dest)).is_file():
                tail = "\n".join(res.output.splitlines()[-15:])
                raise InfraError(f"installing the modules of {tree} failed (make modules_install, exit "
                                 f"{res.returncode}):\n{tail}",
                                 hint="the tree must be fully built (`make modules`); it is only read, never written")
            os.rename(tmp, dest)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    count = sum(1 for _ in (dest / "lib/modules" / release).rglob("*.ko*"))
    printer.detail(f"{tree}'s modules ({count}) installed in {dest}")
    return dest / "lib/modules"

"""Kernels that come as a build tree on the host rather than as Debian packages.

What every tree kernel shares, whichever source it comes from (``local:``, harness/kernel/local.py;
``debian-src:``, debian_src.py): it is checked before use, it boots from its architecture's image
in the tree with the suite's base root (no kernel packages in it), and modules are built against
the tree itself with the host's gcc. ``TreeKernels`` answers those parts of the KernelSource
interface (harness/kernel/source.py). Building a tree (``configure``, ``compile_tree``, ``prune``)
and installing its modules (``tree_modules``) are here too.
"""

from __future__ import annotations

import abc
import hashlib
import os
import re
import shutil
import time
from pathlib import Path
from typing import Callable, Optional, TextIO

from harness import arches, procs
from harness.arches import Arch
from harness.errors import InfraError, PhaseTimeout, UsageError
from harness.events import Note, Progress, Sink
from harness.kernel.apt import Mirror
from harness.kernel.sandbox import sandbox_argv
from harness.kernel.source import RootNeed
from harness.locks import atomic_dir, locked
from harness.model import KernelSpec, ResolvedKernel
from harness.virtme import vng_env

HOST_COMPILER = "gcc"
# Host packages a kernel build needs besides gcc and make (Makefile: KERNEL_BUILD_PACKAGES).
BUILD_TOOLS = {"flex": "flex", "bison": "bison", "bc": "bc", "cpio": "cpio", "xz": "xz-utils"}
BUILD_HEADERS = {"/usr/include/libelf.h": "libelf-dev", "/usr/include/openssl/ssl.h": "libssl-dev"}

BUILD_TODO = "build it: `make -j$(nproc)` (or `vng --build`)"
# What a tree must hold for the harness to boot it and build modules against it, besides its image.
_TREE_PARTS = {
    ".config": "run `make olddefconfig` (or `vng --kconfig`)",
    "include/config/kernel.release": BUILD_TODO,
    "Module.symvers": "build its modules too: `make modules` (vng --build does)",
    "scripts/mod/modpost": BUILD_TODO,
}


def image(tree: Path, arch: Arch) -> Path:
    """The boot image of a tree built for ``arch`` (x86's bzImage, arm64's and riscv64's Image)."""
    return tree / arch.tree_image


def check_tree(tree: Path, arch: Arch) -> Optional[str]:
    """Why ``tree`` cannot be used as a kernel tree of ``arch``, or None."""
    parts = {".config": _TREE_PARTS[".config"], arch.tree_image: BUILD_TODO, **_TREE_PARTS}
    for part, todo in parts.items():
        if not (tree / part).exists():
            return f"{part} is missing; {todo}"
    config = (tree / ".config").read_text(errors="replace")
    if not re.search(r"^CONFIG_MODULES=y$", config, re.M):
        return "the kernel has no loadable module support (CONFIG_MODULES is not y)"
    return None


def tree_release(tree: Path) -> str:
    return (tree / "include/config/kernel.release").read_text().strip()


def tree_fingerprint(kernel: ResolvedKernel) -> str:
    """Changes whenever the kernel's tree is rebuilt or reconfigured (a module build cache key)."""
    assert kernel.tree is not None
    h = hashlib.sha256()
    for part in (".config", "Module.symvers", "include/config/kernel.release"):
        h.update((kernel.tree / part).read_bytes())
    st = image(kernel.tree, arches.get(kernel.spec.arch)).stat()
    h.update(f"{st.st_size}:{st.st_mtime_ns}".encode())
    return h.hexdigest()[:16]


class TreeKernels(abc.ABC):
    """The parts of a KernelSource (harness/kernel/source.py) every source of kernel trees shares:
    they come for the host's architecture only, boot with their suite's base root, from the tree's
    image, and modules are built against the tree by the host's compiler."""

    name: str
    tree = True

    @abc.abstractmethod
    def parse(self, text: str) -> KernelSpec: ...

    def for_arch(self, text: str, arch: Arch) -> KernelSpec:
        spec = self.parse(text)
        if arch.name != spec.arch:
            raise UsageError(f"--arch {arch.name} with {spec}: {self.name}: kernels come for this host's "
                             f"architecture only ({spec.arch})",
                             hint=f"debian: kernels come for others: use debian:SUITE with --arch {arch.name}")
        return spec

    def origin(self, spec: KernelSpec, mirror: Mirror) -> str:
        return ""

    def root(self, kernel: ResolvedKernel) -> RootNeed:
        return RootNeed(kernel.spec.suite, kernel.packages, base=True)

    def boot_image(self, kernel: ResolvedKernel, root: Path) -> Path:
        assert kernel.tree is not None
        return image(kernel.tree, arches.get(kernel.spec.arch))  # virtme-ng then reads the tree's .config

    def config(self, kernel: ResolvedKernel, root: Path) -> Path:
        assert kernel.tree is not None
        return kernel.tree / ".config"

    def headers(self, kernel: ResolvedKernel) -> str:
        return str(kernel.tree)

    def compiler(self, kernel: ResolvedKernel) -> str:
        return HOST_COMPILER


def fragment_options(text: str) -> dict[str, str]:
    """``CONFIG_X=v`` and ``# CONFIG_X is not set`` lines of a fragment -> {CONFIG_X: v or "n"}."""
    opts: dict[str, str] = {}
    for line in text.splitlines():
        line = line.strip()
        if m := re.match(r"^(CONFIG_[A-Za-z0-9_]+)=(.*)$", line):
            opts[m.group(1)] = m.group(2)
        elif m := re.match(r"^# (CONFIG_[A-Za-z0-9_]+) is not set$", line):
            opts[m.group(1)] = "n"
    return opts


def config_mismatches(wanted: dict[str, str], config_text: str) -> dict[str, str]:
    """Options of ``wanted`` the .config does not have as asked: {option: what .config has}."""
    have = fragment_options(config_text)
    return {k: have.get(k, "n") for k, v in wanted.items() if have.get(k, "n") != v}


def check_build_host() -> None:
    for tool, package in {"make": "make", "gcc": "gcc", **BUILD_TOOLS}.items():
        procs.require_tool(tool, package)
    for header, package in BUILD_HEADERS.items():
        if not Path(header).is_file():
            raise InfraError(f"{header} is missing: building a kernel needs it",
                             hint=f"install the package '{package}' (`make setup` does it)")


class BuildSteps:
    """The commands of one kernel build, under one deadline, all logged to one file."""

    def __init__(self, spec: KernelSpec, log_path: Path, log: TextIO, sink: Sink, timeout: float):
        self.spec, self.log_path, self.log, self.sink = spec, log_path, log, sink
        self.timeout = timeout
        self.deadline = time.monotonic() + timeout

    def __call__(self, argv: list[str], what: str, cwd: Path, on_line: Optional[procs.LineSink] = None) -> None:
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise PhaseTimeout(f"building {self.spec} took longer than {self.timeout:.0f}s (before {what})")
        self.log.write(f"# {' '.join(argv)}\n")
        self.log.flush()
        res = procs.run(argv, timeout=left, what=what, log=self.log, cwd=cwd, env=vng_env(),
                        on_line=on_line or (lambda _n, ln: self.sink(Progress(ln))), keep=False)
        if res.returncode != 0:
            raise InfraError(f"{what} failed (exit {res.returncode}) building {self.spec}; log: {self.log_path}\n"
                             + _log_tail(self.log_path), hint=_build_hint(self.log_path))


def compile_tree(vng_path: str, tree: Path, arch: Arch, jobs: Optional[int], step: BuildSteps, sink: Sink) -> None:
    compiled = 0

    def progress(_name: str, line: str) -> None:
        nonlocal compiled
        if line.lstrip().startswith(("CC ", "AS ", "LD ", "AR ")):
            compiled += 1
        sink(Progress(f"{compiled} objects; {line.strip()[:80]}"))

    step([vng_path, "--build", "--verbose"] + (["--jobs", str(jobs)] if jobs else []), "vng --build", tree, progress)
    problem = check_tree(tree, arch)
    if problem:
        raise InfraError(f"vng --build finished but the tree is incomplete: {problem}; log: {step.log_path}")


# Pruning a built tree down to what booting and external module builds read: the
# boot image and vmlinux, .config, Makefiles/Kconfig, include/ and arch/*/include,
# scripts/ and tools/ (modpost, objtool: host programs, kept whole), Module.symvers.
_PRUNE_SUFFIXES = (".o", ".c", ".S", ".rst", ".yaml")
_PRUNE_DIRS = ("Documentation",)
_KEEP_WHOLE = ("scripts", "tools")


def prune(tree: Path, arch: Arch) -> None:
    """Drop what only building the kernel itself needed, its sources and objects: most of the
    tree's size (the manifest records both sizes). It keeps the cache, and CI's, small."""
    for name in _PRUNE_DIRS:
        shutil.rmtree(tree / name, ignore_errors=True)
    for p in tree.glob(".tmp_vmlinux*"):
        p.unlink()
    for dirpath, dirnames, filenames in os.walk(tree):
        d = Path(dirpath)
        rel = d.relative_to(tree).parts
        if rel and rel[0] in _KEEP_WHOLE:
            dirnames.clear()
            continue
        headers_dir = rel[:1] == ("include",) or (rel[:1] == ("arch",) and rel[2:3] == ("include",))
        boot_dir = rel[:1] == ("arch",) and rel[2:3] == ("boot",)  # the image and its intermediates
        for name in filenames:
            if ((boot_dir and d / name != image(tree, arch)) or name.endswith(_PRUNE_SUFFIXES)
                    or (name.endswith(".h") and not headers_dir)):
                (d / name).unlink()


def configure(vng: str, tree: Path, fragment: Path, step: Callable[[list[str], str, Path], None]) -> None:
    """virtme-ng's config plus the fragment; then make sure the fragment won.

    virtme-ng applies its own must-have list after user fragments (it forces DWARF
    debug info, for one), so options it overrode are set again with scripts/config.
    An option Kconfig still refuses (a missing dependency) is an error naming it.
    """
    wanted = fragment_options(fragment.read_text())
    step([vng, "--kconfig", "--config", str(fragment)], "vng --kconfig", tree)
    lost = config_mismatches(wanted, (tree / ".config").read_text())
    if lost:
        args: list[str] = []
        for opt in lost:
            v = wanted[opt]
            name = opt[len("CONFIG_"):]
            args += (["-d", name] if v == "n" else ["-e", name] if v == "y" else
                     ["-m", name] if v == "m" else ["--set-val", name, v])
        step(["./scripts/config", *args], "scripts/config", tree)
        step(["make", "olddefconfig"], "make olddefconfig", tree)
    refused = config_mismatches(wanted, (tree / ".config").read_text())
    if refused:
        raise InfraError(
            f"{fragment.name}: Kconfig refused " + ", ".join(f"{k}={wanted[k]} (got {v})" for k, v in refused.items()),
            hint="an option's dependencies are missing from the fragment, or it does not exist in this kernel",
        )


def first_line(argv: list[str]) -> str:
    res = procs.run(argv, timeout=30, what=argv[0])
    return (res.stdout.splitlines() or ["?"])[0]


def _log_tail(path: Path, n: int = 15) -> str:
    lines = path.read_text(errors="replace").splitlines()
    return "\n".join("  " + ln for ln in lines[-n:])


def _build_hint(log_path: Path) -> str:
    text = log_path.read_text(errors="replace")[-20000:]
    if "No space left on device" in text:
        return "the disk holding the cache is full: a sanitizer kernel tree needs ~5 GB; set HARNESS_CACHE elsewhere"
    if "not found" in text or "No such file" in text:
        return "a build tool is missing: `make setup` installs them"
    return "see the log for the compiler's error"


TREE_MODULES = "tree-modules"  # under the cache: a kernel tree's modules, installed


def tree_modules(kernel: ResolvedKernel, cache: Path, sink: Sink, timeout: float = 600) -> Path:
    """The kernel tree's own modules, installed by its ``make modules_install`` into the
    cache (keyed by the tree's fingerprint): the directory the guest mounts at /lib/modules,
    so modprobe in the guest finds what the tree built as modules, and modules.builtin.

    The tree is only read (the host read-only in bubblewrap); a failed install leaves nothing.
    """
    tree = kernel.tree
    assert tree is not None
    base = cache / TREE_MODULES
    key = tree_fingerprint(kernel)
    dest, release = base / key, tree_release(tree)
    done = Path("lib/modules") / release / "modules.dep"
    with locked(base / f"{key}.lock"):
        if (dest / done).is_file():
            return dest / "lib/modules"
        shutil.rmtree(dest, ignore_errors=True)
        bwrap = procs.require_tool("bwrap", "bubblewrap")
        procs.require_tool("depmod", "kmod")
        with atomic_dir(dest) as tmp:
            argv = sandbox_argv(bwrap, ["--ro-bind", "/", "/"], tmp, str(tmp), str(tmp)) + [
                "make", "-C", str(tree), "-s", "modules_install", f"INSTALL_MOD_PATH={tmp}", "INSTALL_MOD_STRIP=1"]
            res = procs.run(argv, timeout=timeout, what="make modules_install",
                            on_line=lambda _n, ln: sink(Progress(ln)))
            if res.returncode != 0 or not (tmp / done).is_file():
                tail = "\n".join(res.output.splitlines()[-15:])
                raise InfraError(f"installing the modules of {tree} failed (make modules_install, exit "
                                 f"{res.returncode}):\n{tail}",
                                 hint="the tree must be fully built (`make modules`); it is only read, never written")
    count = sum(1 for _ in (dest / "lib/modules" / release).rglob("*.ko*"))
    sink(Note(f"{tree}'s modules ({count}) installed in {dest}", verbose=True))
    return dest / "lib/modules"

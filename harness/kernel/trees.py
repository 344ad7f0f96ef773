"""Kernels that come as a build tree rather than as Debian packages.

``local:PATH``
    a tree the user built (``make`` or ``vng --build``). Checked, never written.

``debian-src:SUITE+FLAVOUR``
    the suite's ``linux-source-X`` package (the source its stock kernel is built
    from), configured with virtme-ng's minimal configuration plus
    ``vm/configs/FLAVOUR.config`` and built with ``vng --build`` and the host's
    compiler. Cached under ``$HARNESS_CACHE/kernels/KEY``; KEY names the source
    package version and the hash of everything that decides the configuration.

Both boot from the tree's bzImage with the suite's base root (no kernel packages in
it), and modules are built against the tree itself with the host's gcc.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import time
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Callable, Optional, TextIO

from harness import procs, resources
from harness.cache import disk_usage, read_manifest, sha256_file
from harness.errors import InfraError, PhaseTimeout, UsageError
from harness.events import Note, Progress, Sink
from harness.kernel.apt import AptIndex, PackageIndex
from harness.kernel.sandbox import sandbox_argv
from harness.locks import atomic_dir, locked
from harness.model import KernelSpec, ResolvedKernel
from harness.virtme import find_vng, vng_env

BZIMAGE = "arch/x86/boot/bzImage"
HOST_COMPILER = "gcc"
BUILD_FORMAT = 1  # bump when the way source kernels are configured or built changes
MANIFEST = ".harness-kernel.json"
TREE_DIR = "linux"  # the tree inside a cache entry
# Host packages a kernel build needs besides gcc and make (Makefile: KERNEL_BUILD_PACKAGES).
BUILD_TOOLS = {"flex": "flex", "bison": "bison", "bc": "bc", "cpio": "cpio", "xz": "xz-utils"}
BUILD_HEADERS = {"/usr/include/libelf.h": "libelf-dev", "/usr/include/openssl/ssl.h": "libssl-dev"}

# What a tree must hold for the harness to boot it and build modules against it.
_TREE_PARTS = {
    ".config": "run `make olddefconfig` (or `vng --kconfig`)",
    BZIMAGE: "build it: `make -j$(nproc)` (or `vng --build`)",
    "include/config/kernel.release": "build it: `make -j$(nproc)` (or `vng --build`)",
    "Module.symvers": "build its modules too: `make modules` (vng --build does)",
    "scripts/mod/modpost": "build it: `make -j$(nproc)` (or `vng --build`)",
}


def check_tree(tree: Path) -> Optional[str]:
    """Why ``tree`` cannot be used as a kernel tree, or None."""
    for part, todo in _TREE_PARTS.items():
        if not (tree / part).exists():
            return f"{part} is missing; {todo}"
    config = (tree / ".config").read_text(errors="replace")
    if not re.search(r"^CONFIG_MODULES=y$", config, re.M):
        return "the kernel has no loadable module support (CONFIG_MODULES is not y)"
    return None


def tree_release(tree: Path) -> str:
    return (tree / "include/config/kernel.release").read_text().strip()


def local_kernel(spec: KernelSpec) -> ResolvedKernel:
    assert spec.path is not None
    tree = Path(spec.path)
    problem = check_tree(tree)
    if problem:
        raise UsageError(f"{spec}: not a built kernel tree: {problem}")
    img = tree / BZIMAGE
    built = time.strftime("%Y-%m-%d %H:%M", time.gmtime(img.stat().st_mtime))
    return ResolvedKernel(spec=spec, release=tree_release(tree), package_version=f"local tree, bzImage {built} UTC",
                          packages=(), compiler=HOST_COMPILER, tree=tree)


def tree_fingerprint(tree: Path) -> str:
    """Changes whenever the tree is rebuilt or reconfigured (a module build cache key)."""
    h = hashlib.sha256()
    for part in (".config", "Module.symvers", "include/config/kernel.release"):
        h.update((tree / part).read_bytes())
    st = (tree / BZIMAGE).stat()
    h.update(f"{st.st_size}:{st.st_mtime_ns}".encode())
    return h.hexdigest()[:16]


# ---- debian-src: kernels built here ----------------------------------------------


@dataclass(frozen=True)
class SourceKernel:
    spec: KernelSpec
    package: str  # linux-source-6.12
    version: str  # 6.12.118-1
    config_hash: str

    @property
    def key(self) -> str:
        return re.sub(r"[^A-Za-z0-9._+-]", "_",
                      f"{self.spec.suite}-{self.package}-{self.version}-{self.spec.flavour}-{self.config_hash}")


def fragment_path(flavour: str) -> Path:
    return resources.config_fragment(flavour)


def fragment_text(flavour: str) -> str:
    """The configuration of a flavour: its fragment, or for ``kunit+gcov`` theirs in that order."""
    return "".join(fragment_path(part).read_text() for part in flavour.split("+"))


def config_hash(flavour: str) -> str:
    """Everything that decides the configuration: the fragment, virtme-ng's own list, the recipe."""
    try:
        vng_version = metadata.version("virtme-ng")
    except metadata.PackageNotFoundError:
        vng_version = "?"
    h = hashlib.sha256(json.dumps([BUILD_FORMAT, vng_version, fragment_text(flavour)]).encode())
    return h.hexdigest()[:10]


def resolve_source(spec: KernelSpec, index: PackageIndex) -> SourceKernel:
    """The suite's kernel source package (the one its ``linux-source`` depends on)."""
    assert spec.flavour is not None
    meta = index.show("linux-source")
    if meta is None:
        raise InfraError(f"no package linux-source in {spec.suite} at {index.mirror.debian}")
    m = re.search(r"\b(linux-source-[0-9][0-9.]*)\b", meta.get("Depends", ""))
    if not m:
        raise InfraError(f"cannot read the source package from linux-source's Depends: {meta.get('Depends')!r}")
    pkg = index.show(m.group(1))
    if pkg is None:
        raise InfraError(f"linux-source names {m.group(1)}, which the {spec.suite} index lacks")
    return SourceKernel(spec=spec, package=m.group(1), version=pkg["Version"], config_hash=config_hash(spec.flavour))


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


def kernel_from_entry(spec: KernelSpec, entry: Path) -> ResolvedKernel:
    manifest = json.loads((entry / MANIFEST).read_text())
    tree = entry / TREE_DIR
    return ResolvedKernel(spec=spec, release=manifest["release"],
                          package_version=f"{manifest['package']} {manifest['version']}",
                          packages=(), compiler=HOST_COMPILER, tree=tree)


def check_entry(entry: Path) -> Optional[str]:
    """Why a cached kernel is unusable, or None."""
    manifest, problem = read_manifest(entry / MANIFEST)
    if manifest is None:
        return problem
    tree = entry / TREE_DIR
    problem = check_tree(tree)
    if problem:
        return problem
    img = tree / BZIMAGE
    if img.stat().st_size != manifest.get("bzimage_size") or sha256_file(img) != manifest.get("bzimage_sha256"):
        return f"{BZIMAGE} does not match the one the build recorded"
    return None


def cached(src: SourceKernel, cache: Path) -> Optional[Path]:
    entry = cache / "kernels" / src.key
    return entry if entry.is_dir() and check_entry(entry) is None else None


def ensure_built(src: SourceKernel, index: AptIndex, cache: Path, sink: Sink, timeout: float,
                 jobs: Optional[int] = None) -> ResolvedKernel:
    """The cached build of ``src``, building it first when needed (under a lock)."""
    kdir = cache / "kernels"
    kdir.mkdir(parents=True, exist_ok=True)
    entry = kdir / src.key
    with locked(kdir / f"{src.key}.lock"):
        if entry.exists():
            problem = check_entry(entry)
            if problem is None:
                sink(Note(f"using cached kernel {entry}", verbose=True))
                return kernel_from_entry(src.spec, entry)
            sink(Note(f"    cached kernel {entry} is damaged: {problem}; rebuilding it"))
            shutil.rmtree(entry)
        _build(src, index, entry, sink, timeout, jobs)
        return kernel_from_entry(src.spec, entry)


def check_build_host() -> None:
    for tool, package in {"make": "make", "gcc": "gcc", **BUILD_TOOLS}.items():
        procs.require_tool(tool, package)
    for header, package in BUILD_HEADERS.items():
        if not Path(header).is_file():
            raise InfraError(f"{header} is missing: building a kernel needs it",
                             hint=f"install the package '{package}' (`make setup` does it)")


class _BuildSteps:
    """The commands of one kernel build, under one deadline, all logged to one file."""

    def __init__(self, src: SourceKernel, log_path: Path, log: TextIO, sink: Sink, timeout: float):
        self.src, self.log_path, self.log, self.sink = src, log_path, log, sink
        self.timeout = timeout
        self.deadline = time.monotonic() + timeout

    def __call__(self, argv: list[str], what: str, cwd: Path, on_line: Optional[procs.LineSink] = None) -> None:
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise PhaseTimeout(f"building {self.src.spec} took longer than {self.timeout:.0f}s (before {what})")
        self.log.write(f"# {' '.join(argv)}\n")
        self.log.flush()
        res = procs.run(argv, timeout=left, what=what, log=self.log, cwd=cwd, env=vng_env(),
                        on_line=on_line or (lambda _n, ln: self.sink(Progress(ln))), keep=False)
        if res.returncode != 0:
            raise InfraError(f"{what} failed (exit {res.returncode}) building {self.src.spec}; log: {self.log_path}\n"
                             + _log_tail(self.log_path), hint=_build_hint(self.log_path))


def _build(src: SourceKernel, index: AptIndex, entry: Path, sink: Sink, timeout: float,
           jobs: Optional[int]) -> None:
    check_build_host()
    vng_path = find_vng()
    log_path = entry.parent / f"{entry.name}.log"
    t0 = time.monotonic()
    with atomic_dir(entry) as tmp, open(log_path, "w") as log:
        step = _BuildSteps(src, log_path, log, sink, timeout)
        tree = _unpack_source(src, index, tmp, step, sink)
        assert src.spec.flavour is not None
        parts = " + ".join(f"vm/configs/{p}.config" for p in src.spec.flavour.split("+"))
        sink(Note(f"    configuring: virtme-ng's minimal config + {parts}"))
        fragment = tmp / "fragment.config"  # kept in the cache entry: the configuration it was built with
        fragment.write_text(fragment_text(src.spec.flavour))
        configure(vng_path, tree, fragment, step)
        sink(Note(f"    building with {HOST_COMPILER} (vng --build); the first build of a flavour takes long"))
        _compile(vng_path, tree, jobs, step, sink)
        built_bytes = disk_usage(tree)
        prune(tree)
        manifest = _manifest(src, tree, time.monotonic() - t0, built_bytes)
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n")
    sink(Note(f"    built {manifest['release']} in {time.monotonic() - t0:.0f}s: {entry} "
              f"({disk_usage(entry / TREE_DIR) / 2**30:.1f} GiB kept of {built_bytes / 2**30:.1f})"))


def _unpack_source(src: SourceKernel, index: AptIndex, tmp: Path, step: _BuildSteps, sink: Sink) -> Path:
    """Download the source package into ``tmp`` and unpack its tarball to ``tmp/TREE_DIR``."""
    sink(Note(f"    downloading {src.package} {src.version}"))
    deb = index.download(src.package, src.version, tmp)
    step(["dpkg-deb", "-x", str(deb), str(tmp / "deb")], "unpacking the source package", tmp)
    tarballs = list((tmp / "deb/usr/src").glob("linux-source-*.tar.*"))
    if not tarballs:
        raise InfraError(f"{deb.name} holds no linux-source tarball under /usr/src")
    sink(Note(f"    unpacking {tarballs[0].name}"))
    step(["tar", "-xf", str(tarballs[0]), "-C", str(tmp)], "unpacking the kernel source", tmp)
    shutil.rmtree(tmp / "deb")
    deb.unlink()
    unpacked = [p for p in tmp.iterdir() if p.is_dir() and (p / "Makefile").is_file()]
    if len(unpacked) != 1:
        raise InfraError(f"the source tarball did not unpack to one kernel tree: {unpacked}")
    return unpacked[0].rename(tmp / TREE_DIR)


def _compile(vng_path: str, tree: Path, jobs: Optional[int], step: _BuildSteps, sink: Sink) -> None:
    compiled = 0

    def progress(_name: str, line: str) -> None:
        nonlocal compiled
        if line.lstrip().startswith(("CC ", "AS ", "LD ", "AR ")):
            compiled += 1
        sink(Progress(f"{compiled} objects; {line.strip()[:80]}"))

    step([vng_path, "--build", "--verbose"] + (["--jobs", str(jobs)] if jobs else []), "vng --build", tree, progress)
    problem = check_tree(tree)
    if problem:
        raise InfraError(f"vng --build finished but the tree is incomplete: {problem}; log: {step.log_path}")


def _manifest(src: SourceKernel, tree: Path, seconds: float, built_bytes: int) -> dict[str, object]:
    img = tree / BZIMAGE
    return {
        "format": BUILD_FORMAT, "spec": str(src.spec), "package": src.package, "version": src.version,
        "flavour": src.spec.flavour, "config_hash": src.config_hash, "release": tree_release(tree),
        "compiler": _first_line([HOST_COMPILER, "--version"]),
        "bzimage_size": img.stat().st_size, "bzimage_sha256": sha256_file(img),
        "build_seconds": round(seconds, 1), "tree_bytes_built": built_bytes, "tree_bytes_kept": disk_usage(tree),
    }


# Pruning a built tree down to what booting and external module builds read: the
# bzImage and vmlinux, .config, Makefiles/Kconfig, include/ and arch/*/include,
# scripts/ and tools/ (modpost, objtool: host programs, kept whole), Module.symvers.
_PRUNE_SUFFIXES = (".o", ".c", ".S", ".rst", ".yaml")
_PRUNE_DIRS = ("Documentation",)
_KEEP_WHOLE = ("scripts", "tools")


def prune(tree: Path) -> None:
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
        boot_dir = rel[:1] == ("arch",) and rel[2:3] == ("boot",)  # the bzImage and its intermediates
        for name in filenames:
            if ((boot_dir and d / name != tree / BZIMAGE) or name.endswith(_PRUNE_SUFFIXES)
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


def _first_line(argv: list[str]) -> str:
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


def tree_modules(tree: Path, cache: Path, sink: Sink, timeout: float = 600) -> Path:
    """The kernel tree's own modules, installed by its ``make modules_install`` into the
    cache (keyed by the tree's fingerprint): the directory the guest mounts at /lib/modules,
    so modprobe in the guest finds what the tree built as modules, and modules.builtin.

    The tree is only read (the host read-only in bubblewrap); a failed install leaves nothing.
    """
    base = cache / TREE_MODULES
    key = tree_fingerprint(tree)
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

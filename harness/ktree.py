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
import tempfile
import time
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Optional

from harness import procs, vm
from harness.buildroot import disk_usage, read_manifest, sha256_file
from harness.errors import InfraError, PhaseTimeout, UsageError
from harness.kernels import CONFIGS_DIR, AptIndex, require_tool
from harness.locks import locked
from harness.model import KernelSpec, ResolvedKernel
from harness.progress import Printer

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
    return CONFIGS_DIR / f"{flavour}.config"


def config_hash(flavour: str) -> str:
    """Everything that decides the configuration: the fragment, virtme-ng's own list, the recipe."""
    try:
        vng_version = metadata.version("virtme-ng")
    except metadata.PackageNotFoundError:
        vng_version = "?"
    h = hashlib.sha256(json.dumps([BUILD_FORMAT, vng_version, fragment_path(flavour).read_text()]).encode())
    return h.hexdigest()[:10]


def resolve_source(spec: KernelSpec, index: AptIndex) -> SourceKernel:
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


def ensure_built(src: SourceKernel, index: AptIndex, cache: Path, printer: Printer, timeout: float,
                 jobs: Optional[int] = None) -> ResolvedKernel:
    """The cached build of ``src``, building it first when needed (under a lock)."""
    kdir = cache / "kernels"
    kdir.mkdir(parents=True, exist_ok=True)
    entry = kdir / src.key
    with locked(kdir / f"{src.key}.lock"):
        if entry.exists():
            problem = check_entry(entry)
            if problem is None:
                printer.detail(f"using cached kernel {entry}")
                return kernel_from_entry(src.spec, entry)
            printer.line(f"    cached kernel {entry} is damaged: {problem}; rebuilding it")
            shutil.rmtree(entry)
        _build(src, index, entry, printer, timeout, jobs)
        return kernel_from_entry(src.spec, entry)


def check_build_host() -> None:
    for tool, package in {"make": "make", "gcc": "gcc", **BUILD_TOOLS}.items():
        require_tool(tool, package)
    for header, package in BUILD_HEADERS.items():
        if not Path(header).is_file():
            raise InfraError(f"{header} is missing: building a kernel needs it",
                             hint=f"install the package '{package}' (`make setup` does it)")


def _build(src: SourceKernel, index: AptIndex, entry: Path, printer: Printer, timeout: float,
           jobs: Optional[int]) -> None:
    check_build_host()
    vng = vm.find_vng()
    deadline = time.monotonic() + timeout
    tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{entry.name}-", dir=entry.parent))
    log_path = entry.parent / f"{entry.name}.log"
    t0 = time.monotonic()
    try:
        with open(log_path, "w") as log:
            def step(argv: list[str], what: str, cwd: Path, on_line=None) -> None:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise PhaseTimeout(f"building {src.spec} took longer than {timeout:.0f}s (before {what})")
                log.write(f"# {' '.join(argv)}\n")
                log.flush()
                res = procs.run(argv, timeout=left, what=what, log=log, cwd=cwd, env=vm.vng_env(),
                                on_line=on_line or (lambda _n, ln: printer.status(ln)), keep=False)
                if res.returncode != 0:
                    raise InfraError(f"{what} failed (exit {res.returncode}) building {src.spec}; log: {log_path}\n"
                                     + _log_tail(log_path), hint=_build_hint(log_path))

            printer.line(f"    downloading {src.package} {src.version}")
            index.download(src.package, src.version, tmp)
            debs = list(tmp.glob("*.deb"))
            step(["dpkg-deb", "-x", str(debs[0]), str(tmp / "deb")], "unpacking the source package", tmp)
            tarballs = list((tmp / "deb/usr/src").glob("linux-source-*.tar.*"))
            if not tarballs:
                raise InfraError(f"{debs[0].name} holds no linux-source tarball under /usr/src")
            printer.line(f"    unpacking {tarballs[0].name}")
            step(["tar", "-xf", str(tarballs[0]), "-C", str(tmp)], "unpacking the kernel source", tmp)
            shutil.rmtree(tmp / "deb")
            debs[0].unlink()
            unpacked = [p for p in tmp.iterdir() if p.is_dir() and (p / "Makefile").is_file()]
            if len(unpacked) != 1:
                raise InfraError(f"the source tarball did not unpack to one kernel tree: {unpacked}")
            tree = unpacked[0].rename(tmp / TREE_DIR)

            printer.line(f"    configuring: virtme-ng's minimal config + {fragment_path(src.spec.flavour)}")
            configure(vng, tree, fragment_path(src.spec.flavour), step)

            printer.line(f"    building with {HOST_COMPILER} (vng --build); the first build of a flavour takes long")
            compiled = [0]

            def progress(_name: str, line: str) -> None:
                if line.lstrip().startswith(("CC ", "AS ", "LD ", "AR ")):
                    compiled[0] += 1
                printer.status(f"{compiled[0]} objects; {line.strip()[:80]}")

            argv = [vng, "--build", "--verbose"] + (["--jobs", str(jobs)] if jobs else [])
            step(argv, "vng --build", tree, progress)
            problem = check_tree(tree)
            if problem:
                raise InfraError(f"vng --build finished but the tree is incomplete: {problem}; log: {log_path}")
            built_bytes = disk_usage(tree)
            prune(tree)
            img = tree / BZIMAGE
            manifest = {
                "format": BUILD_FORMAT, "spec": str(src.spec), "package": src.package, "version": src.version,
                "flavour": src.spec.flavour, "config_hash": src.config_hash, "release": tree_release(tree),
                "compiler": _first_line([HOST_COMPILER, "--version"]),
                "bzimage_size": img.stat().st_size, "bzimage_sha256": sha256_file(img),
                "build_seconds": round(time.monotonic() - t0, 1),
                "tree_bytes_built": built_bytes, "tree_bytes_kept": disk_usage(tree),
            }
            (tmp / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n")
        os.rename(tmp, entry)
        printer.line(f"    built {manifest['release']} in {manifest['build_seconds']:.0f}s: {entry} "
                     f"({manifest['tree_bytes_kept'] / 2**30:.1f} GiB kept of {built_bytes / 2**30:.1f})")
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


# Pruning a built tree down to what booting and external module builds read: the
# bzImage and vmlinux, .config, Makefiles/Kconfig, include/ and arch/*/include,
# scripts/ and tools/ (modpost, objtool: host programs, kept whole), Module.symvers.
_PRUNE_SUFFIXES = (".o", ".c", ".S", ".rst", ".yaml")
_PRUNE_DIRS = ("Documentation",)
_KEEP_WHOLE = ("scripts", "tools")


def prune(tree: Path) -> None:
    """Drop what only building the kernel itself needed: its sources and objects (2.6 GB
    -> about 0.7 GB for a KASAN 6.12; it keeps the cache, and CI's, small)."""
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


def configure(vng: str, tree: Path, fragment: Path, step) -> None:
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

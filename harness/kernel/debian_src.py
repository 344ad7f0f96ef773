"""``debian-src:SUITE+FLAVOUR``: a kernel built here from the suite's own kernel source.

The suite's ``linux-source-X`` package (the source its stock kernel is built from),
configured with virtme-ng's minimal configuration plus ``vm/configs/FLAVOUR.config`` (several
join: ``+kunit+gcov``) and built with ``vng --build`` and the host's compiler. Cached under
``$HARNESS_CACHE/kernels/KEY``; KEY names the source package version and the hash of
everything that decides the configuration. It is a kernel tree (harness/kernel/trees.py).
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import time
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Optional

from harness import arches, resources
from harness.cache import disk_usage, read_manifest, sha256_file
from harness.errors import InfraError, UsageError
from harness.events import Note, Sink
from harness.kernel import trees
from harness.kernel.apt import AptIndex, Mirror, PackageIndex
from harness.kernel.source import Archive, Resolution
from harness.kernel.suites import check_suite
from harness.locks import atomic_dir, locked
from harness.model import KernelSpec, ResolvedKernel
from harness.virtme import find_vng

FORMS = (
    "debian-src:SUITE+FLAV   built here from the suite's linux-source with vm/configs/FLAV.config,\n"
    "                        e.g. debian-src:trixie+kasan (KASAN, kmemleak, lockdep, UBSAN);\n"
    "                        several join: debian-src:trixie+kunit+gcov (KUnit and coverage)"
)
_FLAVOUR = r"[a-z0-9][a-z0-9_-]*"
_SPEC = re.compile(rf"^debian-src:(?P<suite>[a-z][a-z0-9-]*)\+(?P<flavour>{_FLAVOUR}(?:\+{_FLAVOUR})*)$")
BUILD_FORMAT = 1  # bump when the way source kernels are configured or built changes
MANIFEST = ".harness-kernel.json"
TREE_DIR = "linux"  # the tree inside a cache entry


@dataclass(frozen=True)
class SourceSpec(KernelSpec):
    def __str__(self) -> str:
        return f"{self.source}:{self.suite}+{self.flavour}"

    def kernel_id(self, release: str) -> str:
        return f"{self.source}-{self.suite}-{self.flavour}-{release}"


@dataclass(frozen=True)
class SourceKernel:
    """A debian-src: kernel still to build (harness.kernel.source.ToBuild)."""

    spec: KernelSpec
    package: str  # linux-source-6.12
    version: str  # 6.12.118-1
    config_hash: str
    index: Optional[AptIndex] = field(default=None, compare=False, repr=False)  # where the package comes from

    @property
    def key(self) -> str:
        return re.sub(r"[^A-Za-z0-9._+-]", "_",
                      f"{self.spec.suite}-{self.package}-{self.version}-{self.spec.flavour}-{self.config_hash}")

    def describe(self) -> str:
        return f"{self.package} {self.version} built with {trees.HOST_COMPILER}"

    def cached(self, cache: Path) -> bool:
        entry = cache / "kernels" / self.key
        return entry.is_dir() and check_entry(entry, self.spec) is None

    def build(self, cache: Path, sink: Sink, timeout: float) -> ResolvedKernel:
        assert self.index is not None, "a source kernel to build comes from resolve_source"
        return ensure_built(self, self.index, cache, sink, timeout)


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
    return SourceKernel(spec=spec, package=m.group(1), version=pkg["Version"], config_hash=config_hash(spec.flavour),
                        index=index if isinstance(index, AptIndex) else None)  # a recorded index builds nothing


def kernel_from_entry(spec: KernelSpec, entry: Path) -> ResolvedKernel:
    manifest = json.loads((entry / MANIFEST).read_text())
    tree = entry / TREE_DIR
    return ResolvedKernel(spec=spec, release=manifest["release"],
                          package_version=f"{manifest['package']} {manifest['version']}",
                          packages=(), compiler=trees.HOST_COMPILER, tree=tree)


def check_entry(entry: Path, spec: KernelSpec) -> Optional[str]:
    """Why a cached kernel is unusable, or None."""
    manifest, problem = read_manifest(entry / MANIFEST)
    if manifest is None:
        return problem
    tree, arch = entry / TREE_DIR, arches.get(spec.arch)
    problem = trees.check_tree(tree, arch)
    if problem:
        return problem
    img = trees.image(tree, arch)
    # The manifest's keys are named after x86's image, as the first builds recorded them.
    if img.stat().st_size != manifest.get("bzimage_size") or sha256_file(img) != manifest.get("bzimage_sha256"):
        return f"{arch.tree_image} does not match the one the build recorded"
    return None


def ensure_built(src: SourceKernel, index: AptIndex, cache: Path, sink: Sink, timeout: float,
                 jobs: Optional[int] = None) -> ResolvedKernel:
    """The cached build of ``src``, building it first when needed (under a lock)."""
    kdir = cache / "kernels"
    kdir.mkdir(parents=True, exist_ok=True)
    entry = kdir / src.key
    with locked(kdir / f"{src.key}.lock"):
        if entry.exists():
            problem = check_entry(entry, src.spec)
            if problem is None:
                sink(Note(f"using cached kernel {entry}", verbose=True))
                return kernel_from_entry(src.spec, entry)
            sink(Note(f"    cached kernel {entry} is damaged: {problem}; rebuilding it"))
            shutil.rmtree(entry)
        _build(src, index, entry, sink, timeout, jobs)
        return kernel_from_entry(src.spec, entry)


def _build(src: SourceKernel, index: AptIndex, entry: Path, sink: Sink, timeout: float,
           jobs: Optional[int]) -> None:
    trees.check_build_host()
    vng_path = find_vng()
    log_path = entry.parent / f"{entry.name}.log"
    arch = arches.get(src.spec.arch)
    t0 = time.monotonic()
    with atomic_dir(entry) as tmp, open(log_path, "w") as log:
        step = trees.BuildSteps(src.spec, log_path, log, sink, timeout)
        tree = _unpack_source(src, index, tmp, step, sink)
        assert src.spec.flavour is not None
        parts = " + ".join(f"vm/configs/{p}.config" for p in src.spec.flavour.split("+"))
        sink(Note(f"    configuring: virtme-ng's minimal config + {parts}"))
        fragment = tmp / "fragment.config"  # kept in the cache entry: the configuration it was built with
        fragment.write_text(fragment_text(src.spec.flavour))
        trees.configure(vng_path, tree, fragment, step)
        sink(Note(f"    building with {trees.HOST_COMPILER} (vng --build); the first build of a flavour takes long"))
        trees.compile_tree(vng_path, tree, arch, jobs, step, sink)
        built_bytes = disk_usage(tree)
        trees.prune(tree, arch)
        manifest = _manifest(src, tree, time.monotonic() - t0, built_bytes)
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n")
    sink(Note(f"    built {manifest['release']} in {time.monotonic() - t0:.0f}s: {entry} "
              f"({disk_usage(entry / TREE_DIR) / 2**30:.1f} GiB kept of {built_bytes / 2**30:.1f})"))


def _unpack_source(src: SourceKernel, index: AptIndex, tmp: Path, step: trees.BuildSteps, sink: Sink) -> Path:
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


def _manifest(src: SourceKernel, tree: Path, seconds: float, built_bytes: int) -> dict[str, object]:
    img = trees.image(tree, arches.get(src.spec.arch))
    return {
        "format": BUILD_FORMAT, "spec": str(src.spec), "package": src.package, "version": src.version,
        "flavour": src.spec.flavour, "config_hash": src.config_hash, "release": trees.tree_release(tree),
        "compiler": trees.first_line([trees.HOST_COMPILER, "--version"]),
        "bzimage_size": img.stat().st_size, "bzimage_sha256": sha256_file(img),
        "build_seconds": round(seconds, 1), "tree_bytes_built": built_bytes, "tree_bytes_kept": disk_usage(tree),
    }


class DebianSource(trees.TreeKernels):
    name = "debian-src"
    forms = FORMS

    def parse(self, text: str) -> KernelSpec:
        m = _SPEC.match(text)
        if not m:
            raise UsageError(f"invalid kernel spec {text!r}", hint=f"valid forms:\n{FORMS}")
        check_suite(m["suite"], text)
        known = resources.flavours()
        parts = m["flavour"].split("+")
        for part in parts:
            if part not in known:
                raise UsageError(f"unknown kernel flavour {part!r} in {text!r}: no vm/configs/"
                                 f"{part}.config; known flavours: {', '.join(known) or 'none'}")
        if len(set(parts)) != len(parts):
            raise UsageError(f"{text!r} names a flavour twice", hint="name each flavour once, e.g. +kunit+gcov")
        return SourceSpec(source=self.name, suite=m["suite"], flavour=m["flavour"], arch=arches.host().name)

    def origin(self, spec: KernelSpec, mirror: Mirror) -> str:
        return f"at {mirror.debian}"

    def resolve(self, spec: KernelSpec, archive: Archive) -> Resolution:
        index = AptIndex(archive.cache, spec.suite, archive.mirror, archive.timeouts, arch=spec.arch)
        index.update(ttl=archive.ttl)
        return Resolution(pending=resolve_source(spec, index))


SOURCE = DebianSource()

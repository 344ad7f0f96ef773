"""Where kernels come from: the interface every kernel source implements.

A source owns one spec prefix (``debian:``, ``debian-src:``, ``local:``). It parses its specs
into a KernelSpec subclass of its own, which writes the spec back and names its kernels, and
it answers for each kernel it resolves: the root the kernel needs, the image that boots it
(per architecture), the headers modules are built against and the compiler that builds them.
harness/kernel/registry.py holds one of each by prefix; nothing else asks which source a
kernel came from. A new source (kernel.org builds, say) is one new module and a line there.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Protocol

from harness.arches import Arch
from harness.events import Sink
from harness.kernel.apt import Mirror
from harness.model import KernelSpec, ResolvedKernel, Timeouts


@dataclass(frozen=True)
class Archive:
    """Where and how a source looks kernels up: the mirrors, the cache, how long an index stays current."""

    mirror: Mirror
    cache: Path
    ttl: float  # seconds a downloaded package index counts as current (0: download it again)
    timeouts: Timeouts = field(default_factory=Timeouts)


class ToBuild(Protocol):
    """A kernel resolved to something still to be built here (debian-src: the suite's source package)."""

    @property
    def spec(self) -> KernelSpec: ...

    @property
    def key(self) -> str:
        """Names exactly what will be built: changes when, and only when, the kernel does (CI caches)."""

    def describe(self) -> str:
        """What will be built, and with what, for the phase line: ``linux-source-6.12 6.12.118-1 ...``."""

    def cached(self, cache: Path) -> bool:
        """Whether a sound build of it is in the cache."""

    def build(self, cache: Path, sink: Sink, timeout: float) -> ResolvedKernel:
        """The cached build, built first when needed (under a lock)."""


@dataclass(frozen=True)
class Resolution:
    """What a spec names now: a kernel ready to boot, or one still to build."""

    kernel: Optional[ResolvedKernel] = None
    pending: Optional[ToBuild] = None


@dataclass(frozen=True)
class RootNeed:
    """The Debian root a kernel boots with (harness/kernel/roots.py makes it)."""

    suite: str
    packages: tuple[str, ...]  # what the kernel brings into the root: its packages and their compiler
    # The suite's base root, shared by every kernel tree of the suite: the kernel is not in it (the
    # tree's modules are mounted at /lib/modules), and modules are built on the host, against the tree.
    base: bool = False


class KernelSource(Protocol):
    """One way of getting kernels. Implemented by harness/kernel/debian.py (the Debian archive),
    debian_src.py (the archive's kernel source, built here) and local.py (a tree the user built)."""

    name: str  # the prefix of its specs: "debian" for debian:SUITE
    forms: str  # its lines of the spec forms `harness run --help` shows
    # Its kernels are build trees on the host: modules are built there, by the host's compiler,
    # never in the guest (which sees only the root).
    tree: bool

    def parse(self, text: str) -> KernelSpec:
        """A spec of this source from what the user wrote (``text`` starts with ``name:``), checked."""

    def for_arch(self, text: str, arch: Arch) -> KernelSpec:
        """The spec ``text`` (one of this source's) for guest architecture ``arch`` (``--arch``); a
        UsageError when the text names another one, or when this source has none but the host's."""

    def origin(self, spec: KernelSpec, mirror: Mirror) -> str:
        """Where its kernels come from, for the resolve phase's line ("" when nowhere but here)."""

    def resolve(self, spec: KernelSpec, archive: Archive) -> Resolution:
        """The concrete kernel the spec names now, or the one still to build."""

    def root(self, kernel: ResolvedKernel) -> RootNeed:
        """The root the kernel needs."""

    def boot_image(self, kernel: ResolvedKernel, root: Path) -> Path:
        """The kernel image for its architecture, in its root (made from ``root()``) or its tree."""

    def config(self, kernel: ResolvedKernel, root: Path) -> Path:
        """Where the kernel's .config is (it may be missing: a kernel without one)."""

    def headers(self, kernel: ResolvedKernel) -> str:
        """What modules are built against: a directory inside the root, or on the host for a tree."""

    def compiler(self, kernel: ResolvedKernel) -> str:
        """The compiler modules are built with: in the root for packaged kernels, the host's for a tree."""

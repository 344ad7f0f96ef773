"""``debian:SUITE[@ABI][:ARCH]``: a kernel from the Debian archive, as Debian packaged it.

The suite's current kernel (or a pinned ABI) for any architecture of harness/arches.py,
resolved against that architecture's package index (``linux-image-FLAVOUR``). Its root holds
the image, modules, headers and kbuild at their canonical paths, with the compiler the
headers name, and the module is built in that root.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from pathlib import Path

from harness import arches
from harness.arches import Arch
from harness.errors import InfraError, UsageError
from harness.kernel import apt
from harness.kernel.source import Archive, Resolution, RootNeed
from harness.kernel.suites import check_suite
from harness.model import KernelSpec, ResolvedKernel

FORMS = (
    "debian:SUITE            the suite's current kernel, e.g. debian:bookworm\n"
    "debian:SUITE@ABI        a pinned kernel ABI, e.g. debian:bookworm@6.1.0-56\n"
    "debian:SUITE[@ABI]:ARCH another architecture's kernel (or --arch), e.g. debian:bookworm:arm64,\n"
    "                        under TCG with qemu-user for its root and module build"
)
_SPEC = re.compile(r"^debian:(?P<suite>[a-z][a-z0-9-]*)(?:@(?P<pin>[0-9][0-9A-Za-z.+~-]*))?"
                   r"(?::(?P<arch>[a-z0-9]+))?$")


@dataclass(frozen=True)
class DebianSpec(KernelSpec):
    arch: str = arches.UNWRITTEN

    def __str__(self) -> str:
        tail = "" if self.arch == arches.UNWRITTEN else f":{self.arch}"
        return f"{self.source}:{self.suite}" + (f"@{self.pin}" if self.pin else "") + tail


def find_image(root: Path, release: str, arch: Arch) -> Path:
    """The kernel image Debian's package installed: in /boot, or beside the modules (usrmerged suites)."""
    for name in arch.package_images:
        for rel in (f"boot/{name}-{release}", f"usr/lib/modules/{release}/{name}", f"lib/modules/{release}/{name}"):
            if (root / rel).is_file():
                return root / rel
    raise InfraError(f"no kernel image for {release} in {root}")


class DebianArchive:
    name = "debian"
    forms = FORMS
    tree = False

    def parse(self, text: str) -> KernelSpec:
        m = _SPEC.match(text)
        if not m:
            raise UsageError(f"invalid kernel spec {text!r}", hint=f"valid forms:\n{FORMS}")
        check_suite(m["suite"], text)
        arch = arches.get(m["arch"], f"architecture in {text!r}:").name if m["arch"] else arches.host().name
        return DebianSpec(source=self.name, suite=m["suite"], pin=m["pin"], arch=arch)

    def for_arch(self, text: str, arch: Arch) -> KernelSpec:
        spec, m = self.parse(text), _SPEC.match(text)
        if m and m["arch"] and spec.arch != arch.name:
            raise UsageError(f"{text!r} names {spec.arch}, --arch {arch.name}: give one of them")
        return replace(spec, arch=arch.name)

    def origin(self, spec: KernelSpec, mirror: apt.Mirror) -> str:
        return f"at {mirror.debian}"

    def resolve(self, spec: KernelSpec, archive: Archive) -> Resolution:
        index = apt.AptIndex(archive.cache, spec.suite, archive.mirror, archive.timeouts, arch=spec.arch)
        index.update(ttl=archive.ttl)
        return Resolution(kernel=apt.resolve(spec, index))

    def root(self, kernel: ResolvedKernel) -> RootNeed:
        return RootNeed(kernel.spec.suite, kernel.packages + (kernel.compiler,))

    def boot_image(self, kernel: ResolvedKernel, root: Path) -> Path:
        return find_image(root, kernel.release, arches.get(kernel.spec.arch))

    def config(self, kernel: ResolvedKernel, root: Path) -> Path:
        return root / "boot" / f"config-{kernel.release}"

    def headers(self, kernel: ResolvedKernel) -> str:
        return f"/usr/src/linux-headers-{kernel.release}"

    def compiler(self, kernel: ResolvedKernel) -> str:
        return kernel.compiler  # the one the headers package depends on (apt.compiler_from_depends)


SOURCE = DebianArchive()

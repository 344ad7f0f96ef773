"""``local:PATH``: a kernel tree the user built (``make``, or ``vng --build``). Checked, never written.

It boots with a Debian bookworm base root (the tree brings the kernel, the root the userspace),
and the module is built against the tree with the host's compiler (harness/kernel/trees.py).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from harness import arches
from harness.errors import UsageError
from harness.kernel import trees
from harness.kernel.source import Archive, Resolution
from harness.model import KernelSpec, ResolvedKernel

FORMS = (
    "local:PATH              a kernel tree you built (make, or vng --build), booted with a\n"
    "                        Debian bookworm root; the module is built against the tree"
)
ROOT_SUITE = "bookworm"  # the guest root under a local: kernel (the tree brings the kernel, the root userspace)


@dataclass(frozen=True)
class LocalSpec(KernelSpec):
    def __str__(self) -> str:
        return f"{self.source}:{self.path}"

    def kernel_id(self, release: str) -> str:
        return f"{self.source}-{release}"


def local_kernel(spec: KernelSpec) -> ResolvedKernel:
    assert spec.path is not None
    tree, arch = Path(spec.path), arches.get(spec.arch)
    problem = trees.check_tree(tree, arch)
    if problem:
        raise UsageError(f"{spec}: not a built kernel tree: {problem}")
    img = trees.image(tree, arch)
    built = time.strftime("%Y-%m-%d %H:%M", time.gmtime(img.stat().st_mtime))
    return ResolvedKernel(spec=spec, release=trees.tree_release(tree),
                          package_version=f"local tree, {img.name} {built} UTC",
                          packages=(), compiler=trees.HOST_COMPILER, tree=tree)


class LocalTree(trees.TreeKernels):
    name = "local"
    forms = FORMS

    def parse(self, text: str) -> KernelSpec:
        raw = text[len("local:"):]
        if not raw:
            raise UsageError(f"invalid kernel spec {text!r}: local: needs the path of a kernel build tree")
        path = Path(raw).expanduser()
        try:
            is_dir = path.is_dir()
        except OSError as e:
            raise UsageError(f"{text!r}: {e.strerror or e}") from None
        if not is_dir:
            raise UsageError(f"{text!r}: {path} is not a directory",
                             hint="local:PATH takes a kernel source tree you have built (make, or vng --build)")
        return LocalSpec(source=self.name, suite=ROOT_SUITE, path=str(path.resolve()), arch=arches.host().name)

    def resolve(self, spec: KernelSpec, archive: Archive) -> Resolution:
        return Resolution(kernel=local_kernel(spec))


SOURCE = LocalTree()

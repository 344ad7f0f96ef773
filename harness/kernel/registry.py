"""The kernel sources, by the prefix of their specs: the one place that lists them.

Each implements harness/kernel/source.py's KernelSource. Adding one (kernel.org builds, say)
is its own module and a line here: the spec forms, parsing, resolving, roots, boot images,
headers and compilers all go through this table.
"""

from __future__ import annotations

from harness.kernel import debian, debian_src, local
from harness.kernel.source import KernelSource
from harness.model import KernelSpec

SOURCES: dict[str, KernelSource] = {s.name: s for s in (debian.SOURCE, debian_src.SOURCE, local.SOURCE)}


def of(spec: KernelSpec) -> KernelSource:
    """The source a spec came from (specs are made by their source's parse, so it is registered)."""
    return SOURCES[spec.source]

"""Kernel specs: what the user typed, checked and parsed by the source its prefix names
(harness/kernel/registry.py). No I/O but the ``local:`` path check."""

from __future__ import annotations

from typing import Optional

from harness import arches
from harness.errors import UsageError
from harness.kernel import registry, suites
from harness.model import KernelSpec

SPEC_FORMS = "\n".join(s.forms for s in registry.SOURCES.values())
DEFAULT_KERNEL = "debian:bookworm"
SUITES = suites.SUITES  # the suites every source's specs may name

MAX_SPEC = 1024


def parse_spec(text: str) -> KernelSpec:
    text = text.strip()
    if len(text) > MAX_SPEC or any(ord(c) < 32 for c in text):
        shown = text[:60].encode("unicode_escape").decode() + ("..." if len(text) > 60 else "")
        raise UsageError(f"invalid kernel spec {shown!r} ({len(text)} characters): a spec is one short line",
                         hint=f"valid forms:\n{SPEC_FORMS}")
    name, colon, _ = text.partition(":")
    if not colon or not name:
        raise UsageError(f"invalid kernel spec {text!r}", hint=f"valid forms:\n{SPEC_FORMS}")
    if name not in registry.SOURCES:
        raise UsageError(f"unknown kernel source {name!r} in {text!r}; known: {', '.join(registry.SOURCES)}",
                         hint=f"valid forms:\n{SPEC_FORMS}")
    return registry.SOURCES[name].parse(text)


def with_arch(text: str, arch: Optional[str]) -> str:
    """The spec ``text`` for architecture ``arch`` (``--arch``; None: as written), in its one
    written form: the results directory, the matrix's rows and result.json name it so."""
    kspec = parse_spec(text)
    if arch is None:
        return str(kspec)
    return str(registry.of(kspec).for_arch(text.strip(), arches.get(arch)))

"""Kernel specs: what the user typed, checked and parsed. No I/O but the ``local:`` path check."""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path
from typing import Optional

from harness import arches, resources
from harness.errors import UsageError
from harness.model import KernelSpec

SPEC_FORMS = (
    "debian:SUITE            the suite's current kernel, e.g. debian:bookworm\n"
    "debian:SUITE@ABI        a pinned kernel ABI, e.g. debian:bookworm@6.1.0-56\n"
    "debian:SUITE[@ABI]:ARCH another architecture's kernel (or --arch), e.g. debian:bookworm:arm64,\n"
    "                        under TCG with qemu-user for its root and module build\n"
    "debian-src:SUITE+FLAV   built here from the suite's linux-source with vm/configs/FLAV.config,\n"
    "                        e.g. debian-src:trixie+kasan (KASAN, kmemleak, lockdep, UBSAN);\n"
    "                        several join: debian-src:trixie+kunit+gcov (KUnit and coverage)\n"
    "local:PATH              a kernel tree you built (make, or vng --build), booted with a\n"
    "                        Debian bookworm root; the module is built against the tree"
)
DEFAULT_KERNEL = "debian:bookworm"
# The guest root under a local: kernel (the tree brings the kernel, the root userspace).
LOCAL_ROOT_SUITE = "bookworm"

# Suites the harness knows: the archive suites each one's root is made from.
# Security fixes for a release land in SUITE-security, point updates in -updates.
SUITES: dict[str, tuple[str, ...]] = {
    "bullseye": ("bullseye", "bullseye-updates", "bullseye-security"),
    "bookworm": ("bookworm", "bookworm-updates", "bookworm-security"),
    "trixie": ("trixie", "trixie-updates", "trixie-security"),
    "sid": ("sid",),
    "experimental": ("sid", "experimental"),
}
# experimental is NotAutomatic: apt would pick sid's kernel unless told to prefer it.
DEFAULT_RELEASE = {"experimental": "experimental"}

_SPEC = re.compile(r"^(?P<source>[a-z][a-z0-9-]*):(?P<suite>[a-z][a-z0-9-]*)(?:@(?P<pin>[0-9][0-9A-Za-z.+~-]*))?"
                   r"(?::(?P<arch>[a-z0-9]+))?$")
_FLAVOUR = r"[a-z0-9][a-z0-9_-]*"
_SRC_SPEC = re.compile(rf"^debian-src:(?P<suite>[a-z][a-z0-9-]*)\+(?P<flavour>{_FLAVOUR}(?:\+{_FLAVOUR})*)$")


MAX_SPEC = 1024


def parse_spec(text: str) -> KernelSpec:
    text = text.strip()
    if len(text) > MAX_SPEC or any(ord(c) < 32 for c in text):
        shown = text[:60].encode("unicode_escape").decode() + ("..." if len(text) > 60 else "")
        raise UsageError(f"invalid kernel spec {shown!r} ({len(text)} characters): a spec is one short line",
                         hint=f"valid forms:\n{SPEC_FORMS}")
    if text.startswith("local:"):
        return _parse_local(text)
    if text.startswith("debian-src:"):
        return _parse_source(text)
    m = _SPEC.match(text)
    if not m:
        raise UsageError(f"invalid kernel spec {text!r}", hint=f"valid forms:\n{SPEC_FORMS}")
    if m["source"] != "debian":
        raise UsageError(f"unknown kernel source {m['source']!r} in {text!r}", hint=f"valid forms:\n{SPEC_FORMS}")
    _check_suite(m["suite"], text)
    arch = arches.get(m["arch"], f"architecture in {text!r}:").name if m["arch"] else arches.host().name
    return KernelSpec(source=m["source"], suite=m["suite"], pin=m["pin"], arch=arch)


def with_arch(text: str, arch: Optional[str]) -> str:
    """The spec ``text`` for architecture ``arch`` (``--arch``; None: as written), in its one
    written form: the results directory, the matrix's rows and result.json name it so."""
    kspec = parse_spec(text)
    if arch is None:
        return str(kspec)
    want = arches.get(arch).name
    if kspec.source != "debian" and want != arches.host().name:
        raise UsageError(f"--arch {arch} with {text!r}: only debian: kernels come for other architectures",
                         hint=f"use debian:SUITE with --arch {arch}")
    explicit = _SPEC.match(text.strip())
    if explicit and explicit["arch"] and kspec.arch != want:
        raise UsageError(f"{text!r} names {kspec.arch}, --arch {arch}: give one of them")
    return str(replace(kspec, arch=want))


def _parse_source(text: str) -> KernelSpec:
    m = _SRC_SPEC.match(text)
    if not m:
        raise UsageError(f"invalid kernel spec {text!r}", hint=f"valid forms:\n{SPEC_FORMS}")
    _check_suite(m["suite"], text)
    known = resources.flavours()
    parts = m["flavour"].split("+")
    for part in parts:
        if part not in known:
            raise UsageError(f"unknown kernel flavour {part!r} in {text!r}: no vm/configs/"
                             f"{part}.config; known flavours: {', '.join(known) or 'none'}")
    if len(set(parts)) != len(parts):
        raise UsageError(f"{text!r} names a flavour twice", hint="name each flavour once, e.g. +kunit+gcov")
    return KernelSpec(source="debian-src", suite=m["suite"], flavour=m["flavour"])


def _check_suite(suite: str, text: str) -> None:
    if suite not in SUITES:
        raise UsageError(f"unknown Debian suite {suite!r} in {text!r}; known suites: {', '.join(SUITES)}")


def _parse_local(text: str) -> KernelSpec:
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
    return KernelSpec(source="local", suite=LOCAL_ROOT_SUITE, path=str(path.resolve()))

"""The Debian suites the harness knows, and the archive suites each one's root is made from.

Security fixes for a release land in SUITE-security, point updates in SUITE-updates. Every
kernel source names a suite: the Debian archive's and its source packages' own, and for a
kernel tree the suite of the guest root it boots with.
"""

from __future__ import annotations

from harness.errors import UsageError

SUITES: dict[str, tuple[str, ...]] = {
    "bullseye": ("bullseye", "bullseye-updates", "bullseye-security"),
    "bookworm": ("bookworm", "bookworm-updates", "bookworm-security"),
    "trixie": ("trixie", "trixie-updates", "trixie-security"),
    "sid": ("sid",),
    "experimental": ("sid", "experimental"),
}
# experimental is NotAutomatic: apt would pick sid's kernel unless told to prefer it.
DEFAULT_RELEASE = {"experimental": "experimental"}


def check_suite(suite: str, text: str) -> None:
    if suite not in SUITES:
        raise UsageError(f"unknown Debian suite {suite!r} in {text!r}; known suites: {', '.join(SUITES)}")

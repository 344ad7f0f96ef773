"""bubblewrap around host-side builds: read-only system, one writable directory, no network."""

from __future__ import annotations

from pathlib import Path


def sandbox_argv(bwrap: str, system: list[str], writable: Path, inside: str, tmp: str) -> list[str]:
    """bubblewrap around a build: ``system`` as the file system, ``writable`` bound at
    ``inside`` (the working directory) and nothing else writable, no network, a clean
    environment."""
    return [
        bwrap, *system, "--proc", "/proc", "--dev", "/dev",
        "--bind", str(writable), inside, "--chdir", inside,
        "--unshare-all", "--die-with-parent", "--clearenv",
        "--setenv", "PATH", "/usr/sbin:/usr/bin:/sbin:/bin", "--setenv", "HOME", tmp, "--setenv", "TMPDIR", tmp,
        "--setenv", "LC_ALL", "C",
    ]

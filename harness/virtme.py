"""virtme-ng as a program on the host: where it is, and the environment it runs in. Base: both the
guests (guest/vng.py) and kernel builds (kernel/trees.py, `vng --build`) run it."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path
from typing import Optional

from harness.errors import InfraError


def find_vng() -> str:
    """vng from the harness's own environment first (a venv is not always on PATH)."""
    here = Path(sys.executable).parent / "vng"
    if here.exists():
        return str(here)
    found = shutil.which("vng")
    if not found:
        raise InfraError("virtme-ng (vng) not found", hint="pip install virtme-ng (`make setup` does it)")
    return found


def vng_env(home: Optional[Path] = None) -> dict[str, str]:
    """vng runs ``virtme-run`` by name: put the harness's bin dir first on PATH.

    ``home`` replaces HOME: virtme-ng keeps its SSH keys under $HOME/.cache/virtme-ng.
    """
    env = dict(os.environ)
    if home is not None:
        env["HOME"] = str(home)
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    return env

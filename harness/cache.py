"""The harness's cache directory, and the facts every cache entry records about itself."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any, Optional


def cache_dir() -> Path:
    """``$HARNESS_CACHE``, else ``$XDG_CACHE_HOME/kmod-harness``, else ``~/.cache/kmod-harness``."""
    base = os.environ.get("HARNESS_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "kmod-harness"
    )
    return Path(base)


def read_manifest(path: Path) -> tuple[Optional[dict[str, Any]], Optional[str]]:
    """A cache entry's manifest, or why there is none to trust."""
    if not path.is_file():
        return None, "no manifest (an interrupted or foreign build)"
    try:
        data = json.loads(path.read_text())
    except ValueError:
        return None, "manifest is not valid JSON"
    if not isinstance(data, dict):
        return None, "manifest is not a JSON object"
    return data, None


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def disk_usage(path: Path) -> int:
    """Bytes a directory tree takes on disk (du), not following links."""
    total = 0
    for dirpath, _dirs, filenames in os.walk(path):
        for name in filenames:
            try:
                total += os.lstat(os.path.join(dirpath, name)).st_blocks * 512
            except OSError:
                pass
    return total

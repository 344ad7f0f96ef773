"""The harness's cache directory, and the facts every cache entry records about itself."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any, Optional

from harness.errors import UsageError


def cache_dir() -> Path:
    """``$HARNESS_CACHE``, else ``$XDG_CACHE_HOME/kmod-harness``, else ``~/.cache/kmod-harness``."""
    base = os.environ.get("HARNESS_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "kmod-harness"
    )
    return Path(base)


def usable_cache(path: Optional[Path] = None) -> Path:
    """The cache directory (``cache_dir()`` unless given), made if missing, checked writable: a
    usage error naming the variable otherwise (a plain file, a read-only directory)."""
    path = path or cache_dir()
    what = "HARNESS_CACHE" if os.environ.get("HARNESS_CACHE") else "the cache directory"
    if path.exists() and not path.is_dir():
        raise UsageError(f"{what} {path} is not a directory",
                         hint="point HARNESS_CACHE at a directory the harness may fill (roots take ~1 GB each)")
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / f".write-test-{os.getpid()}"
        probe.write_text("")
        probe.unlink()
    except OSError as e:
        raise UsageError(f"{what} {path} cannot be written: {e.strerror or e}",
                         hint="point HARNESS_CACHE at a directory you can write to") from None
    return path


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

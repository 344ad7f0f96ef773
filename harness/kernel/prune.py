"""Cached roots the harness will not use again (``harness kernels prune --stale``), and deleting one."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Optional

from harness.cache import read_manifest
from harness.kernel.roots import MANIFEST, ROOT_FORMAT
from harness.locks import locked, remove_tree

UNFINISHED_AGE = 6 * 3600  # a .tmp-* entry older than this belongs to no running build


def stale_roots(roots: Path, now: Optional[float] = None) -> list[tuple[Path, str]]:
    """Roots this harness would never use again, each with the reason.

    Made with another root format; no manifest (a foreign or broken entry); a
    leftover of an interrupted build (``.tmp-*``, older than UNFINISHED_AGE); or
    superseded: for each kernel (the key without its hash), every root but the one
    used last. Use is read from the entry's lock file, which every run rewrites
    when it takes the lock.
    """
    now = time.time() if now is None else now
    out: list[tuple[Path, str]] = []
    current: dict[str, list[Path]] = {}
    for d in sorted(roots.iterdir()) if roots.is_dir() else []:
        if not d.is_dir():
            continue
        if d.name.startswith(".tmp-"):
            if now - d.stat().st_mtime > UNFINISHED_AGE:
                out.append((d, "left by an interrupted build"))
            continue
        manifest, problem = read_manifest(d / MANIFEST)
        if manifest is None:
            out.append((d, problem or "no manifest"))
        elif manifest.get("format") != ROOT_FORMAT:
            out.append((d, f"made with root format {manifest.get('format')}; this harness makes {ROOT_FORMAT}"))
        else:
            current.setdefault(d.name.rsplit("-", 1)[0], []).append(d)
    for entries in current.values():
        entries.sort(key=lambda d: _last_used(roots, d), reverse=True)
        out += [(d, f"superseded by {entries[0].name} (used later)") for d in entries[1:]]
    return out


def _last_used(roots: Path, d: Path) -> float:
    lock = roots / f"{d.name}.lock"
    return lock.stat().st_mtime if lock.exists() else (d / MANIFEST).stat().st_mtime


def remove_root(d: Path) -> list[str]:
    """Delete a root with its log and lock (under its lock, so no run is making it meanwhile);
    returns what could not be deleted (see locks.remove_tree: mounts are undone, never entered)."""
    key = d.name[len(".tmp-"):].rsplit("-", 1)[0] if d.name.startswith(".tmp-") else d.name  # .tmp-KEY-XXXX
    lock = d.parent / f"{key}.lock"
    with locked(lock):
        left = remove_tree(d)
        if not d.name.startswith(".tmp-"):
            (d.parent / f"{d.name}.log").unlink(missing_ok=True)
    if not d.name.startswith(".tmp-"):
        lock.unlink(missing_ok=True)
    return left

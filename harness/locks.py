"""Never two at once, never half-made: locks on cache entries, and atomic files and directories."""

from __future__ import annotations

import fcntl
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator


@contextmanager
def locked(path: Path) -> Iterator[None]:
    """Hold an exclusive flock on ``path`` (created with its directory) for the block."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


@contextmanager
def atomic_dir(dest: Path) -> Iterator[Path]:
    """A temporary directory beside ``dest``, renamed to ``dest`` when the block succeeds and
    removed when it raises: ``dest`` is either whole or absent. The temporary name starts
    with ``.tmp-`` (``kernels prune --stale`` recognises leftovers of a killed harness)."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{dest.name}-", dir=dest.parent))
    try:
        yield tmp
        os.rename(tmp, dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def write_atomic(path: Path, text: str) -> None:
    """Write a whole file or nothing: a temp file beside it, renamed into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; reports are for everyone who can read the results dir
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def mounts_under(path: Path) -> list[Path]:
    """Mount points at or below ``path`` (from /proc/self/mountinfo), deepest first."""
    base = os.path.realpath(path)
    found: list[Path] = []
    try:
        with open("/proc/self/mountinfo") as f:
            for line in f:
                point = line.split()[4].encode().decode("unicode_escape")
                if point == base or point.startswith(base + "/"):
                    found.append(Path(point))
    except OSError:
        pass
    return sorted(found, key=lambda p: len(p.parts), reverse=True)


def remove_tree(path: Path) -> list[str]:
    """Delete a directory tree of the harness's own (a root, a leftover of a killed run) safely:
    whatever is mounted in it is unmounted first (lazily), and the walk never crosses into another
    filesystem, so a mount that could not be undone is left alone, not emptied. Returns what was
    left, each with why (nothing: all gone)."""
    import subprocess

    left: list[str] = []
    for point in mounts_under(path):
        res = subprocess.run(["umount", "-l", str(point)], capture_output=True, text=True)
        if res.returncode != 0:
            left.append(f"{point}: still mounted ({res.stderr.strip() or 'umount failed'})")
    try:
        dev = os.lstat(path).st_dev
    except FileNotFoundError:
        return left
    _remove_within(str(path), dev, left)
    return left


def _remove_within(d: str, dev: int, left: list[str]) -> None:
    try:
        entries = list(os.scandir(d))
    except OSError as err:
        left.append(f"{d}: {err.strerror}")
        return
    for entry in entries:
        try:
            st = entry.stat(follow_symlinks=False)
            if entry.is_dir(follow_symlinks=False):
                if st.st_dev != dev:
                    left.append(f"{entry.path}: another filesystem, not entered")
                    continue
                _remove_within(entry.path, dev, left)
            else:
                os.unlink(entry.path)
        except OSError as err:
            left.append(f"{entry.path}: {err.strerror}")
    try:
        os.rmdir(d)
    except OSError as err:
        if not any(x.startswith(d) for x in left):
            left.append(f"{d}: {err.strerror}")

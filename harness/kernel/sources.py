"""What a module is built from: the files of its source directory, and only those.

The build input is the module's sources: not the results a run writes (``harness init``'s
layout puts ./results inside ``source = "."``), not the project's own description and trail
files, not build products. Nothing outside the project is read: a symbolic link that resolves
inside the project is followed, one that leaves it is an error naming the link, and only
regular files and directories are taken (a FIFO would block the copy, a device node would
copy without end).
"""

from __future__ import annotations

import os
import re
import shutil
import stat
from pathlib import Path
from typing import Sequence

from harness.errors import UsageError

# Build products in a source tree: never part of the build input (a fresh build makes them).
BUILD_PRODUCT_RE = re.compile(r"(\.o|\.ko|\.mod|\.mod\.c|\.a|^Module\.symvers|^modules\.order|^\..*\.cmd)$")
BUILD_PRODUCT_DIRS = (".tmp_versions",)
MAX_BYTES = 1 << 30  # a module's sources; more is a wrong source directory


def source_files(source: Path, within: Path, exclude: Sequence[Path] = ()) -> list[tuple[str, Path]]:
    """Every file of the build input: (path relative to ``source``, the file to read), sorted.
    ``within``: the project directory nothing may leave; ``exclude``: paths (files or directories)
    that are not build input."""
    base = within.resolve()
    skip = {p.resolve() for p in exclude}
    out: list[tuple[str, Path]] = []
    total = 0
    stack: list[tuple[Path, str]] = [(source.resolve(), "")]
    seen: set[Path] = set()
    while stack:
        real_dir, rel_dir = stack.pop()
        if real_dir in seen:
            continue  # a link back up the tree: its files are taken once
        seen.add(real_dir)
        for entry in sorted(os.scandir(real_dir), key=lambda e: e.name):
            rel = f"{rel_dir}{entry.name}"
            path = Path(entry.path)
            if path in skip or BUILD_PRODUCT_RE.search(entry.name) or entry.name in BUILD_PRODUCT_DIRS:
                continue
            real = _contained(path, base, rel)
            if real in skip:
                continue
            mode = os.stat(real).st_mode
            if stat.S_ISDIR(mode):
                stack.append((real, rel + "/"))
            elif stat.S_ISREG(mode):
                total += os.stat(real).st_size
                if total > MAX_BYTES:
                    raise UsageError(f"the module's sources {source} hold over {MAX_BYTES >> 30} GiB",
                                     hint="[module] source names the directory of the module's sources only")
                out.append((rel, real))
            else:
                kind = ("a FIFO" if stat.S_ISFIFO(mode) else "a socket" if stat.S_ISSOCK(mode)
                        else "a device node" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) else "not a regular file")
                raise UsageError(f"{path} in the module's sources is {kind}",
                                 hint="the build input is regular files and directories only: remove it or move "
                                 "it out of the source directory")
    return sorted(out)


def _contained(path: Path, base: Path, rel: str) -> Path:
    """``path`` with its links resolved; an error when that leaves the project directory."""
    try:
        real = path.resolve(strict=True)
    except (OSError, RuntimeError) as e:
        raise UsageError(f"{path} in the module's sources cannot be read: {getattr(e, 'strerror', None) or e}",
                         hint="a broken or looping symbolic link? remove it or point it inside the project") from None
    if real != base and base not in real.parents:
        raise UsageError(f"{path} in the module's sources leads out of the project, to {real}",
                         hint="the build reads nothing outside the project directory: copy what it needs in")
    return real


def copy_sources(files: Sequence[tuple[str, Path]], dest: Path) -> None:
    """The build input into ``dest`` (the user's tree is never written), links replaced by what
    they point at."""
    dest.mkdir(parents=True, exist_ok=True)
    for rel, real in files:
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(real, target)

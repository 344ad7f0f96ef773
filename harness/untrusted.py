"""Files from other machines (results directories, history entries, baselines): read and copied as
hostile input. A file too large, not UTF-8, not JSON or nested past reason is a ``ValueError``
naming it; symbolic links are never followed, and never copied."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any, Iterator

from harness.verdict.fanin import clean

MAX_JSON_BYTES = 64 << 20  # a result.json with every kmsg record of a long run is a few MB
MAX_DEPTH = 6  # how deep results directories are searched (an artifact download adds two levels)


def read_json(path: Path) -> Any:
    """The JSON document in ``path``, its strings without control characters."""
    if path.is_symlink() or not path.is_file():
        raise ValueError(f"{path}: not a regular file")
    size = path.stat().st_size
    if size > MAX_JSON_BYTES:
        raise ValueError(f"{path}: {size} bytes, more than a kmod-harness report holds ({MAX_JSON_BYTES})")
    try:
        return clean(json.loads(path.read_bytes().decode("utf-8")))
    except UnicodeDecodeError as e:
        raise ValueError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start})") from None
    except RecursionError:
        raise ValueError(f"{path}: JSON nested too deeply") from None
    except ValueError as e:
        raise ValueError(f"{path}: not JSON ({e})") from None
    except OSError as e:
        raise ValueError(f"{path}: cannot be read ({e.strerror or e})") from None


def walk(top: Path, skip: frozenset[str], avoid: Path) -> Iterator[Path]:
    """Directories under ``top`` (itself first), sorted, no deeper than MAX_DEPTH, not through
    symbolic links, not into ``skip`` names nor into ``avoid`` (the report's own output)."""
    avoid = avoid.resolve()
    for here, dirs, _ in os.walk(top, followlinks=False):
        path = Path(here)
        depth = len(path.relative_to(top).parts)
        dirs[:] = sorted(d for d in dirs if d not in skip and depth < MAX_DEPTH
                         and not (path / d).is_symlink() and (path / d).resolve() != avoid)
        yield path


def copy_tree(src: Path, dest: Path, skip: frozenset[str] = frozenset(), depth: int = 0) -> None:
    """Regular files and directories of ``src`` into ``dest``; links, devices and whatever lies
    deeper than 20 levels are left out."""
    if src.resolve() == dest.resolve() or depth > 20:
        return
    dest.mkdir(parents=True, exist_ok=True)
    for entry in sorted(src.iterdir()):
        if entry.is_symlink() or entry.name in skip:
            continue
        if entry.is_dir():
            copy_tree(entry, dest / entry.name, skip, depth + 1)
        elif entry.is_file():
            shutil.copyfile(entry, dest / entry.name)

"""``--history DIR``: every report's matrix.json kept, by date and commit, as plain files.

    DIR/kmod-harness-history.json     what this directory is (so no other directory is written into)
    DIR/runs/<date>-<commit>.json     one report's matrix.json, with its run: commit, date, ref, url, ok

Plain JSON files, one a run, rather than a SQLite file: the directory is meant to live in a git
branch or travel as a CI artifact, where text files diff, merge and stay readable by anyone; a
history of a few hundred runs is read whole in milliseconds, so an index would buy nothing.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from harness.errors import UsageError
from harness.locks import write_atomic
from harness.untrusted import read_json
from harness.verdict import history

MARKER = "kmod-harness-history.json"
RUNS = "runs"
KEEP = 500  # entries kept; older ones are dropped as new ones come


def is_store(path: Path) -> bool:
    return (path / MARKER).is_file()


def prepare(path: Path) -> None:
    """Make ``path`` a history directory, or say why it cannot be one (exit 2)."""
    if path.exists() and not path.is_dir():
        raise UsageError(f"--history {path}: not a directory")
    if path.is_dir() and not is_store(path) and any(path.iterdir()):
        raise UsageError(f"--history {path}: a directory that is not a kmod-harness history (no {MARKER})",
                         hint="give an empty or new directory, or one an earlier `harness report --history` made")
    try:
        (path / RUNS).mkdir(parents=True, exist_ok=True)
        if not is_store(path):
            write_atomic(path / MARKER, json.dumps({"schema": "kmod-harness/history/v1", "runs": RUNS}) + "\n")
    except OSError as e:
        raise UsageError(f"--history {path}: cannot write there ({e.strerror or e})") from None


def load(path: Path) -> tuple[list[history.Entry], list[str]]:
    """The entries of a history directory, oldest first, and a line for each file that was not one."""
    entries, problems = [], []
    runs = path / RUNS
    files = sorted(runs.glob("*.json")) if runs.is_dir() and not runs.is_symlink() else []
    for f in files:
        try:
            entries.append(history.entry_from_json(read_json(f)))
        except ValueError as e:
            problems.append(f"history entry {f.name} left out: {e}")
    return history.ordered(entries), problems


def entry_name(e: history.Entry) -> str:
    stamp = re.sub(r"[^0-9T]", "", e.date[:19]) or "undated"
    return f"{stamp}-{re.sub(r'[^A-Za-z0-9]', '', e.commit)[:12] or 'unknown'}.json"


def add(path: Path, matrix_json: str, e: history.Entry) -> Path:
    """Keep one report's matrix.json (it holds ``run``); drop the oldest beyond KEEP."""
    dest = path / RUNS / entry_name(e)
    write_atomic(dest, matrix_json)
    kept = sorted((path / RUNS).glob("*.json"))
    for old in kept[:-KEEP]:
        old.unlink()
    return dest

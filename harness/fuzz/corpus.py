"""The corpus: inputs that reached module code nothing before them had, kept in the project.

One JSON file per input, named by a hash of what it holds, so adding is idempotent and
two runs (or two kernels) adding the same input write the same file::

    {"target": "netlink:30", "op": "send", "cmd": 0, "data": "<base64>"}

An input names its target by its declaration (``netlink:30``, ``chardev:/dev/x``,
``file:/proc/x``), not by position: the corpus outlives edits to ``[fuzz]``, and inputs
of a target no longer declared are left alone. Nothing in it depends on a kernel: a
corpus grown on one kernel seeds the runs on every other.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any, Sequence

from harness.errors import UsageError
from harness.locks import write_atomic

DEFAULT_DIR = "fuzz/corpus"  # under the project's directory, then the module's name


def default_dir(project_root: Path, module: str) -> Path:
    return project_root / DEFAULT_DIR / module


def name_of(entry: dict[str, Any]) -> str:
    blob = json.dumps([entry["target"], entry["op"], entry.get("cmd", 0), entry["data"]]).encode()
    return hashlib.sha256(blob).hexdigest()[:16] + ".json"


class Corpus:
    def __init__(self, path: Path):
        self.path = path

    def check_writable(self) -> None:
        """A corpus directory that could not be made or written is a usage error, found without
        making anything (bad input leaves nothing behind)."""
        at = self.path
        while not at.exists() and at != at.parent:
            at = at.parent
        if not at.is_dir() or not os.access(at, os.W_OK | os.X_OK):
            what = "is not a directory" if at == self.path else f"cannot be made: {at} is not a writable directory"
            raise UsageError(f"corpus {self.path} {what}", hint="give --corpus a directory you can write to")

    def make(self) -> None:
        try:
            self.path.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise UsageError(f"cannot keep the corpus in {self.path}: {e.strerror or e}",
                             hint="give --corpus a directory you can write to") from None

    def entries(self) -> list[dict[str, Any]]:
        out = []
        for p in sorted(self.path.glob("*.json")) if self.path.is_dir() else []:
            try:
                d = json.loads(p.read_text())
            except ValueError:
                continue  # a file of something else: not ours to judge
            if isinstance(d, dict) and {"target", "op", "data"} <= set(d):
                out.append(d)
        return out

    def seeds(self, targets: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
        """The entries of the declared targets, as the fuzz plan's inputs (target by index)."""
        index = {t["key"]: i for i, t in enumerate(targets)}
        return [{"t": index[e["target"]], "op": e["op"], "cmd": int(e.get("cmd", 0)), "data": e["data"]}
                for e in self.entries() if e["target"] in index]

    def add(self, target_key: str, encoded: dict[str, Any]) -> bool:
        """Keep an input (as the guest encoded it); False when it was there already."""
        entry = {"target": target_key, "op": encoded["op"], "cmd": int(encoded.get("cmd", 0)),
                 "data": encoded["data"]}
        path = self.path / name_of(entry)
        if path.exists():
            return False
        self.path.mkdir(parents=True, exist_ok=True)
        write_atomic(path, json.dumps(entry) + "\n")
        return True

    def size(self) -> int:
        return len(list(self.path.glob("*.json"))) if self.path.is_dir() else 0

"""Log files that stop growing: a guest that prints without end must not fill the disk."""

from __future__ import annotations

from collections import deque
from pathlib import Path
from typing import IO


class CappedLog:
    """A log file that stops growing: the first ``head`` characters as they come, then only
    the last ``tail``, written after a line saying how much was left out, when the log is
    closed. A guest printing without end would otherwise fill the disk until its timeout;
    the head holds the first report, the tail the end (a panic, the last records)."""

    def __init__(self, path: Path, head: int, tail: int):
        self.path, self.head, self.tail = path, head, tail
        self._f: IO[str] = open(path, "w")
        self._written = 0
        self._capped = False
        self._tail: deque[str] = deque()
        self._tail_len = 0
        self._dropped = 0

    def write(self, text: str) -> int:
        if not self._capped and self._written + len(text) <= self.head:
            self._f.write(text)
            self._written += len(text)
            return len(text)
        if not self._capped:
            self._capped = True
            self._f.write(f"\n[kmod-harness: {self.path.name} reached {self.head} characters; what follows"
                          f" is kept only as its last {self.tail}, written when the log is closed]\n")
            self._f.flush()
        self._tail.append(text)
        self._tail_len += len(text)
        while self._tail_len > self.tail and len(self._tail) > 1:
            gone = self._tail.popleft()
            self._tail_len -= len(gone)
            self._dropped += len(gone)
        return len(text)

    def flush(self) -> None:
        self._f.flush()

    @property
    def dropped(self) -> int:
        """Characters left out of the file (so far)."""
        return self._dropped

    def close(self) -> None:
        if self._f.closed:
            return
        if self._capped:
            self._f.write(f"[kmod-harness: {self._dropped} characters left out here]\n")
            self._f.write("".join(self._tail))
        self._f.close()

    def __enter__(self) -> "CappedLog":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

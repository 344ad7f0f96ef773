"""Human progress output: phases with durations, a heartbeat on long steps.

Output is injectable (tests pass a StringIO); colour only on a TTY.
"""

from __future__ import annotations

import sys
import threading
import time
from contextlib import contextmanager
from typing import IO, Iterator, Optional

from harness.model import Verdict

_COLOURS = {"pass": "32", "fail": "31", "crash": "31;1", "timeout": "33", "infra": "35",
            "error": "35", "interrupted": "33"}


class PhaseMark:
    """Set ``ok = False`` inside a phase that failed without raising."""

    ok = True


class Printer:
    def __init__(self, output: Optional[IO[str]] = None, verbose: bool = False, heartbeat: float = 10.0):
        self.out = output or sys.stderr
        self.verbose = verbose
        self.heartbeat = heartbeat
        self.tty = hasattr(self.out, "isatty") and self.out.isatty()
        self._lock = threading.Lock()
        self._status = ""

    def line(self, text: str) -> None:
        with self._lock:
            self.out.write(text + "\n")
            self.out.flush()

    def detail(self, text: str) -> None:
        if self.verbose:
            self.line("    " + text)

    def status(self, text: str) -> None:
        """Latest line of a long step, shown by the heartbeat."""
        self._status = text

    @contextmanager
    def phase(self, name: str, what: str = "") -> Iterator["PhaseMark"]:
        self.line(f"==> {name}" + (f": {what}" if what else ""))
        t0 = time.monotonic()
        self._status = ""
        stop = threading.Event()

        def beat() -> None:
            while not stop.wait(self.heartbeat):
                extra = f"  {self._status[:100]}" if self._status else ""
                self.line(f"    ... {name} {time.monotonic() - t0:.0f}s{extra}")

        t = threading.Thread(target=beat, daemon=True)
        t.start()
        status = PhaseMark()
        ok = False
        try:
            yield status
            ok = status.ok
        finally:
            stop.set()
            t.join()
            mark = "ok" if ok else "FAILED"
            self.line(f"    {name} {mark} in {time.monotonic() - t0:.1f}s")

    def verdict(self, verdict: Verdict, reason: str) -> None:
        word = verdict.value.upper()
        if self.tty:
            word = f"\033[{_COLOURS[verdict.value]}m{word}\033[0m"
        self.line(f"verdict: {word}" + (f" ({reason})" if reason else ""))

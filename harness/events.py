"""Typed progress events, and the terminal printer that subscribes to them.

Phases, guest steps and the console emit events into a sink (any callable taking
an ``Event``); front ends subscribe: the terminal printer below, the matrix's
live table, a run's own ``harness.log``, the pytest plugin. Nothing reads
progress back from printed text.
"""

from __future__ import annotations

import sys
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from typing import IO, Callable, Iterator, Optional, Union

from harness.model import Phase, Verdict


@dataclass(frozen=True)
class PhaseStarted:
    name: str
    what: str = ""


@dataclass(frozen=True)
class PhaseEnded:
    phase: Phase


@dataclass(frozen=True)
class Progress:
    """The latest line of a long step (mmdebstrap, a kernel build, the console): shown by the heartbeat."""

    text: str


@dataclass(frozen=True)
class Note:
    """A line for the user; ``verbose`` ones only with ``-v``."""

    text: str
    verbose: bool = False


@dataclass(frozen=True)
class GuestStep:
    """A guest step started."""

    name: str


@dataclass(frozen=True)
class ConsoleLine:
    text: str


@dataclass(frozen=True)
class Finished:
    verdict: Verdict
    reason: str


Event = Union[PhaseStarted, PhaseEnded, Progress, Note, GuestStep, ConsoleLine, Finished]
Sink = Callable[[Event], None]


def fanout(*sinks: Sink) -> Sink:
    def emit(event: Event) -> None:
        for s in sinks:
            s(event)
    return emit


def discard(_event: Event) -> None:
    pass


class PhaseMark:
    """Set ``ok = False`` (and a ``detail``) inside a phase that failed without raising."""

    def __init__(self) -> None:
        self.ok = True
        self.detail = ""


@contextmanager
def phase(sink: Sink, done: list[Phase], name: str, what: str = "") -> Iterator[PhaseMark]:
    """Time a phase: PhaseStarted, then PhaseEnded with its Phase, which is also appended to ``done``."""
    sink(PhaseStarted(name, what))
    mark = PhaseMark()
    t0 = time.monotonic()
    try:
        yield mark
    except BaseException as e:
        mark.ok, mark.detail = False, mark.detail or str(e) or type(e).__name__
        raise
    finally:
        ended = Phase(name, round(time.monotonic() - t0, 3), mark.ok, mark.detail)
        done.append(ended)
        sink(PhaseEnded(ended))


_COLOURS = {"pass": "32", "fail": "31", "crash": "31;1", "timeout": "33", "infra": "35",
            "error": "35", "interrupted": "33"}


class Printer:
    """Subscriber that writes events for people: phases with durations, a heartbeat with the
    latest progress line on long phases, the verdict. Output is injectable; colour only on a TTY."""

    def __init__(self, output: Optional[IO[str]] = None, verbose: bool = False, heartbeat: float = 10.0,
                 console: Optional[bool] = None):
        self.out = output or sys.stderr
        self.verbose = verbose
        self.console = verbose if console is None else console  # show the kernel console line by line
        self.heartbeat = heartbeat
        self.tty = hasattr(self.out, "isatty") and self.out.isatty()
        self._lock = threading.Lock()
        self._status = ""
        self._beat: Optional[tuple[threading.Event, threading.Thread]] = None

    def line(self, text: str) -> None:
        with self._lock:
            self.out.write(text + "\n")
            self.out.flush()

    def __call__(self, event: Event) -> None:
        if isinstance(event, PhaseStarted):
            self.line(f"==> {event.name}" + (f": {event.what}" if event.what else ""))
            self._start_beat(event.name)
        elif isinstance(event, PhaseEnded):
            self._stop_beat()
            p = event.phase
            self.line(f"    {p.name} {'ok' if p.ok else 'FAILED'} in {p.seconds:.1f}s")
        elif isinstance(event, (Progress, ConsoleLine)):
            self._status = event.text
            if isinstance(event, ConsoleLine) and self.console:
                self.line("    " + event.text)
        elif isinstance(event, GuestStep):
            self._status = f"guest step {event.name}"
        elif isinstance(event, Note):
            if self.verbose or not event.verbose:
                self.line(("    " if event.verbose else "") + event.text)
        elif isinstance(event, Finished):
            self.verdict(event.verdict, event.reason)

    def _start_beat(self, name: str) -> None:
        self._stop_beat()
        self._status = ""
        stop, t0 = threading.Event(), time.monotonic()

        def beat() -> None:
            while not stop.wait(self.heartbeat):
                extra = f"  {self._status[:100]}" if self._status else ""
                self.line(f"    ... {name} {time.monotonic() - t0:.0f}s{extra}")

        t = threading.Thread(target=beat, daemon=True)
        t.start()
        self._beat = (stop, t)

    def _stop_beat(self) -> None:
        if self._beat is not None:
            stop, t = self._beat
            stop.set()
            t.join()
            self._beat = None

    def verdict(self, verdict: Verdict, reason: str) -> None:
        word = verdict.value.upper()
        if self.tty:
            word = f"\033[{_COLOURS[verdict.value]}m{word}\033[0m"
        self.line(f"verdict: {word}" + (f" ({reason})" if reason else ""))

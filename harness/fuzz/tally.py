"""What the fuzz guests' events said, folded as they arrive (pure: events in, state out).

One ``Tally`` lives for the whole ``harness fuzz``: guests come and go (each crash ends
one), the coverage, corpus additions and execution counts add up. ``Guest`` is one
guest's part: the last input it announced (the suspect when it dies), how it ended.
"""

from __future__ import annotations

import json
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable, Deque, Optional

from harness import contract
from harness.guest import fuzzer

RECENT = 8  # inputs kept per guest: the last one is the suspect, the ones before it its context


def decode_line(line: str, run_id: str) -> Optional[dict[str, Any]]:
    """A fuzz event carried by a channel line of the run ``run_id``, or None."""
    start = line.find(contract.PREFIX)
    if start < 0:
        return None
    try:
        d = json.loads(line[start + len(contract.PREFIX):])
    except ValueError:
        return None
    if not isinstance(d, dict) or d.get("event") not in fuzzer.EVENTS or d.get("run") != run_id:
        return None
    return d


@dataclass
class Guest:
    """One fuzz guest's events."""

    hello: Optional[dict[str, Any]] = None
    error: Optional[str] = None
    recent: Deque[tuple[int, dict[str, Any]]] = field(default_factory=lambda: deque(maxlen=RECENT))
    stats: dict[str, Any] = field(default_factory=dict)
    splat: Optional[dict[str, Any]] = None
    hang: Optional[int] = None
    done: Optional[dict[str, Any]] = None
    n: int = 0  # executions announced (comparison-tracing runs included)
    t_hello: Optional[float] = None  # when it started fuzzing, on the command's clock
    t_last: float = 0.0  # its last event

    @property
    def last(self) -> Optional[tuple[int, dict[str, Any]]]:
        return self.recent[-1] if self.recent else None

    @property
    def suspects(self) -> list[dict[str, Any]]:
        """The inputs a crash is blamed on: the one announced last, and those before it."""
        return [inp for _, inp in self.recent]

    def ended_alone(self) -> bool:
        """The guest said goodbye (duration over): no input of its killed it."""
        return self.done is not None and self.splat is None and self.hang is None


@dataclass
class Tally:
    clock: Callable[[], float]  # seconds since the command started
    targets: list[dict[str, Any]]
    first_seen: dict[tuple[str, int], float] = field(default_factory=dict)  # PC -> when it was first reached
    added: list[dict[str, Any]] = field(default_factory=list)  # corpus additions: {t, input, pcs}
    execs: int = 0  # over the guests that ended
    fuzz_seconds: float = 0.0  # time spent executing inputs in guests that ended (boots left out)
    samples: list[dict[str, Any]] = field(default_factory=list)  # {t, execs, pcs}: coverage over time
    guest: Guest = field(default_factory=Guest)
    on_new: Callable[[str, dict[str, Any]], None] = lambda key, inp: None  # a corpus addition (target key, input)

    def start_guest(self) -> Guest:
        self.guest = Guest()
        return self.guest

    def feed(self, ev: dict[str, Any]) -> None:
        kind, g = ev["event"], self.guest
        g.t_last = self.clock()
        if kind == fuzzer.HELLO:
            g.hello, g.t_hello = ev, g.t_last
        elif kind == fuzzer.ERROR:
            g.error = str(ev.get("error"))
        elif kind == fuzzer.EXEC:
            g.n = int(ev["n"])
            g.recent.append((g.n, ev["input"]))
        elif kind == fuzzer.NEW:
            self._new(ev)
        elif kind in (fuzzer.STATS, fuzzer.DONE):
            g.stats = {k: ev.get(k) for k in ("execs", "seconds", "corpus", "pcs")}
            self.samples.append({"t": round(self.clock(), 3), "execs": self.live_execs(), "pcs": len(self.first_seen)})
            if kind == fuzzer.DONE:
                g.done = ev
        elif kind == fuzzer.SPLAT:
            g.splat = ev
        elif kind == fuzzer.HANG:
            g.hang = int(ev["n"])

    def _new(self, ev: dict[str, Any]) -> None:
        now = round(self.clock(), 3)
        for sec, off in ev.get("pcs", []):
            self.first_seen.setdefault((str(sec), int(off)), now)
        inp = ev["input"]
        self.added.append({"t": now, "input": inp, "pcs": len(ev.get("pcs", []))})
        self.samples.append({"t": now, "execs": self.live_execs(), "pcs": len(self.first_seen)})
        t = int(inp["t"])
        if 0 <= t < len(self.targets):
            self.on_new(self.targets[t]["key"], inp)

    def live_execs(self) -> int:
        return self.execs + self.guest.n

    def end_guest(self) -> None:
        """Add the guest's executions and its time from its start to its last word to the totals."""
        g = self.guest
        self.execs += g.n
        if g.t_hello is not None:
            self.fuzz_seconds += max(0.0, g.t_last - g.t_hello)
        g.n, g.t_hello = 0, None
        self.samples.append({"t": round(self.clock(), 3), "execs": self.execs, "pcs": len(self.first_seen)})

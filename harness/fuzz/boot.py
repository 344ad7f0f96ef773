"""Every guest ``harness fuzz`` gets, in one place: the fuzzing guest, and confirmation runs.

- ``fuzz_guest``: boots a fresh guest whose exec command is the guest fuzzer
  (``harness/guest/fuzzer.py``) instead of the runner, and hands each of its events to
  the caller as it arrives. The fuzzer announces every input on virtme-ng's exec channel
  (a virtio-serial port QEMU writes to the harness's pipe) before executing it, so when
  the kernel dies the last event names what killed it. The kernel console goes to
  ``console.log`` as ``harness run``'s does.
- ``run_steps``: ``harness run`` itself on a project of the caller's (the module, and
  steps that are repro scripts): the verdict, the splats with their decoded traces and
  the step that was running come from the same code as any run's.

When kmod-harness gets one pluggable way to get a guest (fresh boot, spare, session),
this module is what changes.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

from harness import contract, procs, resources
from harness.contract import GUEST_RUN_DIR
from harness.errors import PhaseTimeout
from harness.events import ConsoleLine, Sink
from harness.guest import fuzzer
from harness.guest.vng import VmConfig, console_log, vng_argv
from harness.model import RunResult
from harness.phases import RunRequest
from harness.virtme import vng_env

COMMAND = f"python3 {GUEST_RUN_DIR}/fuzzer.py {GUEST_RUN_DIR}/{fuzzer.PLAN_FILE}"


@dataclass(frozen=True)
class FuzzGuest:
    vng: str
    config: VmConfig  # its run_dir holds the module build (build/) and gets the plan
    plan: dict[str, Any]
    console: Path
    timeout: float  # boot + fuzzing + shutdown


@dataclass(frozen=True)
class GuestEnd:
    exit_status: Optional[int]  # virtme-ng's; None when the harness ended it
    timed_out: bool
    argv: tuple[str, ...]
    wedged: str = ""  # the splat the console showed before the guest stopped answering (it was ended)


WEDGE_GRACE = 60.0  # seconds a guest may stay silent after its console showed a splat
_STAMP = re.compile(r"^\[\s*\d+\.\d+\]\s?")


class Wedge:
    """Watches a fuzz guest's console: once it shows a splat and the fuzzer has said nothing for
    ``grace`` seconds, the guest is ended. A kernel whose stack the module overran can fail to
    panic (``oops=panic`` needs a working oops path): on the debug kernel the blog's module left
    the guest in an endless storm of Oopses, each recursing into the last, until the host's
    timeout. Polled every second, on a thread of its own."""

    def __init__(self, patterns: Sequence[str], grace: float = WEDGE_GRACE, every: float = 1.0):
        self.patterns = [re.compile(p) for p in patterns]
        self.grace, self.every = grace, every
        self.proc: Optional[subprocess.Popen[bytes]] = None
        self.splat = ""  # the first splat line the console showed
        self.splat_at = 0.0
        self.heard_at = time.monotonic()
        self.ended = ""
        self.armed = False  # from the fuzzer's first word on: a splat while booting is not an input's
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)

    def attach(self, proc: subprocess.Popen[bytes]) -> None:
        self.proc = proc

    def console(self, line: str) -> None:
        if self.splat or not self.armed:
            return
        text = _STAMP.sub("", line)
        if any(p.match(text) for p in self.patterns):
            self.splat, self.splat_at = text, time.monotonic()

    def heard(self) -> None:
        self.armed, self.heard_at = True, time.monotonic()

    def due(self, now: float) -> bool:
        return bool(self.splat) and now - max(self.splat_at, self.heard_at) > self.grace

    def _watch(self) -> None:
        while not self._stop.wait(self.every):
            if self.due(time.monotonic()) and self.proc is not None:
                self.ended = self.splat
                procs.kill_group(self.proc, grace=0.5)
                return

    def __enter__(self) -> "Wedge":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def install(run_dir: Path) -> None:
    """The guest fuzzer and what it imports, into the run directory (the guest's /harness)."""
    for name in fuzzer.GUEST_FILES:
        shutil.copy(resources.guest_file(name), run_dir / name)


def fuzz_guest(req: FuzzGuest, on_event: Callable[[dict[str, Any]], None], sink: Sink) -> GuestEnd:
    """Boot, fuzz until the plan's duration is over or the guest dies (or wedges), and power off."""
    from harness.fuzz.tally import decode_line

    run_dir = req.config.run_dir
    install(run_dir)
    (run_dir / fuzzer.PLAN_FILE).write_text(json.dumps(req.plan))
    argv = vng_argv(req.vng, req.config, COMMAND)
    run_id = req.plan["run_id"]
    with console_log(req.console) as console, Wedge(req.plan.get("splats", [])) as wedge:
        console.write(f"# {' '.join(argv)}\n")

        heard = []  # once the fuzzer speaks, the console is no longer the news (it stays in console.log)

        def on_line(stream: str, line: str) -> None:
            if stream == "stdout" or line.startswith(contract.PREFIX):
                ev = decode_line(line, run_id)
                if ev is not None:
                    heard.append(True)
                    wedge.heard()
                    on_event(ev)
                return
            console.write(line + "\n")
            console.flush()
            wedge.console(line)
            if not heard:
                sink(ConsoleLine(line))

        try:
            done = procs.run(argv, timeout=req.timeout, what="the fuzz VM", on_line=on_line, env=vng_env(),
                             keep=False, on_start=wedge.attach)
            return GuestEnd(None if wedge.ended else done.returncode, False, tuple(argv), wedge.ended)
        except PhaseTimeout:
            return GuestEnd(None, True, tuple(argv))


def run_steps(req: RunRequest, sink: Sink) -> RunResult:
    """``harness run`` of ``req.project`` (a project the caller wrote: the module and its steps)."""
    from harness.run import run

    return run(req, sink)

"""Guests for the fault walk, and the walk's channel: the one place ``harness faults`` gets a guest.

A guest comes from ``watch.SparePool`` (booted with SSH, checked: alive, nothing of
the project loaded, no boot report that switched the kernel's checks off). One guest
walks as many points as it can; a point that crashed, hung or tainted the kernel ends
it, and the next comes from the pool. The pool boots the next guest ahead only once a
point has needed a fresh one (a module that tainted one kernel often taints the next);
before that a spare booting beside the walk would only take the host's cores from it.
"""

from __future__ import annotations

import shutil
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

from harness import contract, faultplan, resources
from harness.errors import HarnessError
from harness.events import Sink
from harness.guest.transport import RunDirGuard
from harness.phases import Prepared, RunRequest
from harness.spares import Spare, SparePool

WALK_COMMAND = (f"python3 {contract.GUEST_RUN_DIR}/{faultplan.WALKER_FILE} "
                f"{contract.GUEST_RUN_DIR}/{faultplan.WALK_FILE}")


@dataclass(frozen=True)
class WalkEnd:
    status: Optional[int]  # the walker's exit status (255: the connection was lost; None: none came)
    why: str  # how the host saw it end, when not by itself
    console: str  # the guest's console so far


class GuestSource:
    def __init__(self, prep: Prepared, req: RunRequest, sink: Sink, boot_limit: float):
        self.pool = SparePool(prep, req, sink, max_age=10 ** 9)
        self.boot_limit = boot_limit
        self.ahead = False  # boot the next guest while this one walks
        self.used = 0

    def take(self) -> Spare:
        spare = self.pool.take(self.boot_limit)
        self.used += 1
        if self.ahead:
            self.pool.refill()
        return spare

    def retire(self, spare: Spare, fresh_needed: bool) -> None:
        """End a guest (its kernel has loaded the module: it is never used again)."""
        if spare.runner is not None:  # the guest runner the pool started waits on its stdin: let it go
            try:
                spare.runner.finish(10, lambda line: None)
            except HarnessError:
                pass
        self.pool.discard(spare)
        if fresh_needed:
            self.ahead = True

    def close(self) -> None:
        self.pool.close()


def install(spare: Spare, build: Path, plan: faultplan.WalkPlan) -> None:
    """The module, the walker and its plan into the guest's run directory (shared at /harness)."""
    shutil.copytree(build, spare.run_dir / "build", dirs_exist_ok=True)
    for name in faultplan.GUEST_FILES:
        shutil.copy(resources.guest_file(name), spare.run_dir / name)
    (spare.run_dir / faultplan.WALK_FILE).write_text(plan.to_json())


def walk_on(spare: Spare, on_line: Callable[[str], None], idle_limit: float, limit: float) -> WalkEnd:
    """Run the walker on ``spare``, each line of its channel to ``on_line`` as it comes. A walker
    silent for ``idle_limit`` seconds (a guest wedged without a word) is cut off."""
    started = spare.live.ssh.start(WALK_COMMAND)
    last = [time.monotonic()]
    why: list[str] = []
    stop = threading.Event()

    def feed(line: str) -> None:
        last[0] = time.monotonic()
        on_line(line)

    def watchdog() -> None:
        while not stop.wait(1.0):
            if time.monotonic() - last[0] > idle_limit:
                why.append(f"the walker said nothing for {idle_limit:.0f}s: the guest was ended")
                started.chan.close()
                return

    t = threading.Thread(target=watchdog, daemon=True)
    t.start()
    status: Optional[int] = None
    guard = RunDirGuard(spare.run_dir)  # a step writing without end into /harness fills the host's disk
    if spare.live.bg.proc is not None:
        guard.attach(spare.live.bg.proc)
    try:
        with guard:
            status = started.finish(limit, feed).status
    except HarnessError as e:
        why.append(str(e))
    finally:
        stop.set()
        t.join()
    if guard.exceeded:
        why.insert(0, guard.exceeded)
    if status == 255 and not why and not spare.live.alive():
        why.append("the guest's VM ended")
    spare.console.flush()
    return WalkEnd(status, "; ".join(why), spare.console_path.read_text(errors="replace"))

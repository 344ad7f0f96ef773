"""Guests booted before they are needed (*spares*), and runs on them: a way for a run to get a guest.

A booted guest that has never loaded the module is as fresh as a new boot, so one is booted
ahead, checked (``honest``), and its guest runner started, waiting for a plan. ``SpareSource``
hands a run one of them: ``harness watch`` and the fault walks run on spares; ``harness run``
boots afresh (``run.FreshBoot``). Both are judged and reported by the same code (``run.execute``).
"""

from __future__ import annotations

import shutil
import tempfile
import threading
import time
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

from harness import procs, resources
from harness.contract import Plan
from harness.errors import HarnessError, InfraError
from harness.events import Note, Sink
from harness.guest import ssh, vng
from harness.guest.transport import (
    RUNNER_COMMAND,
    RUNNER_WAIT_COMMAND,
    GuestRequest,
    GuestRun,
    Listener,
    LiveGuest,
    RunDirGuard,
    SshTransport,
    write_plan,
)
from harness.model import Verdict
from harness.phases import Prepared, RunRequest, vm_config
from harness.textlog import CappedLog
from harness.verdict import judge, splat


class _Router:
    """Where a spare's output goes: the boot's listener, then the run's."""

    def __init__(self, target: procs.LineSink):
        self.target = target

    def __call__(self, stream: str, line: str) -> None:
        self.target(stream, line)


@dataclass
class Spare:
    """A guest booted ahead, never used: its SSH link, its run directory, its console so far."""

    live: LiveGuest
    stack: ExitStack
    run_dir: Path
    console: CappedLog
    console_path: Path
    router: _Router
    booted_at: float = field(default_factory=time.monotonic)
    # The guest runner, started once the spare passed its checks: Python's start and imports,
    # seconds under emulation, are over before an edit comes.
    runner: Optional[ssh.Started] = None

    @property
    def age(self) -> float:
        return time.monotonic() - self.booted_at

    def close(self) -> None:
        """Power the guest off (a spare never used) and end its processes."""
        self.stack.close()
        shutil.rmtree(self.run_dir, ignore_errors=True)

    def discard(self) -> None:
        """End a used spare's VM at once: its kernel is thrown away, so there is nothing to shut down."""
        self.live.discard = True
        self.close()


class SparePool:
    """One spare at a time, booting in the background; checked before it is handed out.

    The pool never boots while a spare runs the steps: under emulation a boot takes the
    host's cores from the guest that is working. Its owner calls ``refill`` once a verdict
    is out; ``take`` boots one itself only when none is ready or on its way. Used spares
    are ended on a thread of their own, so that the verdict does not wait for a VM to go.
    """

    def __init__(self, prep: Prepared, req: RunRequest, sink: Sink, max_age: float = 600):
        self.prep, self.req, self.sink, self.max_age = prep, req, sink, max_age
        self._lock = threading.Lock()
        self._ready = threading.Event()
        self._spare: Optional[Spare] = None
        self._error: Optional[BaseException] = None
        self._booting = False
        self._threads: list[threading.Thread] = []
        self._closed = False
        self._cancel = threading.Event()  # set by close: a boot under way is ended, not waited for

    def refill(self) -> None:
        """Boot a spare in the background, unless one is ready, booting, or failed to boot."""
        with self._lock:
            if self._closed or self._booting or self._spare is not None or self._error is not None:
                return
            self._booting = True
            self._ready.clear()
        self._spawn(self._boot)

    def _spawn(self, target: Callable[[], None]) -> None:
        t = threading.Thread(target=target, daemon=True)
        self._threads = [x for x in self._threads if x.is_alive()] + [t]
        t.start()

    def _boot(self) -> None:
        try:
            spare = boot_spare(self.prep, self.req, self.sink, self._cancel)
            problem = honest(spare, self.prep)
            if problem:
                spare.close()
                raise InfraError(f"a spare guest was refused: {problem}")
            spare.runner = spare.live.ssh.start(RUNNER_WAIT_COMMAND)
            with self._lock:
                closed = self._closed
                if not closed:
                    self._spare = spare
            if closed:  # the pool closed while it booted
                spare.discard()
                return
            self.sink(Note(f"spare guest ready (booted in {spare.live.boot_seconds:.1f}s)"))
        except BaseException as e:  # reported to whoever takes the spare
            with self._lock:
                self._error = e
        finally:
            with self._lock:
                self._booting = False
            self._ready.set()

    def take(self, timeout: float) -> Spare:
        """The spare, once booted and checked: still alive, and not older than max_age (else a
        fresh one is booted). The next spare is not booted here: see ``refill``."""
        deadline = time.monotonic() + timeout
        while True:
            self.refill()
            if not self._ready.wait(max(0.0, deadline - time.monotonic())):
                raise InfraError(f"no spare guest booted within {timeout:.0f}s")
            with self._lock:
                spare, error, self._spare, self._error = self._spare, self._error, None, None
            if spare is None:
                raise error if isinstance(error, HarnessError) else InfraError(f"booting a spare guest failed: {error}")
            if spare.age > self.max_age:
                self.sink(Note(f"the spare is {spare.age:.0f}s old (over {self.max_age:.0f}s): booting a fresh one"))
            elif not spare.live.alive():
                self.sink(Note("the spare guest died while it waited: booting another"))
            else:
                return spare
            self.discard(spare)

    def discard(self, spare: Spare) -> None:
        """End a spare on a thread of its own (``close`` waits for it)."""
        self._spawn(spare.discard)

    def close(self) -> None:
        """End the spare that is ready, end a boot under way (under emulation one takes minutes, and
        nobody will take its guest), and wait for them and every discard: no VM outlives this."""
        with self._lock:
            self._closed = True
            spare, self._spare = self._spare, None
        self._cancel.set()
        if spare is not None:  # never used: nothing in it to shut down
            spare.discard()
        for t in list(self._threads):
            t.join()


def boot_spare(prep: Prepared, req: RunRequest, sink: Sink, cancel: Optional[threading.Event] = None) -> Spare:
    """A guest with sshd and an empty run directory (the module goes there when it is used).
    ``cancel`` set while it boots ends it (InfraError)."""
    run_dir = Path(tempfile.mkdtemp(prefix="kmod-harness-spare-"))
    stack = ExitStack()
    try:
        resources.install_guest_files(run_dir)
        (run_dir / "build").mkdir()
        console_path = run_dir / "console.log"
        console = stack.enter_context(vng.console_log(console_path))
        router = _Router(Listener(sink, console, "").on_line)
        greq = GuestRequest(prep.setup.vng, vm_config(prep.setup, prep.root, run_dir, req, sink),
                            Plan(steps=(), run_id=""), console_path, req.timeouts.guest, req.timeouts.shutdown)
        live = stack.enter_context(SshTransport(prep.setup.cache).boot(greq, sink, console, on_line=router,
                                                                       cancel=cancel))
        return Spare(live, stack, run_dir, console, console_path, router)
    except BaseException:
        stack.close()
        shutil.rmtree(run_dir, ignore_errors=True)
        raise


def honest(spare: Spare, prep: Prepared) -> Optional[str]:
    """Why a spare cannot be used, or None: it must be alive, have loaded nothing of the project's,
    and have a kernel that did not switch its checks off while booting."""
    r = spare.live.ssh.run("cat /proc/modules; dd if=/dev/kmsg iflag=nonblock bs=16384 status=none", timeout=60)
    if not spare.live.alive():
        return "it died"
    loaded = {line.split()[0] for line in r.stdout.splitlines() if line and not line[0].isdigit() and " " in line}
    mine = loaded & {m.module for m in prep.setup.project.modules}
    if mine:
        return f"it has loaded {sorted(mine)} already"
    records = list(judge.kmsg.parse_records(ln + "\n" for ln in r.stdout.splitlines() if ln[:1].isdigit()))
    lost = judge.checks_lost(records, splat.find(prep.setup.rules, records), prep.setup.rules)
    return f"its kernel reported a bug while booting, and {lost}" if lost else None


def run_on_spare(spare: Spare, prep: Prepared, plan: Plan, build: Path, sink: Sink, timeout: float) -> GuestRun:
    """The plan on the spare: the module copied into its run directory, then the runner (waiting
    since the spare was checked) told to go."""
    shutil.copytree(build, spare.run_dir / "build", dirs_exist_ok=True)
    write_plan(spare.run_dir, plan)
    listen = Listener(sink, spare.console, plan.run_id, plan.steps)
    listen.marks["start"] = spare.booted_at  # the boot happened before: its time is the spare's age
    spare.router.target = listen.on_line
    exit_status, timed_out = None, False
    guard = RunDirGuard(spare.run_dir, listen=listen)
    if spare.live.bg.proc is not None:
        guard.attach(spare.live.bg.proc)
    try:
        with guard:
            if spare.runner is not None:
                res = spare.runner.finish(timeout, listen.channel, stdin=b"go\n")
            else:
                res = spare.live.ssh.stream(RUNNER_COMMAND, timeout=timeout, on_line=listen.channel)
        exit_status = res.status
    except HarnessError as e:
        timed_out = e.verdict is Verdict.TIMEOUT
    return listen.result("ssh (spare)", spare.live.bg.argv, spare.run_dir, timeout, exit_status, timed_out,
                         guard=guard)


class SpareSource:
    """A run's guest from a pool of spares (``run.GuestSource``): the plan runs on the spare, whose
    console so far is the run's console.log; the spare is thrown away after (its kernel has loaded
    the module) and the pool boots the next once the verdict is out."""

    name = "ssh (spare)"

    def __init__(self, pool: SparePool, prep: Prepared, take_timeout: float = 900):
        self.pool, self.prep, self.take_timeout = pool, prep, take_timeout
        self.age: Optional[float] = None

    def run(self, req: GuestRequest, sink: Sink) -> GuestRun:
        spare = self.pool.take(self.take_timeout)
        self.age = spare.age
        try:
            return run_on_spare(spare, self.prep, req.plan, req.config.run_dir / "build", sink, req.timeout)
        finally:
            spare.console.flush()
            shutil.copy(spare.console_path, req.console)
            self.pool.discard(spare)

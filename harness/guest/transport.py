"""How the guest runner is started and heard: one interface, two transports.

Both boot the guest with virtme-ng, start ``runner.py`` on the plan, read its
events (``contract``) line by line as they come, tee the kernel console into
``console.log``, and return one ``GuestRun``:

- ``exec``: the runner is virtme-ng's ``--exec`` command; its stdout is the exec channel.
- ``ssh``: the guest boots with sshd, and the runner runs through paramiko.

A guest that dies mid-run still yields a report, rebuilt from the events it sent.
"""

from __future__ import annotations

import subprocess
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Optional, Protocol, Sequence

from harness import contract, procs
from harness.cache import disk_usage
from harness.errors import InfraError, Interrupted, PhaseTimeout
from harness.events import ConsoleLine, GuestStep, Note, Sink
from harness.guest import ssh
from harness.guest.vng import SSH_GUEST_COMMAND, VmConfig, console_log, vng_argv
from harness.virtme import vng_env

RUNNER_COMMAND = (f"python3 {contract.GUEST_RUN_DIR}/{contract.RUNNER_FILE} "
                  f"{contract.GUEST_RUN_DIR}/{contract.PLAN_FILE}")
# The runner started ahead in a spare guest: it waits for a line on stdin (the plan is written).
RUNNER_WAIT_COMMAND = RUNNER_COMMAND.replace(contract.RUNNER_FILE, f"{contract.RUNNER_FILE} --wait")


@dataclass(frozen=True)
class GuestRequest:
    vng: str
    config: VmConfig
    plan: contract.Plan
    console: Path  # console.log, written as it arrives
    timeout: float  # boot + every step + shutdown
    shutdown: float = 30  # a guest asked to power off


@dataclass(frozen=True)
class GuestRun:
    """What one boot of a guest gave: the report (whole, or rebuilt from events), and how it ended."""

    transport: str
    argv: tuple[str, ...]
    report: Optional[contract.GuestReport]  # None: not one event came from the runner
    exit_status: Optional[int]  # virtme-ng's exit status; None when the harness ended it
    timed_out: bool
    transcript: tuple[str, ...]  # the channel's lines as they came
    marks: dict[str, float] = field(default_factory=dict)  # host-side moments, for the boot breakdown
    running: Optional[str] = None  # the step that had started and not ended
    problem: str = ""  # why the runner's report could not be used, if it could not
    limit: float = 0.0  # the time limit it had
    interrupted: str = ""  # SIGINT or SIGTERM stopped it: why (what the guest had sent is kept)
    overflow: str = ""  # the guest wrote more into the run directory than it may: it was stopped (RunDirGuard)
    overdue: str = ""  # a step ran long past its limit with no word from the guest: it was ended (timed_out too)

    @property
    def how_it_ended(self) -> str:
        if self.overflow:
            return f"ended by the harness: {self.overflow}"
        if self.overdue:
            return f"ended by the harness: {self.overdue}"
        if self.interrupted:
            return f"ended by the harness: {self.interrupted}"
        if self.timed_out:
            return f"the harness ended it at its time limit ({self.limit:.0f}s)"
        return f"virtme-ng exited {self.exit_status}" if self.exit_status is not None else "ended by the harness"


class Transport(Protocol):
    name: str

    def run(self, req: GuestRequest, sink: Sink) -> GuestRun:
        """Boot, run the plan in the guest, and power it off; the guest never outlives the call."""
        ...


STEP_GRACE = 60.0  # seconds past a step's limit (and a quarter of it) before the host ends a silent guest


def step_deadline(limit: float) -> float:
    """How long after a step started the host ends its guest when the step's end never came: the
    runner ends a step at its own limit and says so within seconds; a guest silent long past that
    is wedged (a kernel that reported a crash and spins, say), and waiting for the run's whole
    --timeout would tell nothing more."""
    return limit * 1.25 + STEP_GRACE


class Listener:
    """Both streams of a guest: console lines (virtme-ng's stderr) to console.log and the sink;
    channel lines (stdout) to the transcript, their events folded into an EventLog.
    ``steps``: the plan's steps, whose limits say when a step that never ended is overdue."""

    def __init__(self, sink: Sink, console: procs.TextLog, run_id: str, steps: Sequence[contract.PlanStep] = ()):
        self.sink, self.log = sink, console
        self.events = contract.EventLog(run_id=run_id)
        self.steps = steps
        self.deadline: Optional[tuple[float, str]] = None  # (monotonic time, why) while a step runs
        # exec.log: the channel as it came, capped like the kernel log (its head and its tail)
        self.transcript = contract.HeadTail(contract.KMSG_HEAD * 2, contract.KMSG_TAIL * 2)
        self.marks: dict[str, float] = {"start": time.monotonic()}

    def console(self, line: str) -> None:
        if line.startswith(contract.PREFIX):
            # virtme-ng-init sends the exec script's output to the console when it finds no
            # virtio port for it (seen on slow debug kernels): it is still the runner's channel.
            # What the kernel prints starts with its time stamp, and events need the run's id.
            self.channel(line)
            return
        self.log.write(line + "\n")
        self.log.flush()
        if "Linux version" in line:
            self.marks.setdefault("kernel", time.monotonic())
        self.sink(ConsoleLine(line))

    def channel(self, line: str) -> None:
        self.transcript.append(line)
        event = contract.decode_event(line)
        if event is None:
            return
        self.events.feed(event)
        if event["event"] == contract.STEP_START:
            self.sink(GuestStep(str(event.get("name"))))
            index = event.get("index")
            if isinstance(index, int) and 0 <= index < len(self.steps):
                limit = self.steps[index].timeout
                self.deadline = (time.monotonic() + step_deadline(limit),
                                 f"guest step {self.steps[index].name!r} had a {limit:g}s limit and no end came "
                                 f"{step_deadline(limit):.0f}s after it started: the guest was ended")
        elif event["event"] == contract.STEP_END:
            self.deadline = None
        elif event["event"] == contract.REPORT:
            self.marks.setdefault("result", time.monotonic())

    def overdue(self) -> str:
        """Why the guest must be ended now (a step long past its limit), or ""."""
        d = self.deadline
        return d[1] if d is not None and time.monotonic() > d[0] else ""

    def _transcript(self) -> tuple[str, ...]:
        t = self.transcript
        if not t.dropped:
            return t.items()
        return tuple(t.head) + (f"[kmod-harness: {t.dropped} channel lines left out here]",) + tuple(t.tail)

    def on_line(self, stream: str, line: str) -> None:
        (self.channel if stream == "stdout" else self.console)(line)

    def result(self, name: str, argv: Sequence[str], run_dir: Path, limit: float, exit_status: Optional[int],
               timed_out: bool, why: str = "", interrupted: str = "", guard: Optional["RunDirGuard"] = None
               ) -> GuestRun:
        """``why``: what the transport knows of how the guest ended (an SSH server that never answered);
        ``guard``: what watched the guest, and whether it ended it."""
        self.marks["end"] = time.monotonic()
        report, problem = read_report(run_dir, self.events)
        overflow, overdue = (guard.exceeded, guard.overdue) if guard is not None else ("", "")
        if overdue:  # the connection's loss or the VM's exit status that followed say nothing more
            why, exit_status = "", None
        problem = "; ".join(p for p in (why, problem) if p)
        return GuestRun(transport=name, argv=tuple(argv), report=report, exit_status=exit_status,
                        timed_out=timed_out or bool(overdue), transcript=self._transcript(), marks=dict(self.marks),
                        running=self.events.running, problem=problem, limit=limit, interrupted=interrupted,
                        overflow=overflow, overdue=overdue)


def interruption(e: BaseException) -> str:
    return "interrupted by SIGINT (Ctrl-C)" if isinstance(e, KeyboardInterrupt) else str(e)


def read_report(run_dir: Path, events: contract.EventLog) -> tuple[Optional[contract.GuestReport], str]:
    """The runner's report file when it finished, else one rebuilt from its events, else None.

    The file counts only when the runner said it wrote it (its last event): a step can write into
    the run directory too, and a guest that died before the runner's report leaves no file of its.
    A runner of another contract version is an error of the installation, never a verdict.
    """
    if events.version is not None and events.version != contract.VERSION:
        contract.check_version(events.version, "the guest runner")  # raises ContractError
    path = run_dir / contract.REPORT_FILE
    if events.report_path is not None and path.is_file():
        try:
            return contract.GuestReport.from_json(path.read_text()), ""
        except contract.ContractError as e:
            problem = f"{contract.REPORT_FILE}: {e}"
            return (events.partial_report() if events.version is not None else None), problem
    if events.version is None:
        return None, ""
    return events.partial_report(), ""


MAX_RUN_DIR = 1 << 30  # what a guest may write to the host through /harness: more fills the host's disk


class RunDirGuard:
    """Watches the run directory the guest shares read-write (/harness) while a guest runs: a step
    that writes past ``limit`` bytes there has its VM ended, and the run says so (the host's /tmp
    would otherwise fill). With ``listen``, a step long past its limit (``Listener.overdue``) ends
    the VM too (``overdue`` says why). Polled every ``every`` seconds, on a thread of its own."""

    def __init__(self, run_dir: Path, limit: int = MAX_RUN_DIR, every: float = 1.0,
                 listen: Optional[Listener] = None):
        self.run_dir, self.limit, self.every, self.listen = run_dir, limit, every, listen
        self.proc: Optional[subprocess.Popen[bytes]] = None
        self.exceeded = ""
        self.overdue = ""
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)

    def attach(self, proc: subprocess.Popen[bytes]) -> None:
        self.proc = proc

    def _watch(self) -> None:
        while not self._stop.wait(self.every):
            late = self.listen.overdue() if self.listen is not None else ""
            if late and self.proc is not None:
                self.overdue = late
                procs.kill_group(self.proc, grace=0.5)
                return
            size = disk_usage(self.run_dir)
            if size > self.limit:
                self.exceeded = (f"the guest wrote {size >> 20} MiB into /harness (the host's run directory), over "
                                 f"the {self.limit >> 20} MiB a run may: it was stopped")
                if self.proc is not None:
                    procs.kill_group(self.proc, grace=0.5)
                return

    def __enter__(self) -> "RunDirGuard":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def write_plan(run_dir: Path, plan: contract.Plan) -> None:
    (run_dir / contract.PLAN_FILE).write_text(plan.to_json())
    (run_dir / contract.REPORT_FILE).unlink(missing_ok=True)


class ExecTransport:
    name = "exec"

    def run(self, req: GuestRequest, sink: Sink) -> GuestRun:
        write_plan(req.config.run_dir, req.plan)
        argv = vng_argv(req.vng, req.config, RUNNER_COMMAND)
        exit_status, timed_out, stopped = None, False, ""
        with console_log(req.console) as console:
            console.write(f"# {' '.join(argv)}\n")
            listen = Listener(sink, console, req.plan.run_id, req.plan.steps)
            with RunDirGuard(req.config.run_dir, listen=listen) as guard:
                try:
                    done = procs.run(argv, timeout=req.timeout, what="the VM", on_line=listen.on_line,
                                     env=vng_env(), keep=False, on_start=guard.attach)
                    exit_status = done.returncode
                except PhaseTimeout:
                    timed_out = True
                except (KeyboardInterrupt, Interrupted) as e:
                    stopped = interruption(e)
            return listen.result(self.name, argv, req.config.run_dir, req.timeout, exit_status, timed_out,
                                 interrupted=stopped, guard=guard)


@dataclass
class LiveGuest:
    """A booted guest reached over SSH (sessions, and the ssh transport while it runs a plan)."""

    bg: procs.Background
    ssh: ssh.GuestSsh
    port: int
    boot_seconds: float
    discard: bool = False  # thrown away: ended at once on leaving ``boot``, no power-off asked

    def alive(self) -> bool:
        return self.bg.alive() and self.ssh.client is not None


class SshTransport:
    name = "ssh"

    def __init__(self, cache: Path):
        self.cache = cache

    @contextmanager
    def boot(self, req: GuestRequest, sink: Sink, console: procs.TextLog,
             on_line: Optional[procs.LineSink] = None,
             cancel: Optional[threading.Event] = None) -> Iterator[LiveGuest]:
        """A guest with sshd, connected; powered off and ended when the block ends, whatever happened.
        Without ``on_line``, console lines go to ``console`` and the sink. ``cancel`` set while the
        guest boots ends it at once (a spare nobody will take): InfraError."""
        keys = ssh.ensure_keys(self.cache)
        port = ssh.free_port()
        argv = vng_argv(req.vng, req.config, SSH_GUEST_COMMAND, ssh_port=port)
        deadline = time.monotonic() + req.timeout
        console.write(f"# {' '.join(argv)}\n")
        with procs.Background(argv, what="the VM", on_line=on_line or Listener(sink, console, "").on_line,
                              env=vng_env(home=keys.home)) as bg:
            guest = ssh.GuestSsh(port, keys)
            live: Optional[LiveGuest] = None
            t0 = time.monotonic()
            try:
                guest.connect(timeout=deadline - time.monotonic(),
                              alive=lambda: bg.alive() and not (cancel is not None and cancel.is_set()))
                sink(Note(f"ssh: connected to 127.0.0.1:{port} after {time.monotonic() - t0:.1f}s", verbose=True))
                live = LiveGuest(bg, guest, port, time.monotonic() - t0)
                yield live
            finally:
                # A guest that was never reached cannot be asked, and one thrown away need not be:
                # either is ended at once.
                ask = guest.client is not None and not (live is not None and live.discard)
                if ask:
                    guest.poweroff()
                guest.close()
                if ask:
                    try:
                        bg.wait(req.shutdown)
                    except PhaseTimeout:
                        pass  # the group is ended on leaving the Background block

    def run(self, req: GuestRequest, sink: Sink) -> GuestRun:
        """``exit_status`` is the runner's, as sshd reported it (255: the connection was lost)."""
        write_plan(req.config.run_dir, req.plan)
        deadline = time.monotonic() + req.timeout
        timed_out, exit_status, argv, why, stopped = False, None, [], "", ""
        with console_log(req.console) as console:
            listen = Listener(sink, console, req.plan.run_id, req.plan.steps)
            guard = RunDirGuard(req.config.run_dir, listen=listen)
            try:
                with self.boot(req, sink, console, on_line=listen.on_line) as live, guard:
                    argv = live.bg.argv
                    if live.bg.proc is not None:
                        guard.attach(live.bg.proc)
                    res = live.ssh.stream(RUNNER_COMMAND, timeout=max(1.0, deadline - time.monotonic()),
                                          on_line=listen.channel)
                    exit_status = res.status
            except PhaseTimeout as e:
                timed_out, why = True, str(e)
            except (KeyboardInterrupt, Interrupted) as e:
                stopped = interruption(e)
            except InfraError as e:  # the SSH link broke: the guard may have ended the guest
                if not (guard.exceeded or guard.overdue):
                    raise
                why = str(e)
            return listen.result(self.name, argv, req.config.run_dir, req.timeout, exit_status, timed_out, why,
                                 interrupted=stopped, guard=guard)


def transport(name: str, cache: Path) -> Transport:
    if name == "exec":
        return ExecTransport()
    if name == "ssh":
        return SshTransport(cache)
    raise InfraError(f"unknown transport {name!r}")

"""A live guest: boot once, then many commands over SSH (paramiko).

Used by ``harness shell``, the pytest plugin and the benchmarks. It composes the
same phases as ``harness run`` (setup, resolve, root, build) and boots with the
SSH transport; the module is at /harness/build/<module>.ko in the guest, and
loading it is the caller's business (``insmod``/``rmmod``).
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Optional

from harness.errors import InfraError
from harness.events import Sink
from harness.guest import vng
from harness.guest.contract import GUEST_RUN_DIR, RUNNER_FILE
from harness.guest.plan import ko_paths
from harness.guest.ssh import CommandResult
from harness.guest.transport import GuestRequest, LiveGuest, SshTransport
from harness.model import KmsgRecord, Phase, Verdict
from harness.phases import Prepared, RunRequest, Setup, guest_plan, prepare, symbolize_splats, vm_config
from harness.verdict import judge, kmsg, report, splat

RUNNER = f"{GUEST_RUN_DIR}/{RUNNER_FILE}"


class Session:
    def __init__(self, req: RunRequest, sink: Sink, console: Optional[Path] = None):
        self.req, self.sink = req, sink
        self.console_path = console
        self.run_dir: Optional[Path] = None
        self.setup: Optional[Setup] = None
        self.prepared: Optional[Prepared] = None
        self.live: Optional[LiveGuest] = None
        self.kos: dict[str, str] = {}
        self.phases: list[Phase] = []
        self._stack = ExitStack()

    # -- lifecycle -----------------------------------------------------------------
    def start(self) -> "Session":
        try:
            self._start()
        except BaseException:
            self.close()
            raise
        return self

    def _start(self) -> None:
        self.run_dir = Path(tempfile.mkdtemp(prefix="kmod-harness-session-"))
        prep = self.prepared = prepare(self.req, self.sink, self.run_dir, self.phases)
        s, r, built = prep.setup, prep.root, prep.built
        self.setup = s
        self.kos = ko_paths(s.project, built.kos if built is not None else None)
        console = self.console_path or (self.run_dir / "console.log")
        console.parent.mkdir(parents=True, exist_ok=True)
        greq = GuestRequest(s.vng, vm_config(s, r, self.run_dir, self.req, self.sink),
                            guest_plan(s, r, built, self.req), console, self.req.timeouts.guest,
                            self.req.timeouts.shutdown)
        log = self._stack.enter_context(vng.console_log(console))
        self.live = self._stack.enter_context(SshTransport(s.cache).boot(greq, self.sink, log))
        self._check_boot()

    def _check_boot(self) -> None:
        """A kernel that switched its checks off while booting cannot vouch for any test
        (the rule ``harness run`` judges by: verdict.judge.checks_lost)."""
        assert self.setup is not None
        boot = self.kmsg_after(-1)
        found = splat.find(self.setup.rules, boot)
        lost = judge.checks_lost(boot, found, self.setup.rules)
        if lost:
            where = self.console_path or "the guest's console"
            raise InfraError(f"the kernel reported a bug while booting ({found[0].text}), and {lost}: "
                             f"tests on this guest could not be trusted; see {where}")

    def alive(self) -> bool:
        return self.live is not None and self.live.alive()

    def wait_dead(self, seconds: float) -> bool:
        """Whether the guest's VM ends within ``seconds`` (it stopped answering: did it die?)."""
        deadline = time.monotonic() + seconds
        while self.live is not None and self.live.bg.alive():
            if time.monotonic() > deadline:
                return False
            time.sleep(0.2)
        return True

    def close(self) -> None:
        self.live = None
        self._stack.close()  # powers the guest off, ends its processes, closes the console log
        if self.run_dir is not None:
            shutil.rmtree(self.run_dir, ignore_errors=True)
            self.run_dir = None

    def __enter__(self) -> "Session":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- guest work -------------------------------------------------------------------
    @property
    def module(self) -> str:
        assert self.setup is not None
        return self.setup.project.module

    @property
    def ko(self) -> str:
        """The first module's .ko in the guest."""
        assert self.setup is not None
        return self.kos[self.setup.project.modules[0].name]

    def load_commands(self) -> list[tuple[str, ...]]:
        """What ``harness run`` does to load the project's modules: modprobe, then insmod with parameters."""
        assert self.setup is not None
        p = self.setup.project
        return ([("modprobe", dep) for dep in p.requires]
                + [("insmod", self.kos[m.name], *m.params) for m in p.modules])

    def unload_commands(self) -> list[tuple[str, ...]]:
        assert self.setup is not None
        return [("rmmod", m.module) for m in reversed(self.setup.project.modules)]

    def run(self, command: str, timeout: Optional[float] = None) -> CommandResult:
        if self.live is None:
            raise InfraError("the guest session is not running")
        return self.live.ssh.run(command, timeout=timeout or self.req.timeouts.guest_command)

    def kmsg_after(self, seq: int) -> list[KmsgRecord]:
        """Kernel log records with a sequence number above ``seq``.

        ``dd`` reads /dev/kmsg one record per read() until EAGAIN, far cheaper than
        starting Python under emulation. Anything but EAGAIN ending it (EPIPE: records
        overwritten while reading) falls back to the runner, which reads past it.
        """
        res = self.run("dd if=/dev/kmsg iflag=nonblock bs=16384 status=none")
        if "Resource temporarily unavailable" in res.stderr:
            records = kmsg.parse_records(res.stdout.splitlines(keepends=True))
        else:
            res = self.run(f"python3 {RUNNER} kmsg {int(seq)}")
            if res.status != 0:
                raise InfraError(f"reading /dev/kmsg in the guest failed: {res.stderr.strip()}")
            records = kmsg.parse_records(json.loads(res.stdout)["kmsg"])
        return [r for r in records if r.seq > seq]

    def decode(self, records: list[KmsgRecord], found: list[splat.Splat]) -> list[str]:
        """The splats' frames in the project's modules, resolved with the .ko this guest loaded."""
        if self.prepared is None or self.run_dir is None:
            return []
        j = judge.Judgement(Verdict.CRASH, "", records=tuple(records), splats=tuple(found))
        built = self.prepared.built
        decoded = symbolize_splats(self.prepared.setup, self.prepared.root, j, self.run_dir / "build",
                                   built.kos if built is not None else None)
        return [line for sp, d in zip(found, decoded, strict=True) if d is not None
                for line in report.splat_lines(dict(sp.to_json(), **d))]

    def last_seq(self) -> int:
        recs = self.kmsg_after(-1)
        return recs[-1].seq if recs else -1

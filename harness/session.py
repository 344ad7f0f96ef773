"""A live guest: boot once, then many commands over SSH (paramiko).

Used by ``harness shell``, the pytest plugin and the benchmarks. The module is
built as for ``harness run`` and is at /harness/build/<module>.ko in the guest;
loading it is the caller's business (``insmod``/``rmmod``).
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from pathlib import Path
from typing import Optional

from harness import analyze, kmsg, procs, splat, ssh, vm
from harness.errors import HarnessError, InfraError
from harness.model import KmsgRecord, Verdict
from harness.progress import Printer
from harness.run import Prepared, RunRequest, _Run, config_params

RUNNER = f"{vm.GUEST_RUN_DIR}/runner.py"


class Session:
    def __init__(self, req: RunRequest, printer: Printer, console: Optional[Path] = None):
        self.req, self.printer = req, printer
        self.console_path = console
        self.run_dir: Optional[Path] = None
        self.prep: Optional[Prepared] = None
        self.guest: Optional[ssh.GuestSsh] = None
        self._bg: Optional[procs.Background] = None
        self._console = None
        self.boot_seconds = 0.0

    # -- lifecycle -----------------------------------------------------------------
    def start(self) -> "Session":
        r = _Run(self.req, self.printer)
        self.run_dir = Path(tempfile.mkdtemp(prefix="kmod-harness-session-"))
        try:
            self.prep = r.prepare(self.run_dir)
            if self.prep is None:
                raise BuildFailed(r.result.reason, r.result.build_log)
            self.result = r.result
            self._boot(r.cache)
            self._check_boot()
        except BaseException:
            self.close()
            raise
        return self

    def _boot(self, cache: Path) -> None:
        assert self.prep is not None and self.run_dir is not None
        keys = ssh.ensure_keys(cache)
        cfg = vm.VmConfig(
            vmlinuz=self.prep.root.vmlinuz, root=self.prep.root.path, run_dir=self.run_dir,
            project_dir=self.prep.project.root, accel=self.prep.accel, cpus=self.req.cpus,
            append=config_params(self.prep.root, self.printer) + self.req.append,
            console_level=self.req.console_level,
            command=vm.SSH_GUEST_COMMAND, ssh_port=ssh.free_port(), modules_dir=self.prep.root.modules,
        )
        argv = vm.vng_argv(self.prep.vng, cfg)
        path = self.console_path or (self.run_dir / "console.log")
        path.parent.mkdir(parents=True, exist_ok=True)
        self._console = vm.console_log(path)
        self._console.write(f"# {' '.join(argv)}\n")
        t0 = time.monotonic()
        with self.printer.phase("boot", f"{self.prep.root.kernel.release} ({self.prep.accel.value}) with sshd"):
            self._bg = procs.Background(argv, what="the VM", log=self._console,
                                        on_line=lambda _s, ln: self.printer.status(ln),
                                        env=vm.vng_env(home=keys.home)).__enter__()
            self.guest = ssh.GuestSsh(cfg.ssh_port, keys)
            self.guest.connect(timeout=self.req.timeouts.guest, alive=self._bg.alive)
        self.boot_seconds = time.monotonic() - t0

    def _check_boot(self) -> None:
        """A kernel that switched its checks off while booting cannot vouch for any test
        (the rule ``harness run`` judges by: analyze.checks_lost)."""
        assert self.prep is not None
        boot = self.kmsg_after(-1)
        found = splat.find(self.prep.rules, boot)
        lost = analyze.checks_lost(boot, found)
        if lost:
            where = self.console_path or "the guest's console"
            raise InfraError(f"the kernel reported a bug while booting ({found[0].text}), and {lost}: "
                             f"tests on this guest could not be trusted; see {where}")

    def alive(self) -> bool:
        return self._bg is not None and self._bg.alive() and self.guest is not None

    def close(self) -> None:
        asked = False
        if self.guest is not None:
            asked = self.guest.client is not None
            self.guest.poweroff()
            self.guest.close()
            self.guest = None
        if self._bg is not None:
            try:
                if asked:  # a guest that was never reached cannot be asked: end it at once
                    self._bg.wait(20)
            except HarnessError:
                pass
            self._bg.__exit__(None, None, None)
            self._bg = None
        if self._console is not None:
            self._console.close()
            self._console = None
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
        assert self.prep is not None
        return self.prep.project.module

    @property
    def ko(self) -> str:
        return f"{vm.GUEST_RUN_DIR}/build/{self.module}.ko"

    def run(self, command: str, timeout: float = 60.0) -> ssh.CommandResult:
        if self.guest is None:
            raise InfraError("the guest session is not running")
        return self.guest.run(command, timeout=timeout)

    def kmsg_after(self, seq: int) -> list[KmsgRecord]:
        """Kernel log records with a sequence number above ``seq``.

        ``dd`` reads /dev/kmsg one record per read() until EAGAIN: ~20x cheaper than
        starting Python under emulation. Anything but EAGAIN ending it (EPIPE: records
        overwritten while reading) falls back to the runner, which reads past it.
        """
        res = self.run("dd if=/dev/kmsg iflag=nonblock bs=16384 status=none", timeout=60)
        if "Resource temporarily unavailable" in res.stderr:
            records = kmsg.parse_records(res.stdout.splitlines(keepends=True))
        else:
            res = self.run(f"python3 {RUNNER} kmsg {int(seq)}", timeout=60)
            if res.status != 0:
                raise InfraError(f"reading /dev/kmsg in the guest failed: {res.stderr.strip()}")
            records = kmsg.parse_records(json.loads(res.stdout)["kmsg"])
        return [r for r in records if r.seq > seq]

    def last_seq(self) -> int:
        recs = self.kmsg_after(-1)
        return recs[-1].seq if recs else -1


class BuildFailed(HarnessError):
    verdict = Verdict.FAIL

    def __init__(self, reason: str, log: str):
        super().__init__(reason)
        self.log = log

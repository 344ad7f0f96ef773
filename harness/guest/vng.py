"""virtme-ng's command line, built by a pure function, and the host facts it needs.

With ``--verbose`` virtme-ng sends the kernel console to its stderr and the exec
script's stdout to its stdout, so the two stay apart: the transports tee the
console into ``console.log`` and read the guest runner's events from stdout.
"""

from __future__ import annotations

import os
import re
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from harness import arches
from harness.arches import Arch
from harness.errors import InfraError
from harness.guest.contract import GUEST_RUN_DIR
from harness.model import Accel
from harness.procs import CappedLog

# The exec channel's command while the host works over SSH (resources.install_guest_files
# puts ssh-up.sh into the run directory).
SSH_GUEST_COMMAND = f"sh {GUEST_RUN_DIR}/ssh-up.sh"
GUEST_PROJECT_DIR = "/project"
# A tree kernel's modules are mounted here (the base roots have the empty directory).
# virtme-ng's own module handling looks only inside the root, which has none for it.
GUEST_MODULES_DIR = "/lib/modules"


@dataclass(frozen=True)
class VmConfig:
    vmlinuz: Path
    root: Path
    run_dir: Path  # shared read-write at /harness
    project_dir: Path  # shared read-only at /project
    accel: Accel
    memory: str = "1G"
    cpus: int = 2
    append: tuple[str, ...] = field(default_factory=tuple)
    # A kernel tree's installed modules (HOST/lib/modules), shared read-only at /lib/modules.
    modules_dir: Optional[Path] = None
    # Records below this level reach the serial console; every record reaches /dev/kmsg
    # (and result.json) whatever it is. Under TCG each console byte is an emulated UART
    # write, so a module logging per message runs several times slower with info records
    # on the console (docs/PERFORMANCE.md, bench/roundtrip.py). But the console is the last
    # resort for a guest that dies before its runner streams a record out, and at 6 the blog
    # module's stack-overflow panic never reached it (tests/vm/test_faults_vm.py): the
    # default stays at virtme-ng's 7; lowering it is a choice for throughput runs.
    console_level: int = 7
    # virtme-ng's --arch (Debian's name) for a guest of another architecture than the host's; None: the host's.
    arch: Optional[str] = None


# console.log keeps its first 32 Mi characters and its last 2 Mi (procs.CappedLog): a
# whole debug-kernel boot and run fits in the head; a guest printing without end does not.
CONSOLE_HEAD = 32 << 20
CONSOLE_TAIL = 2 << 20


def console_log(path: Path) -> CappedLog:
    return CappedLog(path, CONSOLE_HEAD, CONSOLE_TAIL)


X86_MACHINE = "-machine q35"

# Kernel parameters every harness boot gets, each for a reason:
BASE_APPEND = (
    "log_buf_len=8M",  # Debian's 128 KiB buffer drops records under load
    "softlockup_panic=1",  # a locked-up guest ends (and says why) instead of hanging to the timeout
    # An Oops ends the guest at once (virtme-ng's panic=-1 then stops QEMU): on the KASAN
    # kernel the blog's module oopsed in a kernel thread and left the guest wedged until
    # the host's timeout. A WARNING is no Oops: the guest lives on after one.
    "oops=panic",
)


def config_params(config: str) -> tuple[str, ...]:
    """Kernel parameters a kernel's ``.config`` calls for, each for a reason.

    Only kernels with KASAN get any (trees: ``debian-src:SUITE+kasan``, ``local:``).
    Not ``kasan_multi_shot``: after the blog's module overran the stack, KASAN then
    reported on every timer tick until the timeout; one report is enough to fail a run,
    and one from the boot is caught by ``verdict.judge.checks_lost``.
    """
    on = set(re.findall(r"^(CONFIG_\w+)=y$", config, re.M))
    out: list[str] = []
    if "CONFIG_KASAN" in on and "CONFIG_X86_5LEVEL" in on:
        # 4-level paging. QEMU's TCG "max" CPU has LA57, and trixie's 6.12 built with KASAN,
        # paging with 5 levels, at times reported a KASAN wild-memory-access on the 5-level
        # direct map from an interrupt early in the boot (recorded: tests/data/kasan_boot_report;
        # counts in the closing note of that fix). The report taints the kernel, turning lockdep
        # off for the whole run. no5lvl is read by the boot stub; the kernel proper calls it
        # unknown and hands it to virtme-ng's init script as an argument, which it ignores.
        out.append("no5lvl")
    return tuple(out)


def appended(cfg: VmConfig) -> tuple[str, ...]:
    """Every kernel parameter the harness adds to virtme-ng's, in order (the last one wins)."""
    return BASE_APPEND + (f"loglevel={cfg.console_level}",) + tuple(cfg.append)


def vng_argv(vng: str, cfg: VmConfig, command: str, ssh_port: Optional[int] = None) -> list[str]:
    """``command`` runs on virtme-ng's exec channel; ``ssh_port``: sshd in the guest, reachable
    on 127.0.0.1:PORT only."""
    argv = [
        vng,
        "--verbose",  # kernel console on stderr: the only record when the guest dies
        "--run", str(cfg.vmlinuz),
        "--root", str(cfg.root),
        "--rwdir", f"{GUEST_RUN_DIR}={cfg.run_dir}",
        "--rodir", f"{GUEST_PROJECT_DIR}={cfg.project_dir}",
        "--memory", cfg.memory,
        "--cpus", str(cfg.cpus),
        # virtme-ng tries virtiofsd first and falls back to 9p after a timeout per
        # shared directory; the only virtiofsd on bookworm hosts is QEMU's old C
        # one, which virtme-ng cannot use.
        "--force-9p",
    ]
    if cfg.modules_dir is not None:
        argv += ["--rodir", f"{GUEST_MODULES_DIR}={cfg.modules_dir}"]
    if cfg.arch is not None:
        argv += ["--arch", cfg.arch]
    if cfg.accel is Accel.TCG:
        argv.append("--disable-kvm")
    if cfg.arch is None and arches.host().name == "amd64":
        # One machine whichever accelerator runs the guest: virtme-ng gives TCG q35 and KVM QEMU's
        # default (i440fx), and ACPI and PCI differ between them (\_SB.PCI0's _HID, the PCI
        # topology): a step reading them would pass under one and fail under the other. q35 is
        # what every TCG run here has been measured on.
        argv.append(f"--qemu-opts={X86_MACHINE}")  # one word: argparse takes "-machine" for an option
    # After virtme-ng's own loglevel=7: the last one wins.
    for a in appended(cfg):
        argv += ["--append", a]
    if ssh_port is not None:
        argv += ["--ssh", str(ssh_port), "--ssh-tcp"]
    argv += ["--exec", command]
    return argv


def find_vng() -> str:
    """vng from the harness's own environment first (a venv is not always on PATH)."""
    here = Path(sys.executable).parent / "vng"
    if here.exists():
        return str(here)
    found = shutil.which("vng")
    if not found:
        raise InfraError("virtme-ng (vng) not found", hint="pip install virtme-ng (`make setup` does it)")
    return found


def vng_env(home: Optional[Path] = None) -> dict[str, str]:
    """vng runs ``virtme-run`` by name: put the harness's bin dir first on PATH.

    ``home`` replaces HOME: virtme-ng keeps its SSH keys under $HOME/.cache/virtme-ng.
    """
    env = dict(os.environ)
    if home is not None:
        env["HOME"] = str(home)
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    return env


def check_qemu(arch: Optional[Arch] = None) -> None:
    arch = arch or arches.host()
    if shutil.which(arch.qemu) is None:
        raise InfraError(f"{arch.qemu} not found (it boots {arch.name} guests)",
                         hint=f"install the package '{arch.qemu_package}' (`make setup` does it)")

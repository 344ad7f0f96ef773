"""The guest architectures the harness boots, by Debian's name, and what each needs on the host.

A guest of the host's own architecture may use KVM; any other runs under TCG, and its root's
programs (maintainer scripts, the module build) run on the host through qemu-user, which the
kernel finds with binfmt_misc.
"""

from __future__ import annotations

import platform
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

from harness.errors import InfraError, UsageError

BINFMT_DIR = Path("/proc/sys/fs/binfmt_misc")


@dataclass(frozen=True)
class Arch:
    """Every fact the harness knows about one guest architecture: no other module names one."""

    name: str  # Debian's: mmdebstrap's --architectures, apt's APT::Architecture, the spec's :ARCH
    machine: str  # uname -m
    flavour: str  # Debian's kernel flavour: linux-image-FLAVOUR, and releases end in -FLAVOUR
    qemu: str  # the system emulator
    qemu_package: str  # the Debian package that has it
    binfmt: str  # qemu-user's binfmt_misc entry (qemu-user-static's /usr/lib/binfmt.d/BINFMT.conf)
    vng: str  # virtme-ng's --arch
    tree_image: str  # the boot image inside a built kernel tree (virtme-ng's kimg_path)
    package_images: tuple[str, ...]  # the boot image's names in Debian's kernel packages: NAME-RELEASE
    console: str  # the serial console the kernel writes to (virtme-ng's serial_console_args)
    pvh: bool = False  # Debian's image unpacks to an ELF that boots through PVH (harness/kernel/pvh.py)
    # QEMU -machine for every accelerator (None: virtme-ng's own choice). On x86 virtme-ng gives TCG
    # q35 and KVM QEMU's default (i440fx), whose ACPI and PCI differ: a step reading them would pass
    # under one and fail under the other. q35 is what every TCG run here has been measured on.
    qemu_machine: Optional[str] = None
    # The kernel's __START_KERNEL_map, where the module area's place is reckoned from (harness faults
    # filters injection to it); None where the harness does not know it, and faults refuse the arch.
    start_kernel_map: Optional[int] = None

    def module_area(self, has: Callable[[str], bool]) -> Optional[tuple[int, int]]:
        """[MODULES_VADDR, MODULES_END) from the kernel's configuration (``has``: is CONFIG_X set),
        as x86_64's arch/x86/include/asm/page_64_types.h and pgtable_64_types.h (6.12) define them."""
        if self.start_kernel_map is None:
            return None
        image = (1 << 30) if has("RANDOMIZE_BASE") else (512 << 20)
        end = 0xFFFFFFFFFE000000 if has("DEBUG_KMAP_LOCAL_FORCE_MAP") else 0xFFFFFFFFFF000000
        return self.start_kernel_map + image, end


ARCHES = {
    "amd64": Arch("amd64", "x86_64", "amd64", "qemu-system-x86_64", "qemu-system-x86", "qemu-x86_64",
                  vng="x86_64", tree_image="arch/x86/boot/bzImage", package_images=("vmlinuz",),
                  console="ttyS0", pvh=True, qemu_machine="q35", start_kernel_map=0xFFFFFFFF80000000),
    "arm64": Arch("arm64", "aarch64", "arm64", "qemu-system-aarch64", "qemu-system-arm", "qemu-aarch64",
                  vng="arm64", tree_image="arch/arm64/boot/Image", package_images=("vmlinuz",),
                  console="ttyAMA0"),
    "riscv64": Arch("riscv64", "riscv64", "riscv64", "qemu-system-riscv64", "qemu-system-misc", "qemu-riscv64",
                    vng="riscv64", tree_image="arch/riscv/boot/Image", package_images=("vmlinux",),
                    console="ttyS0"),
}
# The architecture whose name is left out where the others' are written: a kernel spec's written form
# (debian:bookworm, debian:bookworm:arm64), and so results directories and the apt index's directory.
UNWRITTEN = "amd64"
_BY_MACHINE = {a.machine: a for a in ARCHES.values()}


def host() -> Arch:
    """The host's architecture (amd64 on a machine the harness does not know: it was made there)."""
    return _BY_MACHINE.get(platform.machine(), ARCHES["amd64"])


def get(name: str, where: str = "--arch") -> Arch:
    try:
        return ARCHES[name]
    except KeyError:
        raise UsageError(f"{where} {name!r}: unknown architecture; known: {', '.join(ARCHES)}",
                         hint="Debian's names: " + ", ".join(f"{a.name} ({a.machine})" for a in ARCHES.values())
                         ) from None


def foreign(arch: Arch) -> bool:
    return arch.name != host().name


def binfmt_problem(arch: Arch, binfmt_dir: Path = BINFMT_DIR) -> Optional[str]:
    """Why the host cannot run ``arch``'s programs (None: it can, or they are the host's own)."""
    if not foreign(arch):
        return None
    if not (binfmt_dir / "register").exists():
        return f"binfmt_misc is not mounted at {binfmt_dir}"
    entry = binfmt_dir / arch.binfmt
    if not entry.exists():
        return f"no binfmt_misc entry {arch.binfmt} (qemu-user-static's) is registered"
    text = entry.read_text()
    if not text.startswith("enabled"):
        return f"the binfmt_misc entry {arch.binfmt} is disabled"
    if "flags: " in text and "F" not in text.split("flags: ", 1)[1].split("\n", 1)[0]:
        return (f"the binfmt_misc entry {arch.binfmt} lacks the F flag: its interpreter cannot be found "
                "inside a root")
    return None


def check_binfmt(arch: Arch) -> None:
    problem = binfmt_problem(arch)
    if problem is not None:
        raise InfraError(
            f"{arch.name} roots and module builds run {arch.name} programs on this {host().name} host "
            f"through qemu-user, but {problem}",
            hint="install qemu-user-static, then as root: mount -t binfmt_misc binfmt_misc "
            f"{BINFMT_DIR} (if not mounted) and cat /usr/lib/binfmt.d/{arch.binfmt}.conf > "
            f"{BINFMT_DIR}/register; `make setup` does both")

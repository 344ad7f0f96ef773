"""Guest start-up cuts in a kernel root: what virtme-ng's init would do that no test needs.

virtme-ng stays the engine; its init runs udev, systemd-tmpfiles and module autoload whenever
the root has them, so the cuts are made in the root: a modprobe blacklist, masks in /etc (the
programs' own override mechanism), and for roots whose kernel needs no coldplug a udevadm shim.
Every path added is listed in the root (CUTS_FILE), so a root can be put back as mmdebstrap
made it (bench/startup.py does, for its baseline).
"""

from __future__ import annotations

import os
from pathlib import Path

from harness import resources

# Modules udev's coldplug would load for QEMU's q35 devices that no test here
# uses (disk/cdrom controllers, watchdogs, KVM, input, crypto accelerators).
# Under emulation each one costs seconds of guest start-up (docs/PERFORMANCE.md,
# "udev blacklist"). Only alias loads are blocked: `insmod` and `modprobe NAME`
# still work. The list goes into the root's /etc/modprobe.d rather than onto the
# kernel command line: virtme-ng writes an init script into the root itself once
# the command line passes its cap (KERNEL_CMDLINE_MAX in virtme/commands/run.py).
UNUSED_MODULES = (
    "ahci", "libahci", "libata", "ata_piix", "sr_mod", "cdrom", "sg", "floppy", "parport_pc",
    "i6300esb", "iTCO_wdt", "iTCO_vendor_support", "intel_pmc_bxt", "lpc_ich", "i2c_i801", "i2c_smbus",
    "kvm", "kvm_amd", "kvm_intel", "irqbypass", "edac_mce_amd", "powernow_k8",
    "evdev", "joydev", "psmouse", "serio_raw", "pcspkr", "snd_pcsp", "button", "qemu_fw_cfg",
    "aesni_intel", "ccp", "crc32_pclmul", "crc32c_intel", "crct10dif_pclmul", "cryptd", "crypto_simd",
    "ghash_clmulni_intel", "sha1_ssse3", "sha256_ssse3", "sha512_ssse3", "sha512_generic",
)

BLACKLIST_FILE = "etc/modprobe.d/kmod-harness-blacklist.conf"

# What else the guest's start-up does that no test needs, cut in the root (virtme-ng
# stays the engine; its init runs these whenever the root has them):
# - udev rules: virtme-ng-init needs udev for /dev/virtio-ports/* (its exec channel,
#   50-udev-default.rules) and for module autoload (80-drivers.rules: virtio_net, without
#   which virtme-ng-init waits for eth0 forever when --ssh asks for a network; the
#   blacklist above keeps the rest out). Every other rule file (persistent names, input,
#   sound, hwdb lookups) is masked with a link to /dev/null in /etc/udev/rules.d, udev's
#   own override mechanism.
# - systemd-tmpfiles (trixie on): virtme-ng-init runs it over tmpfiles.d, which sets up
#   journald, systemd and package state this guest never uses; each file is masked in
#   /etc/tmpfiles.d the same way.
KEEP_UDEV_RULES = ("50-udev-default.rules", "80-drivers.rules")
MASKS = {"udev/rules.d": "rules", "tmpfiles.d": "conf"}
CUTS_FILE = "etc/kmod-harness-cuts.txt"  # every path the cuts added (bench/startup.py undoes them)

# Base roots only (tree kernels: debian-src:, local:): udev's coldplug is skipped. Such a
# kernel (virtme-ng's minimal configuration) has every driver the guest uses built in, so
# udev has nothing to load; what virtme-ng-init needs from it is the /dev/virtio-ports/NAME
# links of its exec channel. On the KASAN kernel under TCG, `udevadm trigger` took 100-120 s
# and `udevadm settle` ran into virtme-ng-init's 300 s timeout in every boot on one machine
# (docs/PERFORMANCE.md). virtme-ng-init calls `udevadm` from its default path, so the root's
# udevadm becomes this script: `trigger` does nothing, `settle` makes the port links from
# sysfs, anything else runs the real program (moved aside; systemd-udevd points at it).
#
# Foreign roots (another architecture's Debian kernel, booted with virtme-ng's shell init under
# TCG, where udev's coldplug took 33 s of a 94 s boot) get the same shim, but their kernel's
# drivers are modules: `trigger --type=devices` loads the modules of the devices there are, as
# udev's coldplug would (one modprobe for every modalias; the blacklist applies).
UDEV_SHIM_VERSION = 1
# The shim itself is harness/guest/udevadm-shim.sh; a foreign root's `trigger` becomes this.
COLDPLUG_TRIGGER = """trigger)
    case " $* " in
    *" --type=devices "*) modprobe -qab $(cat /sys/bus/*/devices/*/modalias 2>/dev/null) 2>/dev/null ;;
    esac
    exit 0 ;;"""


def udev_shim(foreign: bool = False) -> str:
    """The udevadm shim's text: a base root's (trigger does nothing), or a foreign root's."""
    shim = resources.guest_file("udevadm-shim.sh").read_text()
    if foreign:
        shim = shim.replace("a base root for tree kernels", "a foreign root (modules by modalias)"
                            ).replace("trigger) exit 0 ;;", COLDPLUG_TRIGGER)
    return shim


def apply_startup_cuts(root: Path) -> list[str]:
    """The module blacklist, and masks for what the guest's start-up need not do (see KEEP_UDEV_RULES);
    returns the paths added."""
    (root / BLACKLIST_FILE).write_text(
        "# Written by kmod-harness: udev need not load these for QEMU's devices (harness/kernel/cuts.py).\n"
        + "".join(f"blacklist {m}\n" for m in UNUSED_MODULES))
    added = [BLACKLIST_FILE]
    for sub, suffix in MASKS.items():
        names = {p.name for base in ("usr/lib", "lib") for p in (root / base / sub).glob(f"*.{suffix}")}
        if sub == "udev/rules.d":
            names -= set(KEEP_UDEV_RULES)
        mask_dir = root / "etc" / sub
        mask_dir.mkdir(parents=True, exist_ok=True)
        for name in sorted(names):
            mask = mask_dir / name
            if not mask.exists() and not mask.is_symlink():  # the admin's own file wins, as in udev
                mask.symlink_to("/dev/null")
                added.append(str(mask.relative_to(root)))
    (root / CUTS_FILE).write_text("".join(a + "\n" for a in added))
    return added


def install_udev_shim(root: Path, foreign: bool = False) -> None:
    """Put the udevadm shim in place of the root's udevadm (base and foreign roots, see udev_shim)."""
    shim = udev_shim(foreign)
    udevadm = next((p for p in (root / "usr/bin/udevadm", root / "bin/udevadm") if p.is_file()
                    and not p.is_symlink()), root / "usr/bin/udevadm")
    real = root / "usr/lib/kmod-harness/udevadm"
    real.parent.mkdir(parents=True, exist_ok=True)
    udevadm.rename(real)
    seen: set[Path] = set()  # lib/systemd is usr/lib/systemd where /lib links to usr/lib
    for udevd in (root / "usr/lib/systemd/systemd-udevd", root / "lib/systemd/systemd-udevd"):
        where = udevd.parent.resolve()
        if udevd.is_symlink() and where not in seen:
            seen.add(where)
            udevd.unlink()
            udevd.symlink_to(os.path.relpath(real.resolve(), where))
    udevadm.write_text(shim.replace("/usr/lib/kmod-harness/udevadm", "/" + str(real.relative_to(root))))
    udevadm.chmod(0o755)


def undo_startup_cuts(root: Path) -> None:
    """Remove what apply_startup_cuts (and the blacklist) added: a root as mmdebstrap made it."""
    for rel in (root / CUTS_FILE).read_text().split():
        (root / rel).unlink(missing_ok=True)
    (root / CUTS_FILE).unlink()

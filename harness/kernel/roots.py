"""Minimal Debian roots, one per kernel, made with mmdebstrap and cached.

A root holds the kernel image, its modules, headers and kbuild at their
canonical paths (their Makefiles hold absolute paths), the suite's own gcc,
and what virtme-ng's guest init needs. Roots are made in a temporary directory
beside the cache entry and renamed into place only when complete and checked,
under a lock, so a crash, a full disk or a second harness never leaves or uses
a half-made root. A manifest records the kernel image's size and hash so a
damaged cache entry is noticed before boot and rebuilt.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Optional

from harness import arches, procs
from harness.cache import cache_dir, read_manifest, sha256_file
from harness.errors import InfraError, UsageError
from harness.events import Note, Progress, Sink
from harness.kernel import pvh
from harness.kernel.apt import Mirror
from harness.kernel.cuts import (
    BLACKLIST_FILE,
    CUTS_FILE,
    UDEV_SHIM_VERSION,
    UNUSED_MODULES,
    apply_startup_cuts,
    install_udev_shim,
)
from harness.kernel.spec import DEFAULT_RELEASE
from harness.locks import atomic_dir, locked, remove_tree
from harness.model import ResolvedKernel

# What every root gets besides the kernel packages and the suite's compiler.
BASE_PACKAGES = (
    "make", "libc6-dev", "kmod", "dwarves",  # module build (pahole for BTF)
    "perl",  # W=1 builds run kernel-doc, which needs more than perl-base from 6.12 on
    "python3",  # guest runner and client
    "udev", "mount", "iproute2", "busybox",  # virtme-ng's guest init (busybox: udhcpc for --ssh)
    "openssh-server",  # --transport ssh and live sessions
)

# Directories the guest mounts host directories onto (virtme-ng needs them to exist).
GUEST_MOUNTS = ("harness", "project")
# Base roots (tree kernels) have no kernel package: /lib/modules is made empty for the
# tree's modules to be mounted on (through the lib -> usr/lib link where there is one).
BASE_MOUNTS = ("lib/modules",)
ROOT_FORMAT = 4  # bump when the way roots are made changes

MANIFEST = ".harness-root.json"


@dataclass(frozen=True)
class Root:
    path: Path
    kernel: ResolvedKernel
    modules: Optional[Path] = None  # a tree kernel's installed modules (host), mounted at /lib/modules
    boot: Optional[Path] = None  # the root's kernel unpacked for a PVH boot (kernel/pvh.py), when it can

    @property
    def vmlinuz(self) -> Path:
        """The kernel image: a tree's bzImage (virtme-ng then reads the tree's .config), or the root's."""
        if self.kernel.tree is not None:
            return self.kernel.tree / "arch/x86/boot/bzImage"
        return find_vmlinuz(self.path, self.kernel.release)

    @property
    def image(self) -> Path:
        """What the guest boots: the unpacked kernel where there is one, else the image."""
        return self.boot or self.vmlinuz

    @property
    def headers(self) -> str:
        """What modules are built against: the headers inside the root, or the kernel tree on the host."""
        if self.kernel.tree is not None:
            return str(self.kernel.tree)
        return f"/usr/src/linux-headers-{self.kernel.release}"

    def config(self) -> str:
        """The kernel's .config: a tree's own, or the one Debian installs beside its image ("" if none)."""
        path = (self.kernel.tree / ".config" if self.kernel.tree is not None
                else self.path / "boot" / f"config-{self.kernel.release}")
        return path.read_text(errors="replace") if path.is_file() else ""

    def has(self, option: str) -> bool:
        """Whether the kernel's configuration sets ``CONFIG_<option>`` (built in or as a module)."""
        return re.search(rf"^CONFIG_{option}=[ym]$", self.config(), re.MULTILINE) is not None


def find_vmlinuz(root: Path, release: str) -> Path:
    for rel in (f"boot/vmlinuz-{release}", f"usr/lib/modules/{release}/vmlinuz", f"lib/modules/{release}/vmlinuz"):
        if (root / rel).is_file():
            return root / rel
    raise InfraError(f"no kernel image for {release} in {root}")


def root_packages(kernel: ResolvedKernel) -> list[str]:
    if kernel.tree is not None:  # a base root: the kernel and the compiler are the host's (packages: extras only)
        return sorted(set(BASE_PACKAGES) | set(kernel.packages))
    base = set(BASE_PACKAGES)
    if foreign_root(kernel):  # virtme-ng's initramfs takes the root's busybox, which must be static
        base = base - {"busybox"} | {"busybox-static"}
    return sorted(set(kernel.packages) | {kernel.compiler} | base)


def foreign_root(kernel: ResolvedKernel) -> bool:
    """A root of another architecture than the host's: made, and its programs run, through qemu-user."""
    return arches.foreign(arches.get(kernel.spec.arch))


# A foreign root's update-initramfs is diverted to `true` before the kernel is installed:
# virtme-ng boots with an initramfs of its own, and under qemu-user making Debian's took
# over 25 minutes (docs/PERFORMANCE.md, arm64). INITRD=No alone does not reach every hook.
FOREIGN_ROOT_VERSION = 2  # 2: the udev shim
DIVERT_INITRAMFS = (
    'chroot "$1" dpkg-divert --quiet --local --rename --divert /usr/sbin/update-initramfs.kmod-harness '
    '--add /usr/sbin/update-initramfs && mkdir -p "$1/usr/sbin" && '
    'printf "#!/bin/sh\\n# kmod-harness: virtme-ng makes its own initramfs\\nexit 0\\n" '
    '> "$1/usr/sbin/update-initramfs" && chmod 755 "$1/usr/sbin/update-initramfs"'
)


def mount_points(kernel: ResolvedKernel) -> tuple[str, ...]:
    return GUEST_MOUNTS + (BASE_MOUNTS if kernel.tree is not None else ())


def with_packages(kernel: ResolvedKernel, extra: tuple[str, ...]) -> ResolvedKernel:
    """The kernel with a project's extra guest packages (``[guest] packages``): its root is a root of
    its own, made once per package list; the kernel's plain root is never touched."""
    if not extra:
        return kernel
    return replace(kernel, packages=kernel.packages + tuple(sorted(set(extra) - set(kernel.packages))),
                   extra_packages=tuple(sorted(set(extra))))


def root_key(kernel: ResolvedKernel) -> str:
    layer = ("+" + hashlib.sha256(" ".join(kernel.extra_packages).encode()).hexdigest()[:8]
             if kernel.extra_packages else "")
    if kernel.tree is not None:  # every tree kernel of a suite shares that suite's base root
        h = hashlib.sha256(json.dumps([ROOT_FORMAT, root_packages(kernel), UNUSED_MODULES, BASE_MOUNTS,
                                       UDEV_SHIM_VERSION]).encode())
        return f"base-{kernel.spec.suite}{layer}-{h.hexdigest()[:10]}"
    h = hashlib.sha256(json.dumps([ROOT_FORMAT, root_packages(kernel), kernel.package_version, UNUSED_MODULES]
                                  + ([kernel.spec.arch, FOREIGN_ROOT_VERSION] if foreign_root(kernel) else [])
                                  ).encode())
    return f"{kernel.kernel_id}{layer}-{h.hexdigest()[:10]}"


def _essentials(root: Path, kernel: ResolvedKernel) -> dict[str, tuple[Path, ...]]:
    """What a usable root must hold; any one of the alternatives will do (bullseye is not usrmerged)."""
    r = kernel.release
    kernel_parts = {
        "headers Makefile": (root / f"usr/src/linux-headers-{r}/Makefile",),
        "modules.dep": (root / f"lib/modules/{r}/modules.dep", root / f"usr/lib/modules/{r}/modules.dep"),
        "compiler": (root / f"usr/bin/{kernel.compiler}",),
    }
    return {
        **(kernel_parts if kernel.tree is None else {}),
        "python3": (root / "usr/bin/python3",),
        "udevadm": (root / "usr/bin/udevadm", root / "bin/udevadm"),
        "module blacklist": (root / BLACKLIST_FILE,),
        "start-up cuts": (root / CUTS_FILE,),
    }


def write_manifest(root: Path, kernel: ResolvedKernel) -> None:
    manifest: dict = {"format": ROOT_FORMAT, "packages": root_packages(kernel)}
    if kernel.tree is None:
        img = find_vmlinuz(root, kernel.release)
        manifest.update({
            "kernel": str(kernel.spec),
            "release": kernel.release,
            "package_version": kernel.package_version,
            "vmlinuz": str(img.relative_to(root)),
            "vmlinuz_size": img.stat().st_size,
            "vmlinuz_sha256": sha256_file(img),
        })
    else:
        manifest["base"] = kernel.spec.suite
    (root / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n")


def check_root(root: Path, kernel: ResolvedKernel) -> Optional[str]:
    """Why the cached root is unusable, or None when it is sound."""
    manifest, problem = read_manifest(root / MANIFEST)
    if manifest is None:
        return problem
    if kernel.tree is not None:
        if manifest.get("base") != kernel.spec.suite:
            return f"not a base root of {kernel.spec.suite}"
    else:
        problem = _check_image(root, manifest)
        if problem:
            return problem
    for what, paths in _essentials(root, kernel).items():
        if not any(p.exists() for p in paths):
            return f"{what} is missing ({paths[0].relative_to(root)})"
    for d in mount_points(kernel):
        if not (root / d).is_dir():
            return f"mount point /{d} is missing"
    return None


def _check_image(root: Path, manifest: dict) -> Optional[str]:
    img = root / manifest.get("vmlinuz", "-")
    if not img.is_file():
        return f"kernel image {manifest.get('vmlinuz')} is missing"
    if img.stat().st_size != manifest.get("vmlinuz_size"):
        return f"kernel image {img.name} has {img.stat().st_size} bytes, expected {manifest.get('vmlinuz_size')}"
    if sha256_file(img) != manifest.get("vmlinuz_sha256"):
        return f"kernel image {img.name} does not match its recorded sha256"
    return None


def ensure_root(kernel: ResolvedKernel, mirror: Mirror, sink: Sink, timeout: float,
                cache: Optional[Path] = None) -> Root:
    """Return the cached root for ``kernel``, making (or remaking) it when needed."""
    roots = (cache or cache_dir()) / "roots"
    key = root_key(kernel)
    dest = roots / key
    with locked(roots / f"{key}.lock"):
        _remove_leftovers(roots, key, sink)
        if dest.exists():
            _remove_stale_init_scripts(dest)
            problem = check_root(dest, kernel)
            if problem is None:
                sink(Note(f"using cached root {dest}", verbose=True))
                return with_boot_image(Root(dest, kernel), sink)
            sink(Note(f"    cached root {dest} is damaged: {problem}; rebuilding it"))
            left = remove_tree(dest)
            if left:
                raise InfraError(f"cannot remove the damaged root {dest}: {'; '.join(left[:3])}",
                                 hint="unmount what is mounted in it, then remove it by hand")
        make_root(kernel, mirror, dest, sink, timeout)
        return with_boot_image(Root(dest, kernel), sink)


def with_boot_image(r: Root, sink: Sink) -> Root:
    """An x86 Debian kernel boots through PVH (kernel/pvh.py): its unpacked image is made once,
    beside the packaged one; the root's lock is held."""
    if r.kernel.tree is not None or r.kernel.spec.arch != "amd64":
        return r
    image, why = pvh.boot_image(r.vmlinuz)
    if why:
        sink(Note(f"    {why}"))
        return r
    return replace(r, boot=image)


UNFINISHED_AGE = 6 * 3600  # a .tmp-* entry older than this belongs to no running build


def stale_roots(roots: Path, now: Optional[float] = None) -> list[tuple[Path, str]]:
    """Roots this harness would never use again, each with the reason.

    Made with another root format; no manifest (a foreign or broken entry); a
    leftover of an interrupted build (``.tmp-*``, older than UNFINISHED_AGE); or
    superseded: for each kernel (the key without its hash), every root but the one
    used last. Use is read from the entry's lock file, which every run rewrites
    when it takes the lock.
    """
    now = time.time() if now is None else now
    out: list[tuple[Path, str]] = []
    current: dict[str, list[Path]] = {}
    for d in sorted(roots.iterdir()) if roots.is_dir() else []:
        if not d.is_dir():
            continue
        if d.name.startswith(".tmp-"):
            if now - d.stat().st_mtime > UNFINISHED_AGE:
                out.append((d, "left by an interrupted build"))
            continue
        manifest, problem = read_manifest(d / MANIFEST)
        if manifest is None:
            out.append((d, problem or "no manifest"))
        elif manifest.get("format") != ROOT_FORMAT:
            out.append((d, f"made with root format {manifest.get('format')}; this harness makes {ROOT_FORMAT}"))
        else:
            current.setdefault(d.name.rsplit("-", 1)[0], []).append(d)
    for entries in current.values():
        entries.sort(key=lambda d: _last_used(roots, d), reverse=True)
        out += [(d, f"superseded by {entries[0].name} (used later)") for d in entries[1:]]
    return out


def _last_used(roots: Path, d: Path) -> float:
    lock = roots / f"{d.name}.lock"
    return lock.stat().st_mtime if lock.exists() else (d / MANIFEST).stat().st_mtime


def remove_root(d: Path) -> list[str]:
    """Delete a root with its log and lock (under its lock, so no run is making it meanwhile);
    returns what could not be deleted (see locks.remove_tree: mounts are undone, never entered)."""
    key = d.name[len(".tmp-"):].rsplit("-", 1)[0] if d.name.startswith(".tmp-") else d.name  # .tmp-KEY-XXXX
    lock = d.parent / f"{key}.lock"
    with locked(lock):
        left = remove_tree(d)
        if not d.name.startswith(".tmp-"):
            (d.parent / f"{d.name}.log").unlink(missing_ok=True)
    if not d.name.startswith(".tmp-"):
        lock.unlink(missing_ok=True)
    return left


def _remove_leftovers(roots: Path, key: str, sink: Sink) -> None:
    """An earlier run making this root was killed: its temporary directory goes (the key's lock is
    held, so no run is making it now). A harness killed while mmdebstrap ran leaves no mounts (it runs
    in a mount namespace of its own), but an older one may have: they are undone, never entered."""
    for tmp in roots.glob(f".tmp-{key}-*"):
        left = remove_tree(tmp)
        sink(Note(f"    removed {tmp}, left by an interrupted run" + (f" (but: {'; '.join(left)})" if left else "")))


def _remove_stale_init_scripts(root: Path, age: float = 3600) -> None:
    """virtme-ng writes its guest init script into the root (/virtme-init-XXXX) when the
    kernel command line is long, as it always is with a root and two shared directories,
    and removes it at exit; a vng that was killed leaves it behind. A boot reads it in its
    first seconds, so one older than ``age`` belongs to no running guest."""
    now = time.time()
    for p in root.glob("virtme-init-*"):
        try:
            if now - p.stat().st_mtime > age:
                p.unlink()
        except OSError:
            pass


def make_root(kernel: ResolvedKernel, mirror: Mirror, dest: Path, sink: Sink, timeout: float) -> None:
    mmdebstrap = procs.require_tool("mmdebstrap", "mmdebstrap")
    procs.require_tool("unshare", "util-linux")
    if foreign_root(kernel):
        arches.check_binfmt(arches.get(kernel.spec.arch))
        procs.require_tool("arch-test", "arch-test")  # mmdebstrap asks it whether the host runs the arch
    log_path = dest.parent / f"{dest.name}.log"
    # INITRD=No makes the kernel's postinst skip update-initramfs: virtme-ng boots
    # the image with its own initramfs, so the one initramfs-tools builds is never used.
    env = dict(os.environ, INITRD="No", LC_ALL="C")
    with atomic_dir(dest) as tmp:
        with open(log_path, "w") as log:
            res = procs.run(mmdebstrap_argv(mmdebstrap, kernel, mirror, tmp), timeout=timeout, what="mmdebstrap",
                            log=log, env=env, on_line=lambda _n, line: sink(Progress(line)))
        missing = _missing_extra(res.stderr, kernel) if res.returncode != 0 else None
        if missing:
            raise UsageError(f"[guest] packages: {missing!r} is not a package of {kernel.spec.suite} at "
                             f"{mirror.debian}", hint=f"check its name at packages.debian.org ({kernel.spec.suite})")
        if res.returncode != 0:
            raise InfraError(
                f"mmdebstrap failed (exit {res.returncode}) making the root for {kernel.release}; "
                f"log: {log_path}\n" + "\n".join("  " + ln for ln in res.stderr.strip().splitlines()[-12:]),
                hint=_mmdebstrap_hint(res.stderr),
            )
        apply_startup_cuts(tmp)
        if kernel.tree is not None:
            install_udev_shim(tmp)
        elif foreign_root(kernel):
            install_udev_shim(tmp, foreign=True)
        write_manifest(tmp, kernel)
        problem = check_root(tmp, kernel)
        if problem:
            raise InfraError(f"the new root for {kernel.release} is incomplete: {problem}; log: {log_path}")


def mmdebstrap_argv(mmdebstrap: str, kernel: ResolvedKernel, mirror: Mirror, target: Path) -> list[str]:
    hooks = [f'mkdir -p "$1/{d}"' for d in mount_points(kernel)]
    foreign = foreign_root(kernel)
    return [
        # A mount namespace of its own: the proc, sys and dev mounts mmdebstrap makes in the root
        # vanish with its processes, even when the harness is killed (SIGKILL) while it works.
        "unshare", "--mount", "--propagation", "private", "--",
        mmdebstrap, "--variant=apt", "--mode=root",
        *([f"--architectures={kernel.spec.arch}", f"--essential-hook={DIVERT_INITRAMFS}"] if foreign else []),
        "--include=" + ",".join(root_packages(kernel)),
        *[f"--customize-hook={h}" for h in hooks],
        *[f"--aptopt={o.split('=', 1)[0]} \"{o.split('=', 1)[1]}\"" for o in mirror.apt_options],
        # experimental: take the kernel's own packages (source package linux) from it, and
        # everything else from sid. Preferring experimental wholesale (Default-Release)
        # mixed its newer perl with sid's perl modules: unsatisfiable.
        *([f"--setup-hook=mkdir -p \"$1/etc/apt/preferences.d\" && printf 'Package: src:linux\\n"
           f"Pin: release a={DEFAULT_RELEASE[kernel.spec.suite]}\\nPin-Priority: 990\\n' "
           f"> \"$1/etc/apt/preferences.d/kmod-harness-kernel.pref\""]
          if kernel.spec.suite in DEFAULT_RELEASE else []),
        kernel.spec.suite, str(target), *mirror.sources(kernel.spec.suite),
    ]


def _missing_extra(stderr: str, kernel: ResolvedKernel) -> Optional[str]:
    for name in kernel.extra_packages:
        if re.search(rf"(Unable to locate package {re.escape(name)}\b|Package '?{re.escape(name)}'? has no "
                     r"installation candidate)", stderr):
            return name
    return None


def _mmdebstrap_hint(stderr: str) -> str:
    if "No space left on device" in stderr:
        return "the disk holding the cache is full: free space or set HARNESS_CACHE elsewhere"
    if "Unable to locate package" in stderr or "has no installation candidate" in stderr:
        return "a package is not in the suite at this mirror: check the kernel spec and --mirror"
    if "Operation not permitted" in stderr or "must be root" in stderr:
        return "making a root needs root (run with sudo)"
    return "see the log for apt's own error"

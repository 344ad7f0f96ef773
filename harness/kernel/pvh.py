"""Boot Debian's x86 kernels straight into the kernel (PVH) instead of through their bzImage.

A bzImage starts in real mode under the firmware and unpacks itself (xz on 5.10 and 6.1,
zstd from 6.12) before any kernel code runs: under TCG that took 3-4 s of each boot here,
a quarter of a warm ``harness run`` (docs/PERFORMANCE.md). What it unpacks is the kernel's
own ELF image (``arch/x86/boot/compressed/Makefile``: vmlinux.bin is vmlinux through
``objcopy -S``, compressed with its size appended). A kernel built with ``CONFIG_PVH``
carries the PVH entry note (``XEN_ELFNOTE_PHYS32_ENTRY``, ``arch/x86/platform/pvh/head.S``),
and QEMU's ``-kernel`` boots such an ELF directly, initrd and command line included. So the
payload is unpacked once per root, into the root's ``boot/`` beside the image, and virtme-ng
is given that file: it reads the kernel's version from it and the modules from the root as
before. Anything else (another architecture, another compressor, no PVH note) boots the
image as Debian ships it.
"""

from __future__ import annotations

import lzma
import os
import shutil
import struct
import tempfile
import zlib
from pathlib import Path
from typing import Optional

from harness import procs

PVH_NOTE = 18  # XEN_ELFNOTE_PHYS32_ENTRY (include/xen/interface/elfnote.h)
PT_NOTE = 4
XZ_MAGIC = b"\xfd7zXZ\x00"
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
GZIP_MAGIC = b"\x1f\x8b"


class Unusable(Exception):
    """The image cannot be booted through PVH; the message says why."""


def _span(head: bytes) -> tuple[int, int]:
    """Where a bzImage's payload starts and how long it is, from its setup header (boot protocol
    2.08 on: ``setup_sects`` at 0x1f1, 0 meaning 4; ``payload_offset`` at 0x248, ``payload_length``
    at 0x24c, counted from the end of the setup sectors)."""
    if len(head) < 0x250 or head[0x202:0x206] != b"HdrS":
        raise Unusable("not a bzImage")
    offset, length = struct.unpack_from("<II", head, 0x248)
    if length < 8:
        raise Unusable("its payload lies outside the file")
    return ((head[0x1F1] or 4) + 1) * 512 + offset, length


def payload(image: bytes) -> tuple[bytes, int]:
    """The compressed kernel inside a bzImage, and the size it unpacks to (the kernel's build
    appends it to the compressed data)."""
    start, length = _span(image)
    data = image[start:start + length]
    if len(data) != length:
        raise Unusable("its payload lies outside the file")
    return data[:-4], struct.unpack("<I", data[-4:])[0]


def unpacked_size(image: Path) -> int:
    """What the image's kernel unpacks to, reading only its header and the payload's last bytes."""
    with image.open("rb") as f:
        start, length = _span(f.read(0x250))
        f.seek(start + length - 4)
        tail = f.read(4)
    if len(tail) != 4:
        raise Unusable("its payload lies outside the file")
    return int(struct.unpack("<I", tail)[0])


def has_pvh_note(elf: bytes) -> bool:
    """Whether a 64-bit little-endian ELF image carries the PVH entry note."""
    if elf[:4] != b"\x7fELF" or elf[4] != 2 or elf[5] != 1:
        return False
    phoff, = struct.unpack_from("<Q", elf, 0x20)
    phentsize, phnum = struct.unpack_from("<HH", elf, 0x36)
    for i in range(phnum):
        ptype, _flags, off, _va, _pa, filesz = struct.unpack_from("<IIQQQQ", elf, phoff + i * phentsize)
        if ptype != PT_NOTE:
            continue
        pos, end = off, off + filesz
        while pos + 12 <= end:
            namesz, descsz, ntype = struct.unpack_from("<III", elf, pos)
            name = elf[pos + 12:pos + 12 + namesz]
            if name == b"Xen\x00" and ntype == PVH_NOTE:
                return True
            pos += 12 + (namesz + 3) // 4 * 4 + (descsz + 3) // 4 * 4
    return False


def unpack(compressed: bytes, work: Path, timeout: float) -> bytes:
    """The kernel ELF: xz and gzip here, zstd with the zstd program (Python 3.10 has no zstd)."""
    if compressed.startswith(XZ_MAGIC):
        return lzma.LZMADecompressor().decompress(compressed)
    if compressed.startswith(GZIP_MAGIC):
        return zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(compressed)
    if compressed.startswith(ZSTD_MAGIC):
        if shutil.which("zstd") is None:
            raise Unusable("its payload is zstd, and the zstd program is missing (package zstd; `make setup`)")
        src, out = work / "payload.zst", work / "payload"
        src.write_bytes(compressed)
        done = procs.quick(["zstd", "-d", "-q", "-f", str(src), "-o", str(out)], timeout=timeout,
                           what="unpacking the kernel (zstd)")
        if done.returncode != 0:
            raise Unusable(f"zstd -d failed: {done.output.strip()[-300:]}")
        return out.read_bytes()
    raise Unusable(f"its payload is compressed in a way not handled here (magic {compressed[:6].hex()})")


def image_name(vmlinuz: Path) -> Path:
    """Where the unpacked kernel goes: ``vmlinux-RELEASE`` beside ``vmlinuz-RELEASE`` (or ``vmlinux``)."""
    return vmlinuz.with_name(vmlinuz.name.replace("vmlinuz", "vmlinux", 1))


def boot_image(vmlinuz: Path, timeout: float = 120) -> tuple[Path, Optional[str]]:
    """The image to boot for ``vmlinuz``: its unpacked kernel when it can boot through PVH (made
    now when missing or cut short), else ``vmlinuz`` itself with the reason."""
    target = image_name(vmlinuz)
    try:
        size = unpacked_size(vmlinuz)
        if target.is_file() and target.stat().st_size == size:
            return target, None
        compressed, size = payload(vmlinuz.read_bytes())
        with tempfile.TemporaryDirectory(prefix=".pvh-", dir=target.parent) as tmp:
            elf = unpack(compressed, Path(tmp), timeout)
            if len(elf) != size:
                raise Unusable(f"it unpacked to {len(elf)} bytes, its header says {size}")
            if not has_pvh_note(elf):
                raise Unusable("the kernel has no PVH entry note (CONFIG_PVH)")
            part = Path(tmp) / target.name
            part.write_bytes(elf)
            os.replace(part, target)  # whole or not at all, whoever else is making it
        return target, None
    except (Unusable, OSError, lzma.LZMAError, zlib.error) as e:
        return vmlinuz, f"booting {vmlinuz.name} as it is: {e}"

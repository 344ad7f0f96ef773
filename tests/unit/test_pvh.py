"""The PVH boot image: a bzImage's payload unpacked, checked and kept beside it (harness/kernel/pvh.py).

The images here are made the way the kernel's build makes them (an ELF with its notes, compressed,
its size appended, behind a setup header); the real Debian kernels boot this way in every VM test
(tests/vm/test_run_vm.py checks which image the default run booted; the amd64 matrix covers xz and zstd).
"""

import lzma
import shutil
import struct
import subprocess

import pytest

from harness.kernel import pvh


def elf_with_notes(*notes: tuple[bytes, int, bytes]) -> bytes:
    """A 64-bit ELF whose one program header is a PT_NOTE segment holding ``notes`` (name, type, desc)."""
    body = b""
    for name, ntype, desc in notes:
        pad = lambda b: b + b"\0" * (-len(b) % 4)  # noqa: E731
        body += struct.pack("<III", len(name), len(desc), ntype) + pad(name) + pad(desc)
    header = bytearray(64)
    header[:6] = b"\x7fELF\x02\x01"
    struct.pack_into("<Q", header, 0x20, 64)  # e_phoff
    struct.pack_into("<HH", header, 0x36, 56, 1)  # e_phentsize, e_phnum
    phdr = struct.pack("<IIQQQQQQ", pvh.PT_NOTE, 4, 120, 0, 0, len(body), len(body), 4)
    return bytes(header) + phdr + body + b"kernel text" * 100


PVH = (b"Xen\x00", pvh.PVH_NOTE, b"\x00\x10\x00\x01")
OTHER_XEN = (b"Xen\x00", 6, b"linux\x00")


def bzimage(elf: bytes, compressed: bytes, setup_sects: int = 3, offset: int = 0x40) -> bytes:
    payload = compressed + struct.pack("<I", len(elf))  # what the kernel's *_with_size does
    setup = bytearray(((setup_sects or 4) + 1) * 512)
    setup[0x1F1] = setup_sects
    setup[0x202:0x206] = b"HdrS"
    struct.pack_into("<II", setup, 0x248, offset, len(payload))
    return bytes(setup) + b"\xee" * offset + payload + b"\x00" * 16


def xz(data: bytes) -> bytes:
    return lzma.compress(data, format=lzma.FORMAT_XZ, check=lzma.CHECK_CRC32)


def test_an_xz_kernel_with_the_pvh_note_is_unpacked_once_beside_its_image(tmp_path):
    elf = elf_with_notes(OTHER_XEN, PVH)
    img = tmp_path / "vmlinuz-6.1.0-57-amd64"
    img.write_bytes(bzimage(elf, xz(elf)))
    booted, why = pvh.boot_image(img)
    assert (booted, why) == (tmp_path / "vmlinux-6.1.0-57-amd64", None)
    assert booted.read_bytes() == elf
    made = booted.stat().st_mtime_ns
    assert pvh.boot_image(img) == (booted, None) and booted.stat().st_mtime_ns == made  # not made again
    assert sorted(p.name for p in tmp_path.iterdir()) == [booted.name, img.name]  # no work files left


def test_an_unpacked_image_cut_short_is_made_again(tmp_path):
    elf = elf_with_notes(PVH)
    img = tmp_path / "vmlinuz"
    img.write_bytes(bzimage(elf, xz(elf), setup_sects=0))  # 0 means 4, as in the boot protocol
    booted, _ = pvh.boot_image(img)
    booted.write_bytes(elf[:100])
    assert pvh.boot_image(img) == (tmp_path / "vmlinux", None)
    assert booted.read_bytes() == elf


@pytest.mark.skipif(shutil.which("zstd") is None, reason="zstd is installed by make setup")
def test_a_zstd_kernel_is_unpacked_with_the_zstd_program(tmp_path):
    elf = elf_with_notes(PVH)
    compressed = subprocess.run(["zstd", "-q", "-c"], input=elf, capture_output=True, check=True).stdout
    img = tmp_path / "vmlinuz-7.2.13+deb14-amd64"
    img.write_bytes(bzimage(elf, compressed))
    booted, why = pvh.boot_image(img)
    assert why is None and booted.read_bytes() == elf


@pytest.mark.parametrize("elf, image, reason", [
    (elf_with_notes(OTHER_XEN), None, "the kernel has no PVH entry note (CONFIG_PVH)"),
    (elf_with_notes(PVH), b"MZ not a kernel" * 50, "not a bzImage"),
    (elf_with_notes(PVH), "bzip2", "its payload is compressed in a way not handled here (magic 425a68393141)"),
    (elf_with_notes(PVH), "short", "it unpacked to"),
])
def test_what_cannot_boot_through_pvh_boots_as_it_is_and_says_why(tmp_path, elf, image, reason):
    import bz2
    if image is None:
        image = bzimage(elf, xz(elf))
    elif image == "bzip2":
        image = bzimage(elf, bz2.compress(elf))
    elif image == "short":
        image = bzimage(elf + b"more", xz(elf))  # the header promises more than the payload holds
    img = tmp_path / "vmlinuz-5.10.0-46-amd64"
    img.write_bytes(image)
    booted, why = pvh.boot_image(img)
    assert booted == img
    assert why is not None and why.startswith("booting vmlinuz-5.10.0-46-amd64 as it is: " + reason)
    assert [p.name for p in tmp_path.iterdir()] == [img.name]


def test_a_zstd_kernel_without_the_zstd_program_boots_as_it_is_and_names_the_package(tmp_path, monkeypatch):
    elf = elf_with_notes(PVH)
    img = tmp_path / "vmlinuz-6.12.118+deb13-amd64"
    img.write_bytes(bzimage(elf, pvh.ZSTD_MAGIC + b"\x00" * 64))
    monkeypatch.setattr(pvh.shutil, "which", lambda name: None)
    booted, why = pvh.boot_image(img)
    assert booted == img
    assert why == ("booting vmlinuz-6.12.118+deb13-amd64 as it is: its payload is zstd, and the zstd program "
                   "is missing (package zstd; `make setup`)")

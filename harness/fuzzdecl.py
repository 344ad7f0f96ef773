"""``[fuzz]`` in harness.toml: the interfaces ``harness fuzz`` sends inputs to.

    [[fuzz.netlink]]
    protocol = 30                       # netlink_kernel_create(&init_net, 30, ...)

    [[fuzz.chardev]]
    path = "/dev/mydev"
    ioctls = [{cmd = 0xc0084d01}, {cmd = 0x4d02, size = 16}]   # size: _IOC_SIZE(cmd) when left out

    [[fuzz.file]]
    path = "/proc/mymod"                # written, then read back

The pydantic models are part of ``schema.ProjectFile`` (its ``fuzz`` key): harness.toml is
checked in one place, with the same strictness, errors and docs/REFERENCE.md as every other
key. Pure, and importing nothing of the harness but the guest's netlink framing, so that
the schema can import it.

A project without ``[fuzz]`` gets declarations inferred from its sources where the module
makes them obvious (``infer``): a netlink protocol handed to ``netlink_kernel_create``, a
misc device's name, a ``/proc`` entry, ioctl numbers built with ``_IO``/``_IOR``/``_IOW``/``_IOWR``.
"""

from __future__ import annotations

import json
import re
import struct
from pathlib import Path
from typing import Any, Optional

from pydantic import BaseModel, ConfigDict, Field, model_validator

IOC_SIZE_SHIFT, IOC_SIZE_BITS = 16, 14  # include/uapi/asm-generic/ioctl.h
MAX_ARG = 4096
MAX_DATA = 4096  # bytes of one input's data: guest/fuzzmut.py's MAX_DATA
NLMSG = struct.Struct("=IHHII")  # struct nlmsghdr (include/uapi/linux/netlink.h): len, type, flags, seq, pid
PORT = 0x4B4D4800  # the port every fuzz socket binds: guest/fuzzexec.py's PORT


def nl_message(payload: bytes, mtype: int, flags: int, seq: int) -> bytes:
    """One well-formed message from the fuzz socket: nlmsg_len counts header and payload, padding follows."""
    length = NLMSG.size + len(payload)
    return NLMSG.pack(length, mtype, flags, seq, PORT) + payload + b"\0" * (((length + 3) & ~3) - length)


class _Strict(BaseModel):  # schema.Strict's configuration (schema imports this module, not the reverse)
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class NetlinkTemplate(_Strict):
    """A message to start from (the fuzzer also starts from well-formed hellos of its own)."""

    type: int = Field(default=0, ge=0, le=0xFFFF, description="nlmsg_type")
    flags: int = Field(default=0, ge=0, le=0xFFFF, description="nlmsg_flags, e.g. 1 for NLM_F_REQUEST")
    seq: int = Field(default=0, ge=0, le=0xFFFFFFFF, description="nlmsg_seq")
    payload: str = Field(default="", max_length=MAX_DATA, description="the payload, as text (UTF-8)")
    payload_hex: str = Field(default="", pattern=r"^([0-9a-fA-F]{2})*$", max_length=2 * MAX_DATA,
                             description="payload bytes as hex digits, appended to payload")

    def frame(self) -> bytes:
        """The whole message, its nlmsg_pid the fuzz socket's own port."""
        body = self.payload.encode() + bytes.fromhex(self.payload_hex)
        return nl_message(body, self.type, self.flags, self.seq)


class Netlink(_Strict):
    """`[[fuzz.netlink]]`: a netlink protocol the module opens; inputs go to its kernel socket's input callback."""

    protocol: int = Field(ge=0, le=31, description="the protocol number the module gives netlink_kernel_create "
                          "(MAX_LINKS is 32)")
    templates: list[NetlinkTemplate] = Field(default=[], max_length=64, description="messages to start from")


class Ioctl(_Strict):
    """One ioctl of a `[[fuzz.chardev]]`."""

    cmd: int = Field(ge=0, le=0xFFFFFFFF, description="the ioctl request number, as the module defines it")
    size: Optional[int] = Field(default=None, ge=0, le=MAX_ARG, description="bytes of the argument buffer "
                                "(default _IOC_SIZE(cmd)); 0 passes an integer argument")

    def arg_size(self) -> int:
        return self.size if self.size is not None else (self.cmd >> IOC_SIZE_SHIFT) & ((1 << IOC_SIZE_BITS) - 1)


class Chardev(_Strict):
    """`[[fuzz.chardev]]`: a device node the module creates: its ioctls, writes and reads."""

    path: str = Field(pattern=r"^/dev/\S+$", max_length=256, description="the device node in the guest, "
                      "e.g. /dev/mydev")
    ioctls: list[Ioctl] = Field(default=[], max_length=256, description="the ioctls to call")


class File(_Strict):
    """`[[fuzz.file]]`: a file the module creates (/proc, /sys): written, then read back."""

    path: str = Field(pattern=r"^/(proc|sys)/\S+$", max_length=256, description="the file in the guest, "
                      "e.g. /proc/mymod")


class FuzzDecl(_Strict):
    """`[fuzz]`: the interfaces `harness fuzz` sends inputs to (README: Fuzzing); at least one. Without it,
    `harness fuzz` infers them from the module's sources."""

    netlink: list[Netlink] = Field(default=[], max_length=32, description="netlink protocols")
    chardev: list[Chardev] = Field(default=[], max_length=64, description="device nodes")
    file: list[File] = Field(default=[], max_length=64, description="files written, then read")

    @model_validator(mode="after")
    def _some(self) -> "FuzzDecl":
        if not (self.netlink or self.chardev or self.file):
            raise ValueError("declares no interface: add [[fuzz.netlink]], [[fuzz.chardev]] or [[fuzz.file]]")
        keys = [t["key"] for t in self.targets()]
        twice = sorted({k for k in keys if keys.count(k) > 1})
        if twice:
            raise ValueError(f"declares {', '.join(twice)} twice")
        return self

    def targets(self) -> list[dict[str, Any]]:
        """The fuzz plan's targets, in a fixed order (an input names its target by index)."""
        out: list[dict[str, Any]] = []
        for n in self.netlink:
            out.append({"kind": "netlink", "protocol": n.protocol, "key": f"netlink:{n.protocol}",
                        "templates": [t.frame().hex() for t in n.templates]})
        for c in self.chardev:
            out.append({"kind": "chardev", "path": c.path, "key": f"chardev:{c.path}",
                        "ioctls": [{"cmd": i.cmd, "size": i.arg_size()} for i in c.ioctls]})
        for f in self.file:
            out.append({"kind": "file", "path": f.path, "key": f"file:{f.path}"})
        return out

    def toml(self) -> str:
        """The declarations as harness.toml text (what ``harness fuzz`` prints when it inferred them)."""
        out: list[str] = []
        for n in self.netlink:
            out += ["[[fuzz.netlink]]", f"protocol = {n.protocol}", ""]
        for c in self.chardev:
            out += ["[[fuzz.chardev]]", f"path = {json.dumps(c.path)}"]
            if c.ioctls:
                out.append("ioctls = [" + ", ".join(f"{{cmd = {i.cmd:#x}}}" if i.size is None
                                                    else f"{{cmd = {i.cmd:#x}, size = {i.size}}}"
                                                    for i in c.ioctls) + "]")
            out.append("")
        for f in self.file:
            out += ["[[fuzz.file]]", f"path = {json.dumps(f.path)}", ""]
        return "\n".join(out)


# ---- inference from the module's sources -------------------------------------------------

_DEFINE = re.compile(r"^\s*#\s*define\s+(\w+)\s+\(?\s*(0x[0-9a-fA-F]+|\d+)\s*\)?\s*$", re.M)
_NETLINK = re.compile(r"netlink_kernel_create\s*\(\s*[^,]+,\s*(\w+)\s*,")
_PROC = re.compile(r"proc_create(?:_data|_single_data|_seq)?\s*\(\s*\"([^\"]+)\"\s*,\s*[^,]+,\s*NULL\b")
_MISC = re.compile(r"struct\s+miscdevice\s+\w+\s*=\s*\{(.*?)\}", re.S)
_MISC_NAME = re.compile(r"\.name\s*=\s*\"([^\"]+)\"")
_IOC = re.compile(r"^\s*#\s*define\s+\w+\s+_IO(R|W|WR)?\s*\(\s*'(.)'\s*,\s*(0x[0-9a-fA-F]+|\d+)\s*"
                  r"(?:,\s*([\w ]+?)\s*)?\)", re.M)
_IOC_DIR = {None: 0, "W": 1, "R": 2, "WR": 3}
_SIZES = {"char": 1, "u8": 1, "__u8": 1, "s8": 1, "short": 2, "u16": 2, "__u16": 2, "s16": 2, "int": 4,
          "unsigned int": 4, "u32": 4, "__u32": 4, "s32": 4, "__s32": 4, "long": 8, "unsigned long": 8, "u64": 8,
          "__u64": 8, "s64": 8, "__s64": 8, "long long": 8}


def ioc(direction: Optional[str], kind: str, nr: int, size: int) -> int:
    """_IOC(dir, type, nr, size) as include/uapi/asm-generic/ioctl.h builds it."""
    return (_IOC_DIR[direction] << 30) | (size << IOC_SIZE_SHIFT) | (ord(kind) << 8) | nr


def infer(source: Path) -> tuple[Optional[FuzzDecl], list[str]]:
    """Declarations the sources make obvious, and a line per finding saying where it came from."""
    texts = {p.name: p.read_text(errors="replace") for p in sorted(source.rglob("*.[ch]")) if p.is_file()}
    defines = {m.group(1): int(m.group(2), 0) for t in texts.values() for m in _DEFINE.finditer(t)}
    notes: list[str] = []
    netlink: list[Netlink] = []
    files: list[File] = []
    devices: list[str] = []
    for name, text in texts.items():
        for m in _NETLINK.finditer(text):
            arg = m.group(1)
            proto = int(arg, 0) if arg[0].isdigit() else defines.get(arg)
            if proto is not None and 0 <= proto <= 31 and all(n.protocol != proto for n in netlink):
                netlink.append(Netlink(protocol=proto))
                notes.append(f"{name}: netlink_kernel_create(..., {arg}, ...) -> [[fuzz.netlink]] protocol = {proto}")
        for m in _PROC.finditer(text):
            files.append(File(path=f"/proc/{m.group(1)}"))
            notes.append(f"{name}: proc_create(\"{m.group(1)}\", ..., NULL, ...) -> [[fuzz.file]] /proc/{m.group(1)}")
        for m in _MISC.finditer(text):
            nm = _MISC_NAME.search(m.group(1))
            if nm:
                devices.append(nm.group(1))
                notes.append(f"{name}: struct miscdevice .name = \"{nm.group(1)}\" -> [[fuzz.chardev]] "
                             f"/dev/{nm.group(1)}")
    ioctls = _ioctls(texts, notes)
    chardev = [Chardev(path=f"/dev/{d}", ioctls=ioctls if len(devices) == 1 else []) for d in devices]
    if not (netlink or files or chardev):
        return None, notes
    return FuzzDecl(netlink=netlink, chardev=chardev, file=files), notes


def _ioctls(texts: dict[str, str], notes: list[str]) -> list[Ioctl]:
    out: list[Ioctl] = []
    for name, text in texts.items():
        for m in _IOC.finditer(text):
            direction, kind, nr, typ = m.group(1), m.group(2), int(m.group(3), 0), m.group(4)
            size = 0 if direction is None else _SIZES.get((typ or "").strip())
            if size is None:
                notes.append(f"{name}: {m.group(0).strip()}: the size of {typ!r} is not known here; declare it")
                continue
            out.append(Ioctl(cmd=ioc(direction, kind, nr, size)))
    return out

#!/usr/bin/env python3
# netlink30-kasan-1f8f34: a crash found by `harness fuzz` (kmod-harness).
#
# consequence: BUG: KASAN: slab-out-of-bounds in tick_nohz_handler+0x3a4/0x440
# kernel: debian-src:trixie+debug
# minimized from 28 to 16 bytes
#
# What it sends:
#   netlink protocol 30: one send of 16 bytes
#     at 0: nlmsg_len=28 type=0 flags=0x0 seq=0 pid=0x0 (the kernel's own socket)
#
# As a step of harness.toml (the module loaded; it crashes the kernel until the module is fixed):
#   [[step]]
#   name = "netlink30-kasan-1f8f34"
#   run = ["python3", "/project/repro/netlink30-kasan-1f8f34.py"]
#   timeout = 60
"""How one fuzz input is sent to a module: the executor the guest fuzzer and every repro share.

Self-contained on purpose (standard library only, Python 3.9, no import of the rest of
the harness, not even ``contract``): ``harness/fuzz/repro.py`` copies this file's text
into each ``repro/NAME.py``, so a repro runs exactly the code that crashed the kernel.

An *input* is a dict: ``t`` the target's index in the fuzz plan, ``op`` what to do,
``cmd`` an ioctl number (else 0) and ``data`` bytes. A *target* is a dict with
``kind``: ``netlink`` (``protocol``), ``chardev`` (``path``) or ``file`` (``path``).

- netlink ``send``: one ``sendto()`` of ``data`` to the kernel (port 0) on a socket of
  the protocol, bound to the fixed port ``PORT``, so that inputs naming their own
  socket's port (the header's nlmsg_pid) mean the same in every run and in the repro;
- chardev ``ioctl``: ``ioctl(fd, cmd, buffer)`` with ``data`` as the argument buffer
  (an integer argument when ``data`` is empty); ``write``: ``data`` written; ``read``:
  as many bytes read as ``data``'s length says;
- file ``write``: ``data`` written, then the file read back (``/proc`` and ``/sys`` files).

Errors of the calls themselves (EINVAL, ENODATA, ...) are what fuzzing provokes: they are
returned as the errno, never raised.
"""

import errno
import fcntl
import os
import socket
from typing import Any, Dict, Optional

PORT = 0x4B4D4800  # the netlink port every fuzz socket binds: "KMH\0", far from autobind's pids
NLMSG_HDRLEN = 16
READ_MAX = 65536


def netlink_socket(protocol: int) -> socket.socket:
    """A netlink socket of ``protocol`` bound to PORT (or, should PORT be taken, autobound)."""
    sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, protocol)
    try:
        sock.bind((PORT, 0))
    except OSError:
        sock.bind((0, 0))
    return sock


def run_input(target: Dict[str, Any], inp: Dict[str, Any]) -> int:
    """Send one input to its target; 0, or the errno the system call failed with."""
    kind, op, data = target["kind"], inp["op"], inp["data"]
    try:
        if kind == "netlink":
            sock = netlink_socket(target["protocol"])
            try:
                sock.sendto(data, (0, 0))
            finally:
                sock.close()
        elif kind == "chardev":
            _chardev(target["path"], op, inp.get("cmd", 0), data)
        elif kind == "file":
            _file(target["path"], data)
        else:
            return errno.EINVAL
    except OSError as e:
        return e.errno or errno.EIO
    return 0


def _chardev(path: str, op: str, cmd: int, data: bytes) -> None:
    try:
        fd = os.open(path, os.O_RDWR | os.O_NONBLOCK)
    except OSError:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    try:
        if op == "ioctl":
            if data:
                fcntl.ioctl(fd, cmd, bytearray(data), True)
            else:
                fcntl.ioctl(fd, cmd, 0)
        elif op == "write":
            os.write(fd, data)
        elif op == "read":
            os.read(fd, min(READ_MAX, max(1, int.from_bytes(data[:4], "little"))))
    finally:
        os.close(fd)


def _file(path: str, data: bytes) -> None:
    """Write, then read back even when the write was refused (the read side is code too)."""
    failed: Optional[OSError] = None
    fd = os.open(path, os.O_WRONLY)
    try:
        os.write(fd, data)
    except OSError as e:
        failed = e
    finally:
        os.close(fd)
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    try:
        os.read(fd, READ_MAX)
    finally:
        os.close(fd)
    if failed is not None:
        raise failed


TARGETS = {"0": {"kind": "netlink", "protocol": 30}}
INPUTS = [
    {'t': 0, 'op': 'send', 'cmd': 0x0, 'data': bytes.fromhex('1c000000000000000000000000000000')},
]


def main() -> int:
    for n, inp in enumerate(INPUTS):
        target = TARGETS[str(inp['t'])]
        err = run_input(target, inp)
        print('input %d: %s %s, %d bytes: %s' % (n + 1, target['kind'], inp['op'], len(inp['data']),
              'errno %d (%s)' % (err, os.strerror(err)) if err else 'done'), flush=True)
    return 0


if __name__ == '__main__':
    raise SystemExit(main())

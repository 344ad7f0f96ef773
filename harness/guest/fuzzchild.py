"""Where fuzz inputs execute: a forked child with kcov turned on for itself (guest side).

Standard library only, Python 3.9, beside ``fuzzer.py``. The parent opens the kcov
descriptors and maps their areas shared (``Kcov``); a forked child inherits both,
turns one on for itself (KCOV_ENABLE binds it to the calling task), resets its
counter, sends the input (``fuzzexec.run_input``), turns it off, and says so on a
pipe; the parent then reads the PCs (or comparisons) from the shared area.

A child executes ``per_child`` inputs before it exits and the next is forked: 1 (the
default) is a fork per execution. The fuzzer's loop never runs an input itself, so a
child that crashes, is killed, or hangs (it is killed after the plan's limit) ends
only itself. Forking a Python process costs far more than sending a netlink message
on a debug kernel under emulation (docs/PERFORMANCE.md): a child that runs several
inputs trades some isolation between inputs for speed.
"""

from __future__ import annotations

import ctypes
import fcntl
import os
import select
import signal
import struct
import sys
import time
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Sequence, Tuple

if TYPE_CHECKING or "harness.guest" in sys.modules:  # the host's package
    from harness.guest import fuzzexec
else:  # in the guest, fuzzexec.py sits beside this file
    import fuzzexec

KCOV = "/sys/kernel/debug/kcov"
KCOV_INIT_TRACE = 0x80086301  # _IOR('c', 1, unsigned long)
KCOV_ENABLE = 0x6364  # _IO('c', 100)
KCOV_DISABLE = 0x6365  # _IO('c', 101)
TRACE_PC, TRACE_CMP = 0, 1
COVER_WORDS = 1 << 16
DIED, TIMED_OUT = -1, -2  # what ``Executor.run`` returns besides an errno
_FRAME = struct.Struct("=iiIII")  # mode (-1: no kcov), target, cmd, len(op), len(data)


class Kcov:
    """One kcov descriptor, set up and mapped by the parent; children turn it on for themselves."""

    def __init__(self, mode: int):
        self.mode = mode
        self.fd = os.open(KCOV, os.O_RDWR)
        fcntl.ioctl(self.fd, KCOV_INIT_TRACE, COVER_WORDS)
        libc = ctypes.CDLL(None, use_errno=True)
        libc.mmap.restype = ctypes.c_void_p
        libc.mmap.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int,
                              ctypes.c_long)
        # Python's mmap module refuses: debugfs calls the file regular, with size 0.
        addr = libc.mmap(None, COVER_WORDS * 8, 3, 1, self.fd, 0)  # PROT_READ|PROT_WRITE, MAP_SHARED
        if addr in (None, ctypes.c_void_p(-1).value):
            raise OSError(ctypes.get_errno(), "mmap of kcov failed")
        self.area = (ctypes.c_uint64 * COVER_WORDS).from_address(addr)

    def enable(self) -> None:  # in the child
        fcntl.ioctl(self.fd, KCOV_ENABLE, self.mode)
        self.area[0] = 0

    def disable(self) -> None:
        fcntl.ioctl(self.fd, KCOV_DISABLE, 0)

    def pcs(self) -> List[int]:
        n = min(self.area[0], COVER_WORDS - 1)
        return list(self.area[1:1 + n])

    def cmps(self) -> List[Tuple[int, int, int]]:
        """(type, arg1, arg2) per comparison; with KCOV_CMP_CONST (bit 0) arg1 is the constant."""
        n = min(self.area[0], (COVER_WORDS - 1) // 4)
        words = self.area[1:1 + 4 * n]
        return [(words[4 * i], words[4 * i + 1], words[4 * i + 2]) for i in range(n)]


def _read(fd: int, n: int) -> bytes:
    out = b""
    while len(out) < n:
        chunk = os.read(fd, n - len(out))
        if not chunk:
            raise EOFError
        out += chunk
    return out


class Executor:
    """The parent's handle on the executing child: forks one when needed, one input at a time."""

    def __init__(self, targets: Sequence[Dict[str, Any]], kcov: Dict[int, Kcov], per_child: int, timeout: float):
        self.targets, self.kcov, self.per_child, self.timeout = targets, kcov, max(1, per_child), timeout
        self.pid: Optional[int] = None
        self.done = 0  # inputs the current child has executed
        self.to_child = self.from_child = -1

    def _fork(self) -> None:
        down_r, down_w = os.pipe()
        up_r, up_w = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(down_w)
            os.close(up_r)
            self._child(down_r, up_w)
        os.close(down_r)
        os.close(up_w)
        self.pid, self.done, self.to_child, self.from_child = pid, 0, down_w, up_r

    def _child(self, down: int, up: int) -> None:
        code = 0
        try:
            for _ in range(self.per_child):
                mode, t, cmd, n_op, n_data = _FRAME.unpack(_read(down, _FRAME.size))
                op, data = _read(down, n_op).decode(), _read(down, n_data)
                kc = self.kcov.get(mode)
                if kc is not None:
                    kc.enable()
                err = fuzzexec.run_input(self.targets[t], {"t": t, "op": op, "cmd": cmd, "data": data})
                if kc is not None:
                    kc.disable()
                os.write(up, bytes((min(err, 255),)))
        except EOFError:
            pass
        except BaseException:
            code = 3
        os._exit(code)

    def run(self, inp: Dict[str, Any], mode: Optional[int]) -> Optional[int]:
        """Execute ``inp``: its errno (0: the calls succeeded), DIED (the child died before it
        answered), TIMED_OUT (killed at the limit), or None: killed, and still not gone."""
        if self.pid is None:
            self._fork()
        op = inp["op"].encode()
        frame = _FRAME.pack(-1 if mode is None else mode, inp["t"], inp.get("cmd", 0), len(op), len(inp["data"]))
        try:
            os.write(self.to_child, frame + op + inp["data"])
            ready, _, _ = select.select([self.from_child], [], [], self.timeout)
            answer = os.read(self.from_child, 1) if ready else None
        except OSError:
            answer = b""
        if answer is None:  # too slow: killed; a child the kernel does not let go of is a hang
            return TIMED_OUT if self._end(kill=True) else None
        if not answer:  # the child died before answering
            self._end(kill=False)
            return DIED
        self.done += 1
        if self.done >= self.per_child:
            self._end(kill=False)
        return answer[0]

    def _end(self, kill: bool, limit: float = 10.0) -> bool:
        """Close the pipes and reap the child (killed first with ``kill``): False when it did not
        end within ``limit`` (stuck in the kernel, where SIGKILL does not reach it)."""
        assert self.pid is not None
        pid, self.pid = self.pid, None
        os.close(self.to_child)
        os.close(self.from_child)
        if kill:
            os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + limit
        while os.waitpid(pid, os.WNOHANG) == (0, 0):
            if time.monotonic() > deadline:
                return False
            time.sleep(0.01)
        return True

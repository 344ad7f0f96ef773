"""The one place the harness starts processes, and ends them.

Every child runs under ``guard.py`` in a session (process group) of its own, its
output read line by line through pipes (QEMU rewrites regular files from offset
0, so never hand it a file) and teed into a log file that is flushed as it goes.
On timeout, error or interrupt the whole group is ended: TERM, a grace period,
then KILL. When the harness itself dies, even by SIGKILL, the guard ends the
group. Nothing the harness starts outlives it.
"""

from __future__ import annotations

import os
import selectors
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Callable, Optional, Protocol, Sequence

from harness import guard
from harness.errors import InfraError, Interrupted, PhaseTimeout

LineSink = Callable[[str, str], None]  # (stream name, line without its newline)


class TextLog(Protocol):
    """Where output is teed: an open text file, or a CappedLog."""

    def write(self, text: str, /) -> int: ...

    def flush(self) -> None: ...


@dataclass
class Child:
    """A started child: the guard's Popen and the write end of its life line."""

    proc: subprocess.Popen[bytes]
    lifeline: Optional[int]  # None for an interactive child, which stays in the harness's group


_live: dict[int, Child] = {}
_live_lock = threading.Lock()
_interrupted = threading.Event()
_interrupt_reason = ""


class CappedLog:
    """A log file that stops growing: the first ``head`` characters as they come, then only
    the last ``tail``, written after a line saying how much was left out, when the log is
    closed. A guest printing without end would otherwise fill the disk until its timeout;
    the head holds the first report, the tail the end (a panic, the last records)."""

    def __init__(self, path: Path, head: int, tail: int):
        self.path, self.head, self.tail = path, head, tail
        self._f: IO[str] = open(path, "w")
        self._written = 0
        self._capped = False
        self._tail: deque[str] = deque()
        self._tail_len = 0
        self._dropped = 0

    def write(self, text: str) -> int:
        if not self._capped and self._written + len(text) <= self.head:
            self._f.write(text)
            self._written += len(text)
            return len(text)
        if not self._capped:
            self._capped = True
            self._f.write(f"\n[kmod-harness: {self.path.name} reached {self.head} characters; what follows"
                          f" is kept only as its last {self.tail}, written when the log is closed]\n")
            self._f.flush()
        self._tail.append(text)
        self._tail_len += len(text)
        while self._tail_len > self.tail and len(self._tail) > 1:
            gone = self._tail.popleft()
            self._tail_len -= len(gone)
            self._dropped += len(gone)
        return len(text)

    def flush(self) -> None:
        self._f.flush()

    @property
    def dropped(self) -> int:
        """Characters left out of the file (so far)."""
        return self._dropped

    def close(self) -> None:
        if self._f.closed:
            return
        if self._capped:
            self._f.write(f"[kmod-harness: {self._dropped} characters left out here]\n")
            self._f.write("".join(self._tail))
        self._f.close()

    def __enter__(self) -> "CappedLog":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# ---- interrupts -----------------------------------------------------------------------


def interrupt(reason: str) -> None:
    """Stop everything: end every running group; runs in other threads raise Interrupted."""
    global _interrupt_reason
    _interrupt_reason = reason
    _interrupted.set()
    kill_all()


def clear_interrupt() -> None:
    """After the runs an interrupt stopped have all returned: later runs may start again."""
    _interrupted.clear()


def check_interrupted() -> None:
    if _interrupted.is_set():
        raise Interrupted(_interrupt_reason or "interrupted")


class SignalGuard:
    """Turn SIGTERM/SIGHUP into ``Interrupted`` and SIGINT into ``KeyboardInterrupt``.

    The first signal ends every running process group before raising, and later
    ones are ignored until the guard exits: a second SIGTERM (``timeout`` and a
    process manager both sending one) or a second Ctrl-C must not cut the
    clean-up short and leave QEMU running.

    When the harness is a library in a longer-lived program (pytest, which runs
    ``cli.main`` in process), the signal was meant for that program too: on
    leaving the guard, once the clean-up and the report are done, a handler the
    program had installed is called with it.
    """

    def __enter__(self) -> "SignalGuard":
        self._old: dict[int, Any] = {}
        self._stopping = False
        self.received: Optional[int] = None
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
                self._old[sig] = signal.signal(sig, self._on_signal)
        return self

    def _on_signal(self, signum: int, _frame: object) -> None:
        if self._stopping:
            return
        self._stopping = True
        self.received = signum
        kill_all()
        if signum == signal.SIGINT:
            raise KeyboardInterrupt
        raise Interrupted(f"stopped by {signal.Signals(signum).name}")

    def __exit__(self, *exc: object) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)
        previous = self._old.get(self.received) if self.received is not None else None
        if callable(previous) and previous is not signal.default_int_handler:
            previous(self.received, None)


# ---- starting and ending ----------------------------------------------------------------


@dataclass
class Completed:
    argv: list[str]
    returncode: int
    stdout: str
    stderr: str
    seconds: float
    output: str = ""  # stdout and stderr interleaved as they arrived


def _check_exists(program: str, cwd: Optional[Path] = None) -> None:
    """A relative path (./scripts/config) is looked for where the command will run."""
    found = (os.access(os.path.join(cwd or ".", program), os.X_OK) if os.sep in program
             else shutil.which(program) is not None)
    if not found:
        raise InfraError(f"{program} not found")


def start(argv: Sequence[str], *, env: Optional[dict[str, str]] = None, cwd: Optional[Path] = None,
          stdin: Optional[int] = subprocess.DEVNULL) -> subprocess.Popen[bytes]:
    """Start ``argv`` under the guard in a new session, with piped stdout/stderr. Tests patch this seam."""
    check_interrupted()
    _check_exists(argv[0], cwd)
    read_end, lifeline = os.pipe()
    try:
        proc = subprocess.Popen(
            [sys.executable, "-S", guard.__file__, str(read_end), "--", *argv],
            stdin=stdin, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            env=env, cwd=cwd, start_new_session=True, pass_fds=(read_end,),
        )
    except BaseException:
        os.close(lifeline)
        raise
    finally:
        os.close(read_end)
    with _live_lock:
        _live[proc.pid] = Child(proc, lifeline)
    return proc


def kill_group(proc: subprocess.Popen[bytes], grace: float = 3.0) -> None:
    """End the child's whole process group: SIGTERM, wait ``grace``, then SIGKILL."""
    # start_new_session made the guard a group leader: its pid is the group id, and the
    # group outlives the leader while any member (qemu) lives.
    with _live_lock:
        child = _live.get(proc.pid)
    leader = child is None or child.lifeline is not None  # an interactive child leads no group
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(proc.pid, sig) if leader else proc.send_signal(sig)
        except ProcessLookupError:
            pass
        try:
            proc.wait(timeout=wait)
            break
        except subprocess.TimeoutExpired:
            continue
    if leader:
        try:  # the leader may be gone while grandchildren linger in the group
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    _forget(proc)


def _forget(proc: subprocess.Popen[bytes]) -> None:
    with _live_lock:
        child = _live.pop(proc.pid, None)
    if child is not None and child.lifeline is not None:
        os.close(child.lifeline)


def kill_all() -> None:
    """End every group still running (signal handlers, interrupts)."""
    with _live_lock:
        children = list(_live.values())
    for c in children:
        kill_group(c.proc, grace=1.0)


class _Pump:
    """Reads a child's stdout and stderr line by line into a log and a sink."""

    def __init__(self, proc: subprocess.Popen[bytes], log: Optional[TextLog], on_line: Optional[LineSink],
                 keep: bool):
        assert proc.stdout is not None and proc.stderr is not None
        self.log, self.on_line, self.keep = log, on_line, keep
        self.out: dict[str, list[str]] = {"stdout": [], "stderr": [], "both": []}
        self.sel = selectors.DefaultSelector()
        self.sel.register(proc.stdout, selectors.EVENT_READ, "stdout")
        self.sel.register(proc.stderr, selectors.EVENT_READ, "stderr")
        self.bufs = {"stdout": b"", "stderr": b""}
        self.open = 2

    def _emit(self, name: str, raw: bytes) -> None:
        line = raw.decode("utf-8", "backslashreplace")
        if self.keep:
            self.out[name].append(line)
            self.out["both"].append(line)
        if self.log is not None:
            self.log.write(line)
            self.log.flush()
        if self.on_line is not None:
            self.on_line(name, line.rstrip("\n"))

    def step(self, timeout: float) -> None:
        """Wait up to ``timeout`` for output and pass on every whole line that came."""
        for key, _ in self.sel.select(timeout=timeout):
            name = key.data
            chunk = os.read(key.fd, 65536)
            if not chunk:
                self.sel.unregister(key.fileobj)
                self.open -= 1
                if self.bufs[name]:
                    self._emit(name, self.bufs[name])
                    self.bufs[name] = b""
                continue
            self.bufs[name] += chunk
            *lines, self.bufs[name] = self.bufs[name].split(b"\n")
            for line in lines:
                self._emit(name, line + b"\n")

    def close(self) -> None:
        self.sel.close()


def run(argv: Sequence[str], *, timeout: float, what: str, log: Optional[TextLog] = None,
        on_line: Optional[LineSink] = None, env: Optional[dict[str, str]] = None, cwd: Optional[Path] = None,
        keep: bool = True, on_start: Optional[Callable[[subprocess.Popen[bytes]], None]] = None) -> Completed:
    """Run to completion, streaming lines to ``log`` and ``on_line``.

    Raises PhaseTimeout after ``timeout`` seconds (the group is ended first).
    Output already seen is kept even when this raises: ``log`` is flushed per line.
    """
    t0 = time.monotonic()
    proc = start(argv, env=env, cwd=cwd)
    if on_start is not None:
        on_start(proc)  # whoever must be able to end it early (a guard on what the guest writes)
    pump = _Pump(proc, log, on_line, keep)
    try:
        while pump.open:
            check_interrupted()
            remaining = timeout - (time.monotonic() - t0)
            if remaining <= 0:
                raise PhaseTimeout(f"{what} did not finish within {timeout:.0f}s")
            pump.step(min(remaining, 1.0))
        try:
            proc.wait(timeout=max(0.1, timeout - (time.monotonic() - t0)))
        except subprocess.TimeoutExpired:
            raise PhaseTimeout(f"{what} did not exit within {timeout:.0f}s") from None
        check_interrupted()  # a group ended by interrupt() must not look like a normal exit
    except BaseException:
        kill_group(proc)
        raise
    finally:
        pump.close()
        _close_pipes(proc)
        if proc.returncode is not None:
            kill_group(proc, grace=0.5)  # the leader exited; anything left in its group is an orphan
    out = pump.out
    return Completed(list(argv), proc.returncode, "".join(out["stdout"]), "".join(out["stderr"]),
                     time.monotonic() - t0, "".join(out["both"]))


def quick(argv: Sequence[str], *, timeout: float = 60, what: str = "", env: Optional[dict[str, str]] = None,
          cwd: Optional[Path] = None) -> Completed:
    """A short command whose output is wanted whole (apt-cache, ssh-keygen)."""
    return run(argv, timeout=timeout, what=what or argv[0], env=env, cwd=cwd)


def interactive(argv: Sequence[str]) -> int:
    """A command that takes over the terminal (``harness shell``'s ssh). It stays in the
    harness's process group, which the terminal needs; it is ended if the harness is."""
    check_interrupted()
    _check_exists(argv[0])
    proc = subprocess.Popen(list(argv))
    with _live_lock:
        _live[proc.pid] = Child(proc, None)
    try:
        return proc.wait()
    finally:
        if proc.poll() is None:
            kill_group(proc)
        _forget(proc)


def _close_pipes(proc: subprocess.Popen[bytes]) -> None:
    for f in (proc.stdout, proc.stderr):
        if f is not None:
            f.close()


class Background:
    """A child that runs while the caller works (a VM reached over SSH).

    A thread pumps its output line by line into ``log`` and ``on_line``; leaving
    the ``with`` block ends the group whatever happened.
    """

    def __init__(self, argv: Sequence[str], *, what: str, log: Optional[TextLog] = None,
                 on_line: Optional[LineSink] = None, env: Optional[dict[str, str]] = None):
        self.argv, self.what, self.log, self.on_line, self.env = list(argv), what, log, on_line, env
        self.proc: Optional[subprocess.Popen[bytes]] = None
        self._thread: Optional[threading.Thread] = None

    def __enter__(self) -> "Background":
        self.proc = start(self.argv, env=self.env)
        pump = _Pump(self.proc, self.log, self.on_line, keep=False)
        self._thread = threading.Thread(target=self._pump, args=(pump,), daemon=True)
        self._thread.start()
        return self

    @staticmethod
    def _pump(pump: _Pump) -> None:
        try:
            while pump.open:
                pump.step(1.0)
        finally:
            pump.close()

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def wait(self, timeout: float) -> int:
        assert self.proc is not None
        try:
            rc = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise PhaseTimeout(f"{self.what} did not exit within {timeout:.0f}s") from None
        if self._thread is not None:
            self._thread.join(5)
        return rc

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None:
            kill_group(self.proc)
            if self._thread is not None:
                self._thread.join(5)
            _close_pipes(self.proc)


def require_tool(name: str, package: str) -> str:
    """The path of a program the harness needs, or an error naming the package that brings it."""
    path = shutil.which(name)
    if path is None:
        raise InfraError(f"{name} not found on PATH", hint=f"install the package '{package}' (`make setup` does it)")
    return path

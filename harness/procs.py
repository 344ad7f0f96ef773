"""The one place the harness starts long-running processes.

Every child starts in its own session (process group), its output is read
line by line through pipes (QEMU rewrites regular files from offset 0, so
never hand it a file), teed into a log file that is flushed as it goes, and on
timeout, error or interrupt the whole group is ended: TERM, a grace period,
then KILL. Nothing a harness run starts outlives it.
"""

from __future__ import annotations

import os
import selectors
import signal
import subprocess
import threading
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Callable, Optional, Protocol, Sequence

from harness.errors import InfraError, Interrupted, PhaseTimeout

LineSink = Callable[[str, str], None]  # (stream name, line)


class TextLog(Protocol):
    """Where output is teed: an open text file, or a CappedLog."""

    def write(self, text: str, /) -> int: ...

    def flush(self) -> None: ...

_live: set[subprocess.Popen] = set()
_live_lock = threading.Lock()
_interrupted = threading.Event()
_interrupt_reason = ""


class CappedLog:
    """A log file that stops growing: the first ``head`` bytes as they come, then only
    the last ``tail`` bytes, written after a line saying how much was left out when the
    log is closed. A guest printing without end (KASAN reporting on every timer tick:
    36 MB in five minutes) would otherwise fill the disk until its timeout; the head
    holds the first report, the tail the end (a panic, the last records).

    Everything is flushed as it goes until the cap; the tail only on ``close``.
    """

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


def interrupt(reason: str) -> None:
    """Stop everything: end every running group; runs in other threads raise Interrupted."""
    global _interrupt_reason
    _interrupt_reason = reason
    _interrupted.set()
    kill_all()


def check_interrupted() -> None:
    if _interrupted.is_set():
        raise Interrupted(_interrupt_reason or "interrupted")


@dataclass
class Completed:
    argv: list[str]
    returncode: int
    stdout: str
    stderr: str
    seconds: float
    output: str = ""  # stdout and stderr interleaved as they arrived


def start(argv: Sequence[str], *, env: Optional[dict] = None, cwd: Optional[Path] = None) -> subprocess.Popen:
    """Start ``argv`` in a new session with piped stdout/stderr. Tests patch this seam."""
    check_interrupted()
    try:
        proc = subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
            cwd=cwd,
            start_new_session=True,
        )
    except FileNotFoundError:
        raise InfraError(f"{argv[0]} not found") from None
    with _live_lock:
        _live.add(proc)
    return proc


def kill_group(proc: subprocess.Popen, grace: float = 3.0) -> None:
    """End the child's whole process group: SIGTERM, wait ``grace``, then SIGKILL."""
    # start_new_session made the child a group leader: its pid is the group id,
    # and the group outlives the leader while any member (qemu) lives.
    pgid: Optional[int] = proc.pid
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
        if pgid is not None:
            try:
                os.killpg(pgid, sig)
            except ProcessLookupError:
                pass
        try:
            proc.wait(timeout=wait)
            break
        except subprocess.TimeoutExpired:
            continue
    # The leader may be gone while grandchildren (qemu) linger in the group.
    if pgid is not None:
        try:
            os.killpg(pgid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    with _live_lock:
        _live.discard(proc)


def kill_all() -> None:
    """End every group still running (used by signal handlers and atexit)."""
    with _live_lock:
        procs = list(_live)
    for p in procs:
        kill_group(p, grace=1.0)


def run(
    argv: Sequence[str],
    *,
    timeout: float,
    what: str,
    log: Optional[TextLog] = None,
    on_line: Optional[LineSink] = None,
    env: Optional[dict] = None,
    cwd: Optional[Path] = None,
    keep: bool = True,
) -> Completed:
    """Run to completion, streaming lines to ``log`` and ``on_line``.

    Raises PhaseTimeout after ``timeout`` seconds (the group is ended first).
    Output already seen is kept even when this raises: ``log`` is flushed per line.
    """
    t0 = time.monotonic()
    proc = start(argv, env=env, cwd=cwd)
    out: dict[str, list[str]] = {"stdout": [], "stderr": [], "both": []}
    sel = selectors.DefaultSelector()
    assert proc.stdout is not None and proc.stderr is not None
    bufs = {"stdout": b"", "stderr": b""}
    sel.register(proc.stdout, selectors.EVENT_READ, "stdout")
    sel.register(proc.stderr, selectors.EVENT_READ, "stderr")

    def emit(name: str, raw: bytes) -> None:
        line = raw.decode("utf-8", "backslashreplace")
        if keep:
            out[name].append(line)
            out["both"].append(line)
        if log is not None:
            log.write(line)
            log.flush()
        if on_line is not None:
            on_line(name, line.rstrip("\n"))

    try:
        open_streams = 2
        while open_streams:
            check_interrupted()
            remaining = timeout - (time.monotonic() - t0)
            if remaining <= 0:
                raise PhaseTimeout(f"{what} did not finish within {timeout:.0f}s")
            for key, _ in sel.select(timeout=min(remaining, 1.0)):
                name = key.data
                chunk = os.read(key.fd, 65536)
                if not chunk:
                    sel.unregister(key.fileobj)
                    open_streams -= 1
                    if bufs[name]:
                        emit(name, bufs[name])
                        bufs[name] = b""
                    continue
                bufs[name] += chunk
                while b"\n" in bufs[name]:
                    line, bufs[name] = bufs[name].split(b"\n", 1)
                    emit(name, line + b"\n")
        remaining = max(0.1, timeout - (time.monotonic() - t0))
        try:
            proc.wait(timeout=remaining)
        except subprocess.TimeoutExpired:
            raise PhaseTimeout(f"{what} did not exit within {timeout:.0f}s") from None
        check_interrupted()  # a group ended by interrupt() must not look like a normal exit
    except BaseException:
        kill_group(proc)
        raise
    finally:
        sel.close()
        proc.stdout.close()
        proc.stderr.close()
        if proc.returncode is not None:
            # The leader exited; anything left in its group is an orphan to end.
            kill_group(proc, grace=0.5)
    return Completed(list(argv), proc.returncode, "".join(out["stdout"]), "".join(out["stderr"]),
                     time.monotonic() - t0, "".join(out["both"]))


class SignalGuard:
    """Turn SIGTERM/SIGHUP into ``Interrupted`` and SIGINT into ``KeyboardInterrupt``.

    The first signal ends every running process group before raising, and later
    ones are ignored until the guard exits: a second SIGTERM (``timeout`` and a
    process manager both sending one) or a second Ctrl-C must not cut the
    clean-up short and leave QEMU running.
    """

    def __enter__(self) -> "SignalGuard":
        self._old: dict = {}
        self._stopping = False
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
                self._old[sig] = signal.signal(sig, self._on_signal)
        return self

    def _on_signal(self, signum: int, _frame: object) -> None:
        if self._stopping:
            return
        self._stopping = True
        kill_all()
        if signum == signal.SIGINT:
            raise KeyboardInterrupt
        raise Interrupted(f"stopped by {signal.Signals(signum).name}")

    def __exit__(self, *exc: object) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)


class Background:
    """A child that runs while the caller works (a VM reached over SSH).

    A thread pumps its output line by line into ``log`` and ``on_line``; leaving
    the ``with`` block ends the group whatever happened.
    """

    def __init__(self, argv: Sequence[str], *, what: str, log: Optional[TextLog] = None,
                 on_line: Optional[LineSink] = None, env: Optional[dict] = None):
        self.argv, self.what, self.log, self.on_line, self.env = list(argv), what, log, on_line, env
        self.stdout: list[str] = []
        self.proc: Optional[subprocess.Popen] = None
        self._thread: Optional[threading.Thread] = None

    def __enter__(self) -> "Background":
        self.proc = start(self.argv, env=self.env)
        self._thread = threading.Thread(target=self._pump, daemon=True)
        self._thread.start()
        return self

    def _pump(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None and self.proc.stderr is not None
        sel = selectors.DefaultSelector()
        sel.register(self.proc.stdout, selectors.EVENT_READ, "stdout")
        sel.register(self.proc.stderr, selectors.EVENT_READ, "stderr")
        bufs = {"stdout": b"", "stderr": b""}
        open_streams = 2
        while open_streams:
            for key, _ in sel.select(timeout=1.0):
                chunk = os.read(key.fd, 65536)
                if not chunk:
                    sel.unregister(key.fileobj)
                    open_streams -= 1
                    lines = [bufs[key.data]] if bufs[key.data] else []
                else:
                    bufs[key.data] += chunk
                    *lines, bufs[key.data] = bufs[key.data].split(b"\n")
                    lines = [ln + b"\n" for ln in lines]
                for raw in lines:
                    line = raw.decode("utf-8", "backslashreplace")
                    if key.data == "stdout":
                        self.stdout.append(line)
                    if self.log is not None:
                        self.log.write(line)
                        self.log.flush()
                    if self.on_line is not None:
                        self.on_line(key.data, line.rstrip("\n"))
        sel.close()

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
            for f in (self.proc.stdout, self.proc.stderr):
                if f is not None:
                    f.close()

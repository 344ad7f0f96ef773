#!/usr/bin/env python3
"""Guest-side runner: runs the plan's steps and reports them, following ``contract.py``.

It runs inside the VM on the guest root's own python3 (3.9 or newer), with the
standard library and ``contract.py`` (copied beside it) only::

    python3 /harness/runner.py /harness/plan.json
    python3 /harness/runner.py --wait /harness/plan.json
                            (started ahead, in a spare guest: runs once a line arrives on stdin,
                            the host having written the plan; ends at once on EOF)
    python3 /harness/runner.py kmsg SEQ      (records after SEQ as JSON, for live sessions)

A thread reads ``/dev/kmsg`` from the start of the buffer and sends each record
on the channel (stdout) as it is read, so no record is lost to the ring buffer
wrapping, and a guest that panics has sent everything up to its last moments.
Before the first step the runner writes a marker record: what comes after it is
the run, what comes before is the boot. The whole report is then written to the
run directory, and its path sent as the last event. Exit status: 0 when the plan
ran, 1 when a required step failed; the verdict is the host's business.
"""

from __future__ import annotations

import errno
import json
import os
import select
import signal
import subprocess
import sys
import threading
import time
from typing import IO, TYPE_CHECKING, Any, Dict, Optional

if TYPE_CHECKING:
    from harness.guest import contract
else:  # in the guest, contract.py sits beside this file
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import contract

KMSG = "/dev/kmsg"
LOG_USER = 1  # records userspace writes get this facility at least; the kernel's own have 0


class Channel:
    """Events to the host, one line each, from several threads."""

    def __init__(self, out: IO[str], run_id: str) -> None:
        self.out, self.run_id = out, run_id
        self.lock = threading.Lock()

    def send(self, kind: str, **data: Any) -> None:
        line = contract.encode_event(kind, self.run_id, **data) + "\n"
        with self.lock:
            try:
                self.out.write(line)
                self.out.flush()
            except (BrokenPipeError, OSError):
                pass  # the host stopped listening (SSH closed): the report file still gets written


def record_seq(raw: str) -> int:
    return int(raw.split(",", 2)[1])


class KmsgStream(threading.Thread):
    """Reads every /dev/kmsg record from the start of the buffer on, sending each one."""

    def __init__(self, channel: Channel) -> None:
        super().__init__(daemon=True)
        self.channel = channel
        self.records = contract.HeadTail()
        self.lost = 0  # records overwritten before they were read (EPIPE)
        self.error: Optional[str] = None
        self.until: Optional[int] = None  # once stopping: the last record that must be read
        self._stop_evt = threading.Event()
        self.fd = os.open(KMSG, os.O_RDONLY | os.O_NONBLOCK)

    def _done(self) -> bool:
        """Stopping, and the last record wanted has been read (a kernel that logs without end
        would otherwise keep the reader, and the runner, going)."""
        if not self._stop_evt.is_set():
            return False
        last = self.records.last()
        return self.until is None or last is not None and record_seq(last) >= self.until

    def _drain(self) -> None:
        while not self._done():
            try:
                data = os.read(self.fd, 16384)
            except BlockingIOError:
                return
            except OSError as e:
                if e.errno == errno.EPIPE:
                    self.lost += 1
                    continue
                raise
            if not data:
                return
            raw = data.decode("utf-8", "backslashreplace")
            self.channel.send(contract.KMSG, raw=raw)
            self.records.append(raw)

    def run(self) -> None:
        try:
            while True:
                stopping = self._stop_evt.is_set()
                self._drain()
                if stopping or self._done():
                    return
                select.select([self.fd], [], [], 0.2)
        except Exception as e:  # reported, never fatal to the steps
            self.error = repr(e)

    def finish(self, until: Optional[int]) -> None:
        """Read on up to record ``until`` (the runner's last mark), or to the end of the log, then stop."""
        self.until = until
        self._stop_evt.set()
        self.join()
        os.close(self.fd)


PIPE_GRACE = 2.0  # seconds to wait for a step's output to end once its own process has exited
MAX_OUTPUT = 1 << 20  # bytes of a step's stdout (and of its stderr) kept: the head and the tail


class _Reader(threading.Thread):
    """Reads one pipe to its end, keeping the first and the last MAX_OUTPUT // 2 bytes."""

    def __init__(self, pipe: Any) -> None:  # a BufferedReader: read1 returns what one read gave
        super().__init__(daemon=True)
        self.pipe, self.head, self.tail, self.dropped = pipe, bytearray(), bytearray(), 0

    def run(self) -> None:
        half = MAX_OUTPUT // 2
        try:
            for chunk in iter(lambda: self.pipe.read1(65536), b""):
                room = half - len(self.head)
                self.head += chunk[:max(room, 0)]
                self.tail += chunk[max(room, 0):]
                if len(self.tail) > half:
                    self.dropped += len(self.tail) - half
                    del self.tail[:len(self.tail) - half]
        except (OSError, ValueError):
            pass

    def text(self) -> str:
        """What was read so far (a reader still running, for a child holding the pipe, is not waited for)."""
        cut = b"\n[kmod-harness: %d bytes left out here]\n" % self.dropped if self.dropped else b""
        return bytes(self.head + cut + self.tail).decode("utf-8", "backslashreplace")


def run_step(step: contract.PlanStep, env: dict[str, str]) -> dict[str, Any]:
    """Run one step in its own process group; on timeout the whole group is killed. Once the step's
    own process has ended, its output is read for PIPE_GRACE seconds more: a background child it
    left holding stdout or stderr does not keep the step running (the report says so)."""
    start = time.monotonic()
    out: dict[str, Any] = {"name": step.name, "argv": list(step.argv), "returncode": None, "stdout": "",
                           "stderr": "", "timed_out": False, "note": ""}
    try:
        proc = subprocess.Popen(list(step.argv), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, env=dict(env, **dict(step.env)),
                                cwd=step.cwd or contract.WORK_DIR, start_new_session=True)
    except OSError as e:
        out.update(returncode=127, stderr="cannot run %s: %s" % (step.argv[0], e))
        out["seconds"] = round(time.monotonic() - start, 3)
        return out
    assert proc.stdout is not None and proc.stderr is not None
    readers = [_Reader(proc.stdout), _Reader(proc.stderr)]
    for r in readers:
        r.start()
    try:
        out["returncode"] = proc.wait(timeout=step.timeout)
    except subprocess.TimeoutExpired:
        out["timed_out"] = True
        _kill_group(proc.pid)
        proc.wait()
    deadline = time.monotonic() + PIPE_GRACE
    for r in readers:
        r.join(max(0.0, deadline - time.monotonic()))
    held = [("stdout", "stderr")[k] for k, r in enumerate(readers) if r.is_alive()]
    if held:  # their readers are left to end with the child (closing a pipe a thread reads would block)
        out["note"] = ("the step's process ended, but a process it started kept its %s open: not waited for"
                       % " and ".join(held))
    out["stdout"], out["stderr"] = readers[0].text(), readers[1].text()
    out["seconds"] = round(time.monotonic() - start, 3)
    return out


def _kill_group(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def prepare_guest(env: dict[str, str]) -> None:
    """The steps' writable work directory, and ``cc``/``gcc`` where the root has only ``gcc-N``
    (Debian's roots install the versioned compiler the kernel's headers want)."""
    os.makedirs(contract.WORK_DIR, exist_ok=True)
    env["HARNESS_WORK"] = contract.WORK_DIR
    path = env.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
    have = [d for d in path.split(":") if d and os.path.exists(os.path.join(d, "cc"))]
    if have:
        env["PATH"] = path
        return
    versioned = sorted((f for f in os.listdir("/usr/bin") if f.startswith("gcc-") and f[4:].isdigit()),
                       key=lambda f: int(f[4:]))
    if not versioned:
        return
    shims = os.path.join(contract.WORK_DIR, ".bin")
    os.makedirs(shims, exist_ok=True)
    for name in ("cc", "gcc"):
        link = os.path.join(shims, name)
        if not os.path.lexists(link):
            os.symlink("/usr/bin/" + versioned[-1], link)
    env["PATH"] = shims + ":" + path


def write_atomic(path: str, text: str) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.rename(tmp, path)


def dump_kmsg(after: int) -> int:
    """Print the raw records with a sequence number above ``after`` as one JSON object."""
    fd = os.open(KMSG, os.O_RDONLY | os.O_NONBLOCK)
    out: list[str] = []
    lost = 0
    try:
        while True:
            try:
                data = os.read(fd, 16384)
            except BlockingIOError:
                break
            except OSError as e:
                if e.errno == errno.EPIPE:
                    lost += 1
                    continue
                raise
            rec = data.decode("utf-8", "backslashreplace")
            if record_seq(rec) > after:
                out.append(rec)
    finally:
        os.close(fd)
    json.dump({"kmsg": out, "kmsg_lost": lost}, sys.stdout)
    return 0


def mark(text: str, timeout: float = 30.0) -> Optional[int]:
    """Write ``text`` as a userspace record (facility LOG_USER, level notice: no record the kernel
    logs can look like it) and return its sequence number: everything the kernel logged before
    it has a lower one. Read back on a descriptor of its own positioned at the end of the log,
    so it does not wait for the streaming thread, however far behind a slow guest has left it."""
    fd = os.open(KMSG, os.O_RDONLY | os.O_NONBLOCK)
    try:
        os.lseek(fd, 0, os.SEEK_END)
        with open(KMSG, "w") as f:
            f.write("<13>%s\n" % text)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                raw = os.read(fd, 16384).decode("utf-8", "backslashreplace")
            except BlockingIOError:
                time.sleep(0.01)
                continue
            except OSError as e:
                if e.errno == errno.EPIPE:  # overwritten meanwhile: read on
                    continue
                raise
            head, _, body = raw.partition(";")
            if int(head.split(",", 1)[0]) >> 3 >= LOG_USER and body.split("\n", 1)[0] == text:
                return record_seq(raw)
    finally:
        os.close(fd)
    return None


def run_plan(plan: contract.Plan, channel: Channel
             ) -> tuple[list[contract.StepReport], KmsgStream, Optional[int], Optional[str]]:
    """Each step runs between two marks the runner writes into the kernel log: what the kernel
    logged while a step ran lies between them, whatever the streaming thread has read so far."""
    env = dict(os.environ)
    env.update(dict(plan.env))
    prepare_guest(env)
    stream = KmsgStream(channel)
    stream.start()
    marker = before = None
    steps: list[contract.StepReport] = []
    failed_required: Optional[str] = None
    for i, step in enumerate(plan.steps):
        ident: Dict[str, Any] = {"index": i, "kind": step.kind, "expect_rc": step.expect_rc}
        if failed_required is not None and not step.always:
            report = contract.StepReport(name=step.name, argv=step.argv, skipped=True,
                                         reason="required step %r failed" % failed_required, **ident)
        else:
            if marker is None:
                marker = before = mark(contract.marker_text(plan.run_id))
                channel.send(contract.MARKER, seq=marker)
            channel.send(contract.STEP_START, name=step.name, index=i)
            res = run_step(step, env)
            after = mark(contract.step_end_text(plan.run_id, i))
            report = contract.StepReport.from_dict(dict(res, kmsg_seq_before=before, kmsg_seq_after=after, **ident))
            before = after
            if step.required and failed_required is None and (
                    report.timed_out or report.returncode != step.expect_rc):
                failed_required = step.name
        channel.send(contract.STEP_END, step=report.to_dict())
        steps.append(report)
    stream.finish(until=before)
    return steps, stream, marker, failed_required


def main(argv: list[str]) -> int:
    if len(argv) == 3 and argv[1] == "kmsg":
        return dump_kmsg(int(argv[2]))
    if len(argv) == 3 and argv[1] == "--wait":
        # Python's start and its imports took seconds under emulation; they are done now.
        if not sys.stdin.readline():
            return 2  # the host went away without a plan
        argv = [argv[0], argv[2]]
    t0 = time.monotonic()
    with open(argv[1]) as f:
        text = f.read()
    run_id = json.loads(text).get("run_id", "")  # before the version check, so a mismatch is reported
    channel = Channel(sys.stdout, run_id)
    channel.send(contract.HELLO, version=contract.VERSION)
    plan = contract.Plan.from_json(text)
    with open("/proc/uptime") as f:
        uptime = float(f.read().split()[0])
    steps, stream, marker, failed_required = run_plan(plan, channel)
    report = contract.GuestReport(
        steps=tuple(steps), kmsg=stream.records.items(), marker_seq=marker, kmsg_lost=stream.lost,
        kmsg_dropped=stream.records.dropped,
        kmsg_error=stream.error, uptime_at_start=uptime, seconds=round(time.monotonic() - t0, 3))
    path = os.path.join(os.path.dirname(os.path.abspath(argv[1])), contract.REPORT_FILE)
    write_atomic(path, report.to_json())
    channel.send(contract.REPORT, path=path)
    return 1 if failed_required else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))

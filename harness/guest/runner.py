#!/usr/bin/env python3
"""Guest-side runner: executes the plan's steps and reports them as JSON.

Runs inside the VM on the guest root's own python3 (3.9 or newer), so it uses
the standard library only. It is started by virtme-ng's exec channel as::

    python3 /harness/runner.py /harness/plan.json
    python3 /harness/runner.py kmsg SEQ      (records after SEQ, for live sessions)

While the steps run, a thread streams ``/dev/kmsg`` so that no record is lost
to the ring buffer wrapping. When the steps are done (or one marked
``required`` fails), the runner writes ``result_path`` atomically and prints one
line ``HARNESS-RESULT <path>`` on stdout. Exit status: 0 when every step ran,
1 when a required step failed; the verdict itself is the host's business.
"""

import errno
import json
import os
import select
import subprocess
import sys
import threading
import time

KMSG = "/dev/kmsg"


class KmsgStream(threading.Thread):
    """Read every record from /dev/kmsg from the start of the buffer onward."""

    def __init__(self):
        super().__init__(daemon=True)
        self.records = []  # raw record strings
        self.lost = 0  # records overwritten before we read them (EPIPE)
        self.error = None
        self._stop_evt = threading.Event()
        self._lock = threading.Lock()
        self.fd = os.open(KMSG, os.O_RDONLY | os.O_NONBLOCK)

    def _drain(self):
        while True:
            try:
                data = os.read(self.fd, 16384)
            except BlockingIOError:
                return
            except OSError as e:
                if e.errno == errno.EPIPE:
                    with self._lock:
                        self.lost += 1
                    continue
                raise
            if not data:
                return
            with self._lock:
                self.records.append(data.decode("utf-8", "backslashreplace"))

    def run(self):
        try:
            while not self._stop_evt.is_set():
                select.select([self.fd], [], [], 0.2)
                self._drain()
        except Exception as e:  # reported, never fatal to the steps
            self.error = repr(e)

    def last_seq(self):
        """Sequence number of the newest record read so far (after draining)."""
        with self._lock:
            if not self.records:
                return None
            return int(self.records[-1].split(",", 2)[1])

    def sync(self, timeout=1.0):
        """Wait until records already in the kernel's buffer have been read."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            n = len(self.records)
            time.sleep(0.05)
            if len(self.records) == n:
                return

    def finish(self):
        self._stop_evt.set()
        self.join(5)
        self._drain()
        os.close(self.fd)


def run_step(step, env):
    start = time.monotonic()
    out = {"name": step["name"], "argv": step["argv"], "returncode": None,
           "stdout": "", "stderr": "", "timed_out": False}
    try:
        proc = subprocess.run(
            step["argv"], stdin=subprocess.DEVNULL, capture_output=True,
            timeout=step.get("timeout", 60), env=env, cwd=step.get("cwd") or None,
        )
        out["returncode"] = proc.returncode
        out["stdout"] = proc.stdout.decode("utf-8", "backslashreplace")
        out["stderr"] = proc.stderr.decode("utf-8", "backslashreplace")
    except subprocess.TimeoutExpired as e:
        out["timed_out"] = True
        out["stdout"] = (e.stdout or b"").decode("utf-8", "backslashreplace")
        out["stderr"] = (e.stderr or b"").decode("utf-8", "backslashreplace")
    except OSError as e:
        out["returncode"] = 127
        out["stderr"] = "cannot run %s: %s" % (step["argv"][0], e)
    out["seconds"] = round(time.monotonic() - start, 3)
    return out


def write_atomic(path, data):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(data, f)
        f.flush()
        os.fsync(f.fileno())
    os.rename(tmp, path)


def dump_kmsg(after):
    """Print the raw records with a sequence number above ``after`` as one JSON list."""
    fd = os.open(KMSG, os.O_RDONLY | os.O_NONBLOCK)
    out, lost = [], 0
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
            if int(rec.split(",", 2)[1]) > after:
                out.append(rec)
    finally:
        os.close(fd)
    json.dump({"kmsg": out, "kmsg_lost": lost}, sys.stdout)
    return 0


def main(argv):
    if len(argv) == 3 and argv[1] == "kmsg":
        return dump_kmsg(int(argv[2]))
    t0 = time.monotonic()
    with open(argv[1]) as f:
        plan = json.load(f)
    env = dict(os.environ)
    env.update(plan.get("env", {}))
    stream = KmsgStream()
    stream.start()
    stream.sync()
    uptime = float(open("/proc/uptime").read().split()[0])
    steps = []
    failed_required = None
    for step in plan["steps"]:
        if failed_required is not None and not step.get("always"):
            steps.append({"name": step["name"], "argv": step["argv"], "skipped": True,
                          "reason": "required step %r failed" % failed_required})
            continue
        stream.sync()
        before = stream.last_seq()
        print("HARNESS-STEP %s" % step["name"], flush=True)
        res = run_step(step, env)
        stream.sync()
        res["kmsg_seq_before"] = before
        res["kmsg_seq_after"] = stream.last_seq()
        steps.append(res)
        ok = not res["timed_out"] and res["returncode"] == step.get("expect_rc", 0)
        if not ok and step.get("required") and failed_required is None:
            failed_required = step["name"]
    stream.sync()
    stream.finish()
    result = {
        "runner": 1,
        "uptime_at_start": uptime,
        "seconds": round(time.monotonic() - t0, 3),
        "steps": steps,
        "kmsg": stream.records,
        "kmsg_lost": stream.lost,
        "kmsg_error": stream.error,
    }
    write_atomic(plan["result_path"], result)
    print("HARNESS-RESULT %s" % plan["result_path"], flush=True)
    return 1 if failed_required else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))

"""The guest's side of fault injection: debugfs, tracefs, kmemleak, /proc, and armed processes.

Part of the fault walker (``faultwalk.py``), beside it in the guest: standard library only,
python3 3.9 or newer. Set-up, once per guest (Documentation/fault-injection/fault-injection.rst):
failslab and fail_page_alloc fail only calls with a frame in the module area on the stack
(``require-start``/``require-end``), sleeping allocations and order-0 pages included, and log
each injection with a stack dump (``verbose`` 2); kmemleak logs what its scans find
(``verbose``), so a leak is a kernel record like any report; the ``initcall_start`` trace event
is on, so the address of each load's init function is known after the module is gone (a
leak's backtrace then holds bare addresses).
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from typing import IO, TYPE_CHECKING, Dict, Optional, Sequence

if TYPE_CHECKING:
    from harness.faultplan import ProcRun
else:  # in the guest, faultplan.py sits beside this file
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from faultplan import ProcRun

DEBUGFS = "/sys/kernel/debug"
TRACEFS = "/sys/kernel/tracing"
KMEMLEAK = DEBUGFS + "/kmemleak"
KMEMLEAK_VERBOSE = "/sys/module/kmemleak/parameters/verbose"
TAIL = 4000  # characters of a process's output kept


def write(path: str, text: str) -> None:
    with open(path, "w") as f:
        f.write(text)


def read(path: str) -> str:
    with open(path) as f:
        return f.read()


def mount(fs: str, where: str, probe: str) -> None:
    if not os.path.exists(probe):
        subprocess.run(["mount", "-t", fs, fs, where], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def configure_injection(start: int, end: int) -> Optional[str]:
    """failslab and fail_page_alloc armed by fail-nth only, filtered to the module area."""
    mount("debugfs", DEBUGFS, DEBUGFS + "/failslab")
    for attr in ("failslab", "fail_page_alloc"):
        d = "%s/%s" % (DEBUGFS, attr)
        if not os.path.isdir(d):
            return "%s does not exist: the kernel lacks CONFIG_%s (and the debug flavour's fault injection)" % (
                d, "FAILSLAB" if attr == "failslab" else "FAIL_PAGE_ALLOC")
        if not os.path.exists(d + "/require-start"):
            return "%s/require-start does not exist: the kernel lacks CONFIG_FAULT_INJECTION_STACKTRACE_FILTER" % d
        # probability 0: nothing fails but what fail-nth asks for (lib/fault-inject.c checks it first)
        settings = [("probability", "0"), ("task-filter", "N"), ("verbose", "2"), ("ignore-gfp-wait", "N"),
                    ("stacktrace-depth", "32"), ("reject-start", "0"), ("reject-end", "0"),
                    ("require-start", "%#x" % start), ("require-end", "%#x" % end)]
        if attr == "fail_page_alloc":
            settings += [("min-order", "0"), ("ignore-gfp-highmem", "N")]
        for name, value in settings:
            write("%s/%s" % (d, name), value)
        if int(read(d + "/require-start").strip(), 16) != start:
            return "%s/require-start did not take %#x" % (d, start)
    return None


def configure_kmemleak() -> Optional[str]:
    if not os.path.exists(KMEMLEAK):
        return "%s does not exist: the kernel lacks CONFIG_DEBUG_KMEMLEAK" % KMEMLEAK
    if not os.path.exists(KMEMLEAK_VERBOSE):
        return "%s does not exist: kmemleak cannot log what it finds" % KMEMLEAK_VERBOSE
    # What the boot left (if anything) shows in the first scan as another task's object: no point's.
    write(KMEMLEAK_VERBOSE, "1")
    return None


def configure_tracing() -> bool:
    """The initcall_start event on (the address of each module's init function); False: not there."""
    mount("tracefs", TRACEFS, TRACEFS + "/trace")
    enable = TRACEFS + "/events/initcall/initcall_start/enable"
    if not os.path.exists(enable):
        return False
    write(enable, "1")
    write(TRACEFS + "/tracing_on", "1")
    return True


_INITCALL = re.compile(r"-(\d+)\s+\[\d+\].*initcall_start: func=0x([0-9a-f]+)")


def initcall_address(pid: Optional[int]) -> Optional[int]:
    """The init function the process ``pid`` called (``func`` prints as an address once the module's
    init code is gone; while it is there, as a symbol, and then it is not needed)."""
    try:
        text = read(TRACEFS + "/trace")
    except OSError:
        return None
    found = None
    for m in _INITCALL.finditer(text):
        if pid is None or int(m.group(1)) == pid:
            found = int(m.group(2), 16)
    return found


def taint() -> int:
    try:
        return int(read("/proc/sys/kernel/tainted").strip())
    except (OSError, ValueError):
        return 0


def module_loaded(module: str) -> bool:
    return os.path.exists("/sys/module/%s/initstate" % module) or os.path.exists("/sys/module/%s/sections" % module)


def sections(module: str) -> Dict[str, int]:
    d = "/sys/module/%s/sections" % module
    out: Dict[str, int] = {}
    try:
        names = os.listdir(d)
    except OSError:
        return out
    for name in names:
        try:
            out[name] = int(read(os.path.join(d, name)).strip(), 16)
        except (OSError, ValueError):
            continue
    return out


# The armed process: sh writes fail-nth for itself, then execs the command in the same task (exec
# keeps fail_nth; fork clears it, kernel/fork.c). Nothing sh does in between has module code on its stack.
ARM = ("sh", "-c", 'echo "$0" > /proc/self/fail-nth && exec "$@"')


def _tail(f: IO[bytes]) -> str:
    f.seek(0)
    return f.read().decode("utf-8", "backslashreplace")[-TAIL:]


def run_proc(what: str, argv: Sequence[str], timeout: float, env: Dict[str, str], arm: Optional[int] = None,
             cwd: Optional[str] = None) -> ProcRun:
    """Run ``argv`` in its own session (in ``cwd``); armed, its fail-nth is written before it execs and
    read back before it is reaped (a zombie's /proc entry is still there). Past ``timeout`` its group
    is killed."""
    t0 = time.monotonic()
    command = list(argv) if arm is None else list(ARM) + [str(arm)] + list(argv)
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        try:
            proc = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=out, stderr=err, env=env,
                                    cwd=cwd, start_new_session=True)
        except OSError as e:
            return ProcRun(what, tuple(argv), timeout=timeout, returncode=127, armed=arm,
                           stderr="cannot run %s: %s" % (argv[0], e))
        timed_out = not _wait_exited(proc.pid, timeout)
        stuck = False
        if timed_out:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            stuck = not _wait_exited(proc.pid, 10)
        remaining = None
        if arm is not None:
            try:
                remaining = int(read("/proc/%d/fail-nth" % proc.pid).strip())
            except (OSError, ValueError):
                remaining = None
        rc = None
        if not stuck:
            rc = proc.wait()
        return ProcRun(what, tuple(argv), pid=proc.pid, timeout=timeout, returncode=None if timed_out else rc,
                       timed_out=timed_out, stuck=stuck, armed=arm, remaining=remaining, stdout=_tail(out),
                       stderr=_tail(err), seconds=round(time.monotonic() - t0, 3))


def _wait_exited(pid: int, timeout: float) -> bool:
    """Whether ``pid`` exited within ``timeout``; it is left unreaped."""
    deadline = time.monotonic() + timeout
    delay = 0.002
    while True:
        if os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None:
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(delay)
        delay = min(delay * 2, 0.05)

"""Keeps a child's whole process group from outliving the harness, even a SIGKILLed one.

``procs`` starts every child as ``python guard.py FD -- ARGV...`` in a new
session: this process leads the group, runs ARGV in it, and watches FD, the read
end of a pipe whose write end only the harness holds. When the harness dies, by
any means, the kernel closes that end: FD reads EOF and the guard ends the whole
group (TERM, then KILL), grandchildren included. ``PR_SET_PDEATHSIG`` would not
do: it reaches only the direct child, and it is cleared across fork(), which is
how virtme-ng starts QEMU (``virtme/commands/run.py``: ``os.fork()`` then
``os.execv(qemu...)``).

Otherwise it is transparent: the child inherits stdin/stdout/stderr, and the
guard exits as the child did (with the same signal, when it was killed by one).
Standard library only; started by path with ``-S``, it imports nothing else.
"""

import os
import select
import signal
import subprocess
import sys
import time

GRACE = 3.0  # seconds between TERM and KILL once the harness is gone


def _end_group(child: "subprocess.Popen[bytes]") -> None:
    os.killpg(0, signal.SIGTERM)  # the guard ignores it; everything else in the group gets it
    deadline = time.monotonic() + GRACE
    while child.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    os.killpg(0, signal.SIGKILL)  # whatever is left, the guard included


def _exit_like(returncode: int) -> None:
    if returncode < 0:  # killed by a signal: die by the same one, so the harness sees it
        if -returncode not in (signal.SIGKILL, signal.SIGSTOP):  # those two cannot be caught anyway
            signal.signal(-returncode, signal.SIG_DFL)
        os.kill(os.getpid(), -returncode)
    sys.exit(returncode)


def main(argv: "list[str]") -> None:
    if len(argv) < 4 or argv[2] != "--":
        sys.exit("usage: guard.py FD -- ARGV...")
    fd = int(argv[1])
    try:
        child = subprocess.Popen(argv[3:])
    except OSError as e:
        sys.stderr.write(f"{argv[3]}: {e.strerror}\n")
        sys.exit(127)
    # After the child started (an ignored signal would be inherited): the group's TERM is
    # for the child; the guard waits for it and then exits the way it did.
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    while child.poll() is None:
        ready, _, _ = select.select([fd], [], [], 0.2)
        if ready and not os.read(fd, 1):
            _end_group(child)
    _exit_like(child.returncode)


if __name__ == "__main__":
    main(sys.argv)

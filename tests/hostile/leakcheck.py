#!/usr/bin/env python3
"""Load/unload cycles with traffic, then a kmemleak scan; run in the guest.

    python3 leakcheck.py --ko /harness/build/netlink_kernel.ko --cycles 50
    python3 leakcheck.py --ko /harness/build/leaky.ko --module leaky --messages 0

Needs a kernel with CONFIG_DEBUG_KMEMLEAK (debian-src:SUITE+kasan): Debian's
stock kernels have none, and then this prints {"kmemleak": false} and exits 3.
Each cycle: insmod, three hellos from one client (each reply checked), rmmod.
kmemleak is cleared first (objects the boot left are not this module's) and
scanned twice after the cycles (it reports an object only once it has stayed
unreferenced across scans). Prints one JSON object: cycles done, every leak
report, and the module's: a frame names it, or it was allocated during the
cycles by insmod, rmmod or this client (see names_module). Exit 0 when every cycle worked and
no report names the module, 1 otherwise.
"""

import argparse
import json
import os
import re
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import hostile  # noqa: E402  (the frames and sockets of the hostile suite)

KMEMLEAK = "/sys/kernel/debug/kmemleak"


def kmemleak(command):
    with open(KMEMLEAK, "w") as f:
        f.write(command)


def reports(text):
    """The kmemleak file, one string per "unreferenced object" entry."""
    out = []
    for line in text.splitlines():
        if line.startswith("unreferenced object"):
            out.append(line)
        elif out:
            out[-1] += "\n" + line
    return out


def jiffies():
    """The kernel's jiffies now (kmemleak stamps each object with its allocation's)."""
    with open("/proc/timer_list") as f:
        for line in f:
            if line.startswith("jiffies:"):
                return int(line.split()[1])
    raise RuntimeError("no jiffies in /proc/timer_list")


CYCLE_COMMS = ("insmod", "rmmod", "python3")  # what runs during the cycles: loads, unloads, this client


def names_module(report, module, window):
    """A report is the module's when a frame names it, or when the object was allocated
    during the cycles by one of their processes: an unloaded module's frames print as
    bare addresses (its init code is freed even while it is loaded), so a leak from its
    init or exit path can only be told by when and by whom it was allocated."""
    if "[%s]" % module in report or "%s_" % module in report:
        return True
    m = re.search(r'comm "([^"]*)", pid \d+, jiffies (\d+)', report)
    return m is not None and m.group(1) in CYCLE_COMMS and window[0] <= int(m.group(2)) <= window[1]


def cycle(ko, module, n, messages):
    p = subprocess.run(["insmod", ko], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=120)
    if p.returncode != 0:
        return "cycle %d: insmod failed: %s" % (n, p.stdout.decode("utf-8", "replace").strip())
    ctx = hostile.Ctx()
    if messages:
        s, port = hostile.nl_socket()
        with s:
            for i in range(messages):
                res = hostile.send(s, hostile.exact(b"cycle %d message %d\0" % (n, i), pid=port))
                ctx.check(res[0] == "sent", "send gave %r" % (res,))
                hostile.expect_reply(ctx, s, "cycle %d message %d" % (n, i))
    p = subprocess.run(["rmmod", module], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=120)
    if p.returncode != 0:
        ctx.problems.append("cycle %d: rmmod failed: %s" % (n, p.stdout.decode("utf-8", "replace").strip()))
    return "; ".join(ctx.problems) or None


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ko", required=True, help="the module to load")
    ap.add_argument("--module", default=hostile.MODULE, help="its name, as rmmod and kmemleak give it")
    ap.add_argument("--cycles", type=int, default=50)
    ap.add_argument("--messages", type=int, default=3, help="hellos per cycle (0: a module that is no netlink echo)")
    ap.add_argument("--settle", type=float, default=6.0, help="seconds between the two scans")
    args = ap.parse_args()

    if not os.path.exists(KMEMLEAK):
        subprocess.run(["mount", "-t", "debugfs", "debugfs", "/sys/kernel/debug"], stderr=subprocess.DEVNULL)
    if not os.path.exists(KMEMLEAK):
        print(json.dumps({"kmemleak": False, "error": KMEMLEAK + " does not exist: no CONFIG_DEBUG_KMEMLEAK"}))
        return 3
    kmemleak("clear")
    t0 = time.monotonic()
    problems, done = [], 0
    j0 = jiffies()
    for n in range(1, args.cycles + 1):
        problem = cycle(args.ko, args.module, n, args.messages)
        if problem:
            problems.append(problem)
        else:
            done += 1
    cycles_s = time.monotonic() - t0
    window = (j0, jiffies())
    kmemleak("scan")
    time.sleep(args.settle)
    kmemleak("scan")
    with open(KMEMLEAK) as f:
        found = reports(f.read())
    mine = [r for r in found if names_module(r, args.module, window)]
    print(json.dumps({"kmemleak": True, "cycles": args.cycles, "cycles_ok": done, "problems": problems[:20],
                      "jiffies_window": window,
                      "cycles_seconds": round(cycles_s, 1), "reports": found, "module_reports": mine}))
    return 0 if done == args.cycles and not mine else 1


if __name__ == "__main__":
    sys.exit(main())

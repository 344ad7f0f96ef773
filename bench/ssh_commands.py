#!/usr/bin/env python3
"""Benchmark: N guest commands with one boot per command (exec channel) vs one SSH session.

    .venv/bin/python bench/ssh_commands.py [--commands 20] [--kernel debian:bookworm] [--json FILE]

Both contenders use the same cached root, kernel and built module. The exec
contender boots a fresh guest per command through virtme-ng's exec channel
(what `harness run` does once); the SSH contender boots once with sshd and runs
every command over one paramiko connection. Prints the wall times, the time per
command and the ratio; writes them as JSON with --json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from harness import procs, virtme  # noqa: E402
from harness.events import discard  # noqa: E402
from harness.guest import vng  # noqa: E402
from harness.phases import RunRequest, prepare, vm_config  # noqa: E402
from harness.session import Session  # noqa: E402

COMMAND = "cat /proc/sys/kernel/random/boot_id"


def boot_per_command(req: RunRequest, n: int) -> list[float]:
    run_dir = Path(tempfile.mkdtemp(prefix="kmod-harness-bench-"))
    prep = prepare(req, discard, run_dir, [])
    cfg = vm_config(prep.setup, prep.root, run_dir, req, discard)
    times = []
    for i in range(n):
        t0 = time.monotonic()
        done = procs.run(vng.vng_argv(prep.setup.vng, cfg, COMMAND), timeout=600, what="the VM", env=virtme.vng_env())
        times.append(time.monotonic() - t0)
        if done.returncode != 0 or len(done.stdout.strip()) != 36:
            raise SystemExit(f"boot {i}: exit {done.returncode}, output {done.stdout!r}")
        print(f"  exec boot {i + 1}/{n}: {times[-1]:.1f}s", file=sys.stderr, flush=True)
    return times


def one_session(req: RunRequest, n: int) -> tuple[float, float, list[float]]:
    times = []
    with Session(req, discard) as s:
        # Only the boot counts, as for the exec contender: both have the module built already.
        assert s.live is not None
        t0 = time.monotonic() - s.live.boot_seconds
        ids = set()
        for _ in range(n):
            t = time.monotonic()
            r = s.run(COMMAND)
            times.append(time.monotonic() - t)
            ids.add(r.stdout.strip())
        assert len(ids) == 1, "every command must run in the same boot"
        s.close()  # shutdown counts too
    return time.monotonic() - t0, s.live.boot_seconds, times


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--commands", type=int, default=20)
    ap.add_argument("--kernel", default="debian:bookworm")
    ap.add_argument("--json", type=Path)
    a = ap.parse_args()
    req = RunRequest(kernel=a.kernel, results=Path(tempfile.mkdtemp()))
    print(f"{a.commands} guest commands on {a.kernel}, {os.cpu_count()} CPUs", file=sys.stderr)
    with procs.SignalGuard():
        ssh_wall, ssh_boot, ssh_cmds = one_session(req, a.commands)
        exec_times = boot_per_command(req, a.commands)
    exec_wall = sum(exec_times)
    out = {
        "commands": a.commands, "kernel": a.kernel,
        "exec_wall_s": round(exec_wall, 2), "exec_per_command_s": round(statistics.median(exec_times), 2),
        "ssh_wall_s": round(ssh_wall, 2), "ssh_boot_s": round(ssh_boot, 2),
        "ssh_per_command_median_s": round(statistics.median(ssh_cmds), 3),
        "ssh_per_command_max_s": round(max(ssh_cmds), 3),
        "speedup": round(exec_wall / ssh_wall, 1),
    }
    print(f"| contender | wall (s) | per command (s) |\n| --- | ---: | ---: |\n"
          f"| one boot per command (exec) | {exec_wall:.1f} | {out['exec_per_command_s']:.2f} (median boot) |\n"
          f"| one SSH session | {ssh_wall:.1f} (boot {ssh_boot:.1f}) | {out['ssh_per_command_median_s']:.3f} "
          f"(median; max {out['ssh_per_command_max_s']:.3f}) |\n\nspeedup: {out['speedup']}x")
    if a.json:
        a.json.parent.mkdir(parents=True, exist_ok=True)
        a.json.write_text(json.dumps(out, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""Benchmark: netlink round trips of the Python client against the C client, in one guest.

    .venv/bin/python bench/roundtrip.py [--messages 10000] [--kernel debian:bookworm] [--json FILE]

One guest is booted (harness.session.Session, TCG by default) with the module
built as for `harness run`. The C client (userspace/netlink_client.c) is
compiled on the host inside the kernel's root with the root's own gcc, under
bubblewrap like the module build (root read-only, no network), and put in the
run directory, which the guest sees at /harness. In the guest: insmod, then
each client (bench/netlink_stats.py / -s) sends the hello --messages times, each a real
send and a real recv of the module's NLMSG_DONE reply, timed by the client
itself (the startup of python3 is not counted). Clients alternate within each
round and the order flips every round (python, c / c, python / ...), so noise
and drift hit both alike. Then rmmod, and the kernel's warnings are checked.

Before the measured rounds one short warm-up pair (not counted) estimates how
long a full run takes; the number of rounds is then chosen to keep the
measured part within --budget seconds (at most --max-rounds; --rounds forces it).

The console log level is lowered (dmesg -n 5, warnings and worse still reach
the console) while the clients run: the module logs two pr_info() lines per
message, and printing them synchronously on the emulated serial console would
dominate every round trip and hide the clients' own cost. The records still go
to the kernel's log buffer. --console-loglevel keep leaves the console alone.

Prints a Markdown table (client, runs, msgs/s median and min-max, p50 and p99
latency medians) and the ratio of the median rates python/c; --json writes
every figure.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from harness import procs  # noqa: E402
from harness.contract import GUEST_RUN_DIR  # noqa: E402
from harness.events import Printer  # noqa: E402
from harness.guest.vng import GUEST_PROJECT_DIR  # noqa: E402
from harness.kernel.roots import Root  # noqa: E402
from harness.phases import RunRequest  # noqa: E402
from harness.session import Session  # noqa: E402

C_SOURCE = REPO / "userspace" / "netlink_client.c"
C_GUEST = f"{GUEST_RUN_DIR}/netlink_client"
PY_GUEST = f"{GUEST_PROJECT_DIR}/bench/netlink_stats.py"  # imports ../userspace/netlink_client.py
CFLAGS = ("-Wall", "-Wextra", "-O2")
CLIENTS = ("python", "c")
TARGET = 0.5  # the target: the Python client's rate at least half the C client's
KERNEL_WARN_OK = ("loading out-of-tree module taints kernel", "module verification failed")


def log(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def build_c_client(root: Root, dest: Path, timeout: float = 300) -> list[str]:
    """Compile the C client with the root's gcc inside the root (bubblewrap); return its warnings."""
    bwrap = procs.require_tool("bwrap", "bubblewrap")
    out = Path(tempfile.mkdtemp(prefix="kmod-harness-cclient-"))
    try:
        argv = [
            bwrap, "--ro-bind", str(root.path), "/", "--proc", "/proc", "--dev", "/dev",
            "--tmpfs", "/tmp", "--ro-bind", str(C_SOURCE), "/tmp/src/netlink_client.c",
            "--bind", str(out), "/tmp/out", "--chdir", "/tmp/out",
            "--unshare-all", "--die-with-parent", "--clearenv",
            "--setenv", "PATH", "/usr/sbin:/usr/bin:/sbin:/bin", "--setenv", "HOME", "/tmp",
            "--setenv", "LC_ALL", "C",
            root.kernel.compiler, *CFLAGS, "-o", "/tmp/out/netlink_client", "/tmp/src/netlink_client.c",
        ]
        res = procs.run(argv, timeout=timeout, what="C client build")
        if res.returncode != 0 or not (out / "netlink_client").is_file():
            raise SystemExit(f"building the C client with {root.kernel.compiler} failed:\n{res.output}")
        shutil.copy2(out / "netlink_client", dest)
        return [ln for ln in res.output.splitlines() if "warning:" in ln]
    finally:
        shutil.rmtree(out, ignore_errors=True)


def client_command(client: str, messages: int) -> str:
    if client == "python":
        return f"python3 {PY_GUEST} --count {messages}"
    return f"{C_GUEST} -s -c {messages}"


def run_client(s: Session, client: str, messages: int) -> dict:
    """One statistics run in the guest (netlink_stats.py, or the C client with -s): its JSON line
    plus the command's wall time (startup included)."""
    cmd = client_command(client, messages)
    res = s.run(cmd, timeout=max(120.0, messages * 0.1))
    lines = res.stdout.strip().splitlines()
    if res.status != 0 or not lines:
        raise SystemExit(f"{cmd!r} failed with status {res.status}:\n{res.stdout}\n{res.stderr}")
    stats = json.loads(lines[-1])
    if stats.get("client") != client or stats.get("messages") != messages:
        raise SystemExit(f"{cmd!r}: unexpected stats {stats}")
    stats["command_s"] = round(res.seconds, 3)
    return stats


def guest(s: Session, cmd: str, timeout: float = 60) -> str:
    res = s.run(cmd, timeout=timeout)
    if res.status != 0:
        raise SystemExit(f"guest command {cmd!r} failed with status {res.status}: {res.stderr.strip()}")
    return res.stdout


def pick_rounds(warmup: dict[str, dict], warm_messages: int, messages: int, budget: float,
                max_rounds: int) -> tuple[int, float]:
    """Rounds that fit the budget, from the warm-up pair; also the estimated seconds of one round."""
    per_round = 0.0
    for st in warmup.values():
        startup = max(0.0, st["command_s"] - st["seconds"])
        per_round += st["seconds"] * messages / warm_messages + startup
    rounds = int(budget // per_round) if per_round > 0 else max_rounds
    return max(1, min(max_rounds, rounds)), per_round


def summarize(runs: list[dict]) -> dict:
    out = {}
    for client in CLIENTS:
        mine = [r for r in runs if r["client"] == client]
        rates = [r["msgs_per_s"] for r in mine]
        out[client] = {
            "runs": len(mine),
            "msgs_per_s_median": round(statistics.median(rates), 1),
            "msgs_per_s_min": min(rates),
            "msgs_per_s_max": max(rates),
            "p50_us_median": round(statistics.median(r["p50_us"] for r in mine), 3),
            "p99_us_median": round(statistics.median(r["p99_us"] for r in mine), 3),
            "max_us_max": max(r["max_us"] for r in mine),
        }
    return out


def markdown(summary: dict, ratio: float) -> str:
    rows = ["| client | runs | msgs/s median (min-max) | p50 µs (median) | p99 µs (median) |",
            "| --- | ---: | ---: | ---: | ---: |"]
    for client in CLIENTS:
        c = summary[client]
        rows.append(f"| {client} | {c['runs']} | {c['msgs_per_s_median']:.0f} "
                    f"({c['msgs_per_s_min']:.0f}-{c['msgs_per_s_max']:.0f}) | "
                    f"{c['p50_us_median']:.1f} | {c['p99_us_median']:.1f} |")
    verdict = "meets" if ratio >= TARGET else "misses"
    rows.append("")
    rows.append(f"python/c ratio of the median rates: {ratio:.2f} ({verdict} the target of {TARGET:.2f})")
    return "\n".join(rows)


def benchmark(a: argparse.Namespace) -> dict:
    with tempfile.TemporaryDirectory(prefix="kmod-harness-rt-") as results:  # only the module's build log
        return _benchmark(a, RunRequest(kernel=a.kernel, project=REPO, results=Path(results),
                                        accel=a.accel, cpus=a.cpus))


def _benchmark(a: argparse.Namespace, req: RunRequest) -> dict:
    doc: dict = {"kernel": a.kernel, "messages": a.messages, "host_cpus": os.cpu_count(),
                 "host_loadavg_start": [round(x, 2) for x in os.getloadavg()]}
    t_all = time.monotonic()
    with Session(req, Printer(sys.stderr)) as s:
        assert s.prepared is not None and s.run_dir is not None and s.live is not None
        root = s.prepared.root
        doc.update(release=root.kernel.release, accel=s.prepared.setup.accel.value, guest_cpus=a.cpus,
                   boot_s=round(s.live.boot_seconds, 1), compiler=root.kernel.compiler)
        t0 = time.monotonic()
        doc["c_build_warnings"] = build_c_client(root, s.run_dir / "netlink_client")
        doc["c_build_s"] = round(time.monotonic() - t0, 1)
        log(f"C client built with {doc['compiler']} in {doc['c_build_s']}s, "
            f"{len(doc['c_build_warnings'])} warnings")
        for w in doc["c_build_warnings"]:
            log(f"  {w}")

        doc["guest_python"] = guest(s, "python3 -V").strip()
        doc["guest_clocksource"] = guest(
            s, "cat /sys/devices/system/clocksource/clocksource0/current_clocksource").strip()
        doc["console_loglevel_before"] = guest(s, "cat /proc/sys/kernel/printk").split()[0]
        guest(s, f"insmod {shlex.quote(s.ko)}")
        if a.console_loglevel != "keep":
            guest(s, f"dmesg -n {int(a.console_loglevel)}")
        doc["console_loglevel"] = guest(s, "cat /proc/sys/kernel/printk").split()[0]

        warm = max(100, a.messages // 20)
        warmup = {}
        for client in CLIENTS:
            warmup[client] = run_client(s, client, warm)
            log(f"warm-up {client}: {warm} messages, {warmup[client]['msgs_per_s']:.0f} msgs/s, "
                f"command {warmup[client]['command_s']:.1f}s")
        doc["warmup"] = {"messages": warm, **warmup}
        if a.rounds:
            rounds, per_round = a.rounds, pick_rounds(warmup, warm, a.messages, 1, 1)[1]
        else:
            rounds, per_round = pick_rounds(warmup, warm, a.messages, a.budget, a.max_rounds)
        log(f"{rounds} rounds of {a.messages} messages per client, ~{per_round:.0f}s per round (estimate)")

        runs = []
        for rnd in range(rounds):
            order = CLIENTS if rnd % 2 == 0 else CLIENTS[::-1]
            for client in order:
                st = run_client(s, client, a.messages)
                st["round"] = rnd + 1
                runs.append(st)
                log(f"round {rnd + 1}/{rounds} {client}: {st['msgs_per_s']:.0f} msgs/s, p50 {st['p50_us']:.0f} us, "
                    f"p99 {st['p99_us']:.0f} us, {st['seconds']:.1f}s (command {st['command_s']:.1f}s)")
        doc["runs"] = runs

        if a.console_loglevel != "keep":
            guest(s, f"dmesg -n {int(doc['console_loglevel_before'])}")
        guest(s, f"rmmod {shlex.quote(s.module)}")
        warnings = guest(s, "dmesg -l emerg,alert,crit,err,warn").splitlines()
        doc["kernel_warnings"] = [w for w in warnings if w.strip() and not any(k in w for k in KERNEL_WARN_OK)]
        for w in doc["kernel_warnings"]:
            log(f"kernel: {w}")
    doc["total_s"] = round(time.monotonic() - t_all, 1)
    doc["host_loadavg_end"] = [round(x, 2) for x in os.getloadavg()]
    doc["summary"] = summarize(runs)
    py, c = doc["summary"]["python"]["msgs_per_s_median"], doc["summary"]["c"]["msgs_per_s_median"]
    doc["ratio_python_c"] = round(py / c, 3)
    doc["target_met"] = doc["ratio_python_c"] >= TARGET
    return doc


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--messages", type=int, default=10000, help="round trips per client run (default 10000)")
    ap.add_argument("--kernel", default="debian:bookworm")
    ap.add_argument("--accel", default="tcg", choices=("auto", "kvm", "tcg"), help="default: tcg")
    ap.add_argument("--cpus", type=int, default=1, help="guest vCPUs (default 1: the clients are single-threaded)")
    ap.add_argument("--rounds", type=int, help="measured rounds (each runs both clients); default: from --budget")
    ap.add_argument("--budget", type=float, default=200.0,
                    help="seconds the measured rounds may take, estimated from the warm-up (default 200)")
    ap.add_argument("--max-rounds", type=int, default=5)
    ap.add_argument("--console-loglevel", default="5",
                    help="console log level while the clients run (default 5), or 'keep'")
    ap.add_argument("--json", type=Path, help="write every figure here")
    a = ap.parse_args()
    if a.messages < 1 or (a.rounds is not None and a.rounds < 1) or a.max_rounds < 1:
        ap.error("--messages, --rounds and --max-rounds must be at least 1")
    if a.console_loglevel != "keep" and not (a.console_loglevel.isdigit() and 1 <= int(a.console_loglevel) <= 8):
        ap.error("--console-loglevel is 1..8 or 'keep'")
    log(f"{a.messages} round trips per run on {a.kernel} ({a.accel}), host {os.cpu_count()} CPUs, "
        f"load {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    with procs.SignalGuard():
        doc = benchmark(a)
    print(markdown(doc["summary"], doc["ratio_python_c"]))
    print(f"\n{doc['messages']} messages per run, {doc['release']} ({doc['accel']}, {doc['guest_cpus']} vCPU), "
          f"guest {doc['guest_python']}, clocksource {doc['guest_clocksource']}, "
          f"C client built with {doc['compiler']} {' '.join(CFLAGS)}; "
          f"console log level {doc['console_loglevel']}; host load average "
          f"{doc['host_loadavg_start'][0]} at start, {doc['host_loadavg_end'][0]} at end; total {doc['total_s']}s")
    if a.json:
        a.json.write_text(json.dumps(doc, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

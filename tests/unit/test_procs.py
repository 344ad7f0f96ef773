import io
import os
import signal
import time

import pytest

from harness import procs
from harness.errors import Interrupted, PhaseTimeout
from harness.textlog import CappedLog


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie is dead for our purposes
    with open(f"/proc/{pid}/stat") as f:
        return f.read().split(") ", 1)[1][0] != "Z"


def test_streams_lines_to_log_and_sink():
    log = io.StringIO()
    seen = []
    res = procs.run(["sh", "-c", "echo out1; echo err1 >&2; echo out2"], timeout=10, what="t", log=log,
                    on_line=lambda s, ln: seen.append((s, ln)))
    assert res.returncode == 0
    assert res.stdout == "out1\nout2\n" and res.stderr == "err1\n"
    assert ("stderr", "err1") in seen and ("stdout", "out2") in seen
    assert sorted(log.getvalue().splitlines()) == ["err1", "out1", "out2"]


def test_timeout_ends_the_whole_group_including_grandchildren(tmp_path):
    pidfile = tmp_path / "pid"
    t0 = time.monotonic()
    with pytest.raises(PhaseTimeout, match="did not finish within 1s"):
        procs.run(["sh", "-c", f"sleep 300 & echo $! > {pidfile}; echo started; wait"], timeout=1, what="sleeper")
    assert time.monotonic() - t0 < 10
    grandchild = int(pidfile.read_text())
    deadline = time.monotonic() + 5
    while _alive(grandchild) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _alive(grandchild)


def test_output_before_a_timeout_is_in_the_log():
    log = io.StringIO()
    with pytest.raises(PhaseTimeout):
        procs.run(["sh", "-c", "echo evidence; sleep 300"], timeout=1, what="t", log=log)
    assert "evidence" in log.getvalue()


def test_orphans_left_by_an_exiting_leader_are_ended(tmp_path):
    pidfile = tmp_path / "pid"
    # the leader exits at once, leaving a background child holding no pipe
    procs.run(["sh", "-c", f"sleep 300 >/dev/null 2>&1 & echo $! > {pidfile}"], timeout=10, what="t")
    pid = int(pidfile.read_text())
    deadline = time.monotonic() + 5
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _alive(pid)


def test_a_process_ignoring_sigterm_is_killed(tmp_path):
    ready = tmp_path / "trap-set"
    p = procs.start(["sh", "-c", f"trap '' TERM; touch {ready}; sleep 300"])
    deadline = time.monotonic() + 30  # under load the shell may take a while to set its trap
    while not ready.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert ready.exists(), "the shell never set its trap"
    t0 = time.monotonic()
    procs.kill_group(p, grace=0.5)
    assert p.returncode == -signal.SIGKILL
    assert time.monotonic() - t0 < 5


def test_missing_program_is_an_infra_error():
    from harness.errors import InfraError
    with pytest.raises(InfraError, match="no-such-program-x not found"):
        procs.run(["no-such-program-x"], timeout=5, what="t")


def test_a_second_signal_does_not_cut_the_clean_up_short(monkeypatch):
    """timeout(1) and a process manager can both send SIGTERM: the group still ends."""
    proc = procs.start(["sh", "-c", "trap '' TERM; sleep 60"])  # ignores SIGTERM: needs the SIGKILL step
    real_kill_all = procs.kill_all

    def kill_all_hit_by_a_second_signal() -> None:
        # The second one lands while the first one's clean-up runs (not on a timer:
        # under load a timer can fire after the guard is gone).
        os.kill(os.getpid(), signal.SIGTERM)
        real_kill_all()

    monkeypatch.setattr(procs, "kill_all", kill_all_hit_by_a_second_signal)
    outer: list[int] = []  # the program around the harness (pytest here) hears of it once, afterwards
    previous = signal.signal(signal.SIGTERM, lambda signum, _frame: outer.append(signum))
    try:
        with pytest.raises(Interrupted, match="SIGTERM"):
            with procs.SignalGuard():
                os.kill(os.getpid(), signal.SIGTERM)
                time.sleep(5)
        assert proc.poll() is not None, "the group outlived the signal"
        assert outer == [signal.SIGTERM]
    finally:
        signal.signal(signal.SIGTERM, previous)
        procs.kill_group(proc, grace=0.1)


def test_a_capped_log_keeps_its_head_and_its_tail(tmp_path):
    path = tmp_path / "console.log"
    with CappedLog(path, head=100, tail=30) as log:
        for i in range(1000):
            log.write(f"line {i:04}\n")  # 10 characters each
        log.flush()
        assert path.stat().st_size < 300  # bounded while it runs, not only at the end
    text = path.read_text()
    lines = text.splitlines()
    assert lines[:10] == [f"line {i:04}" for i in range(10)]
    assert lines[-3:] == ["line 0997", "line 0998", "line 0999"]
    assert "reached 100 characters" in text
    assert f"[kmod-harness: {(1000 - 10 - 3) * 10} characters left out here]" in text
    assert log.dropped == 9870


def test_a_log_under_its_cap_is_written_as_it_came(tmp_path):
    path = tmp_path / "console.log"
    with CappedLog(path, head=1000, tail=10) as log:
        log.write("# vng ...\n")
        log.write("[    0.000000] Linux version 6.1.0\n")
    assert path.read_text() == "# vng ...\n[    0.000000] Linux version 6.1.0\n"
    assert log.dropped == 0


def test_exit_status_and_death_by_signal_come_through_the_guard():
    assert procs.run(["sh", "-c", "exit 3"], timeout=10, what="t").returncode == 3
    assert procs.run(["sh", "-c", "kill -KILL $$"], timeout=10, what="t").returncode == -signal.SIGKILL


def wait_dead(pids, seconds: float) -> list:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and any(_alive(p) for p in pids):
        time.sleep(0.1)
    return [p for p in pids if _alive(p)]


def test_a_sigkilled_harness_leaves_no_process_behind(tmp_path):
    """SIGKILL gives the harness no chance to clean up: the guard ends the group (grandchildren too)."""
    import subprocess
    import sys

    pidfile = tmp_path / "pids"
    script = ("from harness import procs\n"
              f"procs.run(['sh', '-c', 'sleep 300 & echo $! >> {pidfile}; echo $$ >> {pidfile}; wait'],"
              " timeout=600, what='t')\n")
    harness = subprocess.Popen([sys.executable, "-c", script])
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and len(pidfile.read_text().split() if pidfile.exists() else []) < 2:
        time.sleep(0.05)
    pids = [int(p) for p in pidfile.read_text().split()]
    assert len(pids) == 2 and all(_alive(p) for p in pids)
    harness.kill()
    harness.wait()
    assert wait_dead(pids, 10) == [], "processes outlived a SIGKILLed harness"


def test_an_interrupt_stops_new_processes_until_it_is_cleared():
    procs.interrupt("a matrix was stopped")
    try:
        with pytest.raises(Interrupted, match="a matrix was stopped"):
            procs.run(["true"], timeout=5, what="t")
    finally:
        procs.clear_interrupt()
    assert procs.run(["true"], timeout=5, what="t").returncode == 0


def test_quick_keeps_the_output_whole():
    res = procs.quick(["sh", "-c", "printf 'a\\nb'"])
    assert res.returncode == 0 and res.stdout == "a\nb"


def test_require_tool_names_the_package():
    from harness.errors import InfraError
    with pytest.raises(InfraError, match="no-such-tool-y not found") as e:
        procs.require_tool("no-such-tool-y", "some-package")
    assert "install the package 'some-package'" in str(e.value)


def test_a_relative_program_is_found_where_it_runs(tmp_path):
    # The kernel build runs ./scripts/config in the tree: it must be looked for there, not in
    # the harness's own working directory (a KUnit kernel build failed with "not found").
    (tmp_path / "scripts").mkdir()
    tool = tmp_path / "scripts" / "config"
    tool.write_text("#!/bin/sh\necho configured \"$@\"\n")
    tool.chmod(0o755)
    res = procs.run(["./scripts/config", "-e", "X"], timeout=30, what="scripts/config", cwd=tmp_path)
    assert res.returncode == 0 and res.stdout.strip() == "configured -e X"

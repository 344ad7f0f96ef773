"""Boots real VMs (TCG here, ~20-60 s a boot with the root cached; the first run makes the root)."""

import json
import subprocess
import sys

import pytest

from harness import cli

from conftest import REPO, wait_for_qemu, wait_no_qemu

pytestmark = pytest.mark.vm


def test_default_run_passes_with_the_five_trail_records(own_tmp, monkeypatch):
    tmp_path = own_tmp
    monkeypatch.chdir(REPO)
    code = cli.main(["run", "--results", str(tmp_path)])
    res = json.loads((tmp_path / "debian-bookworm" / "result.json").read_text())
    assert code == 0, res["reason"]
    assert res["verdict"] == "pass"
    assert res["kernel_release"].startswith("6.1.") and res["package_version"]
    assert [t["text"] for t in res["trail"]] == [
        "Entering: myNetLink_init, protocol family = 30 ",
        "MyNetLink Init OK!",
        "Entering: myNetLink_recv_msg",
        "MyNetlink has received: Hello this is a msg from userspace",
        "exiting myNetLink module",
    ]
    seqs = [t["seq"] for t in res["trail"]]
    assert seqs == sorted(seqs) and len(set(seqs)) == 5
    assert {p["name"] for p in res["phases"]} == {"resolve", "root", "build", "vm"}
    assert res["build_warnings"] == []
    client = next(s for s in res["steps"] if s["name"] == "client")
    reply = json.loads(client["stdout"])
    assert reply["replies"][0]["payload"] == "Hello msg from kernel"
    assert reply["replies"][0]["type"] == 3
    console = (tmp_path / "debian-bookworm" / "console.log").read_text()
    assert "Linux version 6.1." in console
    # Booted through PVH (harness/kernel/pvh.py): the unpacked kernel, not the bzImage, so no
    # real-mode set-up code ran (it prints "Probing EDD").
    assert f"/boot/vmlinux-{res['kernel_release']} " in console.splitlines()[0]
    assert "Probing EDD" not in console
    assert (tmp_path / "junit.xml").is_file()


def test_sigterm_during_boot_stops_the_run_and_leaves_no_qemu(own_tmp):
    """SIGTERM while QEMU boots: verdict interrupted within seconds, nothing left running."""
    import signal
    import time

    tmp_path = own_tmp
    proc = subprocess.Popen([sys.executable, "-m", "harness", "run", "--results", str(tmp_path)], cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert proc.stdout is not None
    for line in proc.stdout:
        if line.startswith("==> vm"):
            break
    wait_for_qemu(tmp_path)
    t0 = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    rest = proc.communicate(timeout=60)[0]
    assert time.monotonic() - t0 < 15
    assert proc.returncode == 130, rest
    res = json.loads((tmp_path / "debian-bookworm" / "result.json").read_text())
    assert res["verdict"] == "interrupted"
    assert "SIGTERM" in res["reason"]


def test_a_sigkilled_harness_leaves_no_qemu_behind(own_tmp):
    """SIGKILL leaves the harness no time to clean up: its guard ends QEMU (harness/guard.py)."""
    proc = subprocess.Popen([sys.executable, "-m", "harness", "run", "--results", str(own_tmp / "r")], cwd=REPO,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    pids = wait_for_qemu(own_tmp)
    proc.kill()
    proc.wait()
    assert wait_no_qemu(own_tmp, seconds=15) == set(), f"QEMU {pids} outlived a SIGKILLed harness"

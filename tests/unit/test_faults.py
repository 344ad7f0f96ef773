"""Infrastructure faults provoked for real that boot no VM and make no root: each must end the run
with exit 3 (infra), name what is missing or wrong, and leave no root behind.

The tests that must get past the resolve phase need the network (deb.debian.org); they are skipped,
saying so, when it cannot be reached. They share one private apt index, downloaded once.
"""

import json
import os
import shutil
import socket
import time
from pathlib import Path

import pytest

from harness import cli
from harness.kernel import apt

from conftest import REPO


def harness(argv, capsys):
    """``harness ARGV`` in this process: (exit code, wall seconds, harness's stderr)."""
    t0 = time.monotonic()
    code = cli.main(argv)
    secs = time.monotonic() - t0
    return code, secs, capsys.readouterr().err


def result(results: Path, kernel: str = "debian-bookworm") -> dict:
    return json.loads((results / kernel / "result.json").read_text())


def no_root_dirs(cache: Path) -> bool:
    roots = cache / "roots"
    return not roots.exists() or not [p for p in roots.iterdir() if p.is_dir()]


@pytest.fixture(scope="module")
def online_cache(tmp_path_factory) -> Path:
    """A private cache for tests that resolve against deb.debian.org (skipped when it is unreachable)."""
    host = apt.DEFAULT_MIRROR.split("/")[2]
    try:
        socket.create_connection((host, 80), timeout=5).close()
    except OSError as e:
        pytest.skip(f"needs the Debian mirror {host}, unreachable here: {e}")
    return tmp_path_factory.mktemp("online-cache")


def test_missing_mmdebstrap_exits_3_naming_the_package(online_cache, tmp_path, monkeypatch, capsys):
    # PATH: every tool of the real PATH (QEMU, apt, bwrap, gpgv...) except mmdebstrap.
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for d in os.environ["PATH"].split(os.pathsep):
        if not os.path.isdir(d):
            continue
        for name in sorted(os.listdir(d)):
            src, dst = Path(d) / name, bin_dir / name
            if name == "mmdebstrap" or dst.is_symlink() or not (src.is_file() and os.access(src, os.X_OK)):
                continue
            dst.symlink_to(src)
    for tool in ("qemu-system-x86_64", "apt-get", "apt-cache", "bwrap", "gpgv"):
        assert shutil.which(tool, path=str(bin_dir)), f"{tool} should be on the test's PATH"
    assert shutil.which("mmdebstrap", path=str(bin_dir)) is None
    monkeypatch.setenv("PATH", str(bin_dir))
    monkeypatch.setenv("HARNESS_CACHE", str(online_cache))
    results = tmp_path / "r"
    code, secs, err = harness(["run", "--project", str(REPO), "--results", str(results)], capsys)
    res = result(results)
    assert code == 3, err
    assert res["verdict"] == "infra"
    assert "mmdebstrap not found" in res["reason"] and "install the package 'mmdebstrap'" in res["reason"]
    assert "mmdebstrap not found" in err and "'mmdebstrap'" in err
    assert [p["name"] for p in res["phases"]] == ["resolve", "root"]
    assert res["phases"][0]["ok"] and not res["phases"][1]["ok"]
    assert no_root_dirs(online_cache)


def test_unreachable_mirror_exits_3_naming_the_mirror_in_bounded_time(tmp_path, monkeypatch, capsys):
    mirror = "http://127.0.0.1:9/debian"  # discard port: nothing listens, connections are refused
    cache = tmp_path / "cache"
    monkeypatch.setenv("HARNESS_MIRROR", mirror)
    monkeypatch.setenv("HARNESS_CACHE", str(cache))
    results = tmp_path / "r"
    code, secs, err = harness(["run", "--project", str(REPO), "--results", str(results)], capsys)
    res = result(results)
    assert code == 3, err
    assert res["verdict"] == "infra"
    assert mirror in res["reason"] and mirror in err
    assert "mirror" in res["reason"]  # the hint says what to check
    assert [p["name"] for p in res["phases"]] == ["resolve"] and not res["phases"][0]["ok"]
    assert secs < 90, f"{secs:.0f}s to give up on a refused mirror"
    assert no_root_dirs(cache)


def test_unknown_kernel_version_exits_3_naming_the_package(online_cache, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("HARNESS_CACHE", str(online_cache))
    results = tmp_path / "r"
    code, secs, err = harness(["run", "--kernel", "debian:bookworm@6.1.0-1", "--project", str(REPO),
                               "--results", str(results)], capsys)
    res = result(results, "debian-bookworm-6.1.0-1")
    assert code == 3, err
    assert res["verdict"] == "infra"
    assert "linux-image-6.1.0-1-amd64" in res["reason"] and "linux-image-6.1.0-1-amd64" in err
    assert [p["name"] for p in res["phases"]] == ["resolve"] and not res["phases"][0]["ok"]
    assert no_root_dirs(online_cache)


def test_a_second_run_waits_for_another_runs_apt_index_update(online_cache, monkeypatch, capsys):
    """Two runs on one cache (row 11) share its apt index. While one updates it, the other must wait,
    not fail: here another process holds the index's update lock for 8 s, as a slow first download
    by another harness run would."""
    import subprocess
    import sys

    lock = online_cache / "apt" / "bookworm" / "update.lock"
    lock.parent.mkdir(parents=True, exist_ok=True)
    holder = subprocess.Popen([sys.executable, "-c", (
        "import fcntl, sys, time\n"
        f"f = open({str(lock)!r}, 'w'); fcntl.flock(f, fcntl.LOCK_EX)\n"
        "print('locked', flush=True); time.sleep(8)\n")], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        monkeypatch.setenv("HARNESS_CACHE", str(online_cache))
        code, secs, err = harness(["kernels", "resolve"], capsys)
    finally:
        holder.kill()
        holder.wait()
    assert "Could not get lock" not in err
    assert code == 0, err
    assert secs >= 7, "the run must have waited for the other update"

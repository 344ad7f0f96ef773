"""Faults provoked for real: each test makes one thing go wrong and checks the exit code, the verdict
and the evidence in result.json, and (through ``own_tmp``) that no QEMU outlives the run.

Most tests use the default cache's bookworm root (made by the first run on the machine). The root
tests (two runs at once, damaged roots) share one private cache, so that a fresh root is made once,
then damaged and remade once; the full-disk test makes its cache on a small tmpfs.
"""

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from harness import cli, contract
from harness.kernel import roots as roots_mod
from harness.kernel.spec import parse_spec
from harness.model import ResolvedKernel

from conftest import REPO, qemu_pids, wait_for_qemu

pytestmark = pytest.mark.vm

FIXTURES = REPO / "tests" / "fixtures"
KDIR = "debian-bookworm"  # results sub-directory of the default kernel


def harness(argv, capsys):
    """``harness ARGV`` in this process: (exit code, wall seconds, harness's stderr)."""
    t0 = time.monotonic()
    code = cli.main(argv)
    secs = time.monotonic() - t0
    err = capsys.readouterr().err
    sys.stderr.write(err)  # shown by pytest when the test fails
    return code, secs, err


def result(results: Path) -> dict:
    return json.loads((results / KDIR / "result.json").read_text())


def phase(res: dict, name: str) -> dict:
    return next(p for p in res["phases"] if p["name"] == name)


def step(res: dict, name: str) -> dict:
    return next(s for s in res["steps"] if s["name"] == name)


def assert_no_qemu(tmp_path: Path) -> None:
    left = qemu_pids(str(tmp_path))
    assert not left, f"QEMU still running right after the run returned: {left}"


# -- the module misbehaves -------------------------------------------------------------------------


def test_module_that_does_not_compile_fails_with_gccs_errors_and_boots_nothing(own_tmp, capsys):
    results = own_tmp / "r"
    code, secs, err = harness(["run", "--project", str(FIXTURES / "does_not_compile"),
                               "--results", str(results), "--timeout", "300"], capsys)
    res = result(results)
    assert code == 1, res["reason"]
    assert res["verdict"] == "fail"
    for words in ("error: invalid initializer", "'no_such_variable' undeclared"):
        assert words in res["reason"]
        assert words in res["build_log"]
        assert words in (results / KDIR / "build.log").read_text()
    assert res["reason"].startswith("the module does not build")
    assert [p["name"] for p in res["phases"]] == ["resolve", "root", "build"]
    assert not phase(res, "build")["ok"]
    assert not (results / KDIR / "console.log").exists(), "no VM may boot for a module that does not build"
    assert res["steps"] == [] and res["kmsg"] == []
    assert "verdict: FAIL" in err
    assert secs < 120


def test_init_that_returns_an_error_fails_with_insmods_error_and_the_modules_record(own_tmp, capsys):
    results = own_tmp / "r"
    code, secs, _ = harness(["run", "--project", str(FIXTURES / "init_fails"),
                             "--results", str(results), "--timeout", "300"], capsys)
    res = result(results)
    assert code == 1, res["reason"]
    assert res["verdict"] == "fail"
    assert "'insmod'" in res["reason"] and "No such device" in res["reason"]
    assert "could not insert module" in res["reason"]
    insmod = step(res, "insmod")
    assert insmod["returncode"] == 1 and "No such device" in insmod["stderr"]
    assert step(res, "never-runs")["skipped"], "steps after a failed insmod must be skipped"
    mine = [r for r in res["kmsg"] if r["text"] == "init_fails: no device here, refusing to load (-ENODEV)"]
    assert len(mine) == 1 and mine[0]["level"] == 3  # pr_err
    assert insmod["kmsg_seq_before"] < mine[0]["seq"] <= insmod["kmsg_seq_after"]
    assert res["splats"] == []
    assert_no_qemu(own_tmp)


def test_blog_unsafe_reply_to_pid_0_panics_and_is_a_crash_with_the_panic_in_the_reason(own_tmp, capsys):
    results = own_tmp / "r"
    timeout = 300
    code, secs, _ = harness(["run", "--project", str(FIXTURES / "netlink" / "blog_unsafe.toml"),
                             "--results", str(results), "--timeout", str(timeout)], capsys)
    assert_no_qemu(own_tmp)
    res = result(results)
    assert code == 4, res["reason"]
    assert res["verdict"] == "crash"
    assert "stack guard page" in res["reason"]
    assert "Kernel panic - not syncing" in res["reason"]
    # From the record it streamed when that got out before the panic, else from the console's run lines.
    assert res["splats"][0]["rule"] == "bug"
    # Named in the module's source: the line of the reply to pid 0 that recurses (blog_unsafe.c),
    # decoded with the .ko that was loaded; the frames are data in result.json.
    # Frames the kernel marks "?" are stale words on the stack: one at the very end of a function
    # (offset == size, e.g. "? myNetLink_exit+0x18/0x18") has no line, as in scripts/faddr2line.
    frames = res["splats"][0]["module_frames"]
    reliable = [f for f in frames if not f.startswith("? ")]
    assert reliable and all("[blog_unsafe] at " in f and "blog_unsafe.c:" in f for f in reliable), frames
    assert res["splats"][0]["source"]["file"] == "blog_unsafe.c"
    assert phase(res, "vm")["seconds"] < timeout, "the dead guest must end the run, not the timeout"
    # The guest died before its runner finished: the report is the one rebuilt from what it streamed.
    guest = json.loads((results / KDIR / "guest-result.json").read_text())
    assert guest["complete"] is False and guest["marker_seq"] is not None
    assert res["vm"]["running"] == "hello-pid0" and res["vm"]["exit_status"] != 0
    assert res["read_first"] == "console.log"


def test_warn_on_load_is_a_crash_with_the_warning_and_the_guest_lives_on(own_tmp, capsys):
    results = own_tmp / "r"
    code, secs, _ = harness(["run", "--project", str(FIXTURES / "warn_on_load"),
                             "--results", str(results), "--timeout", "300"], capsys)
    res = result(results)
    assert code == 4, res["reason"]
    assert res["verdict"] == "crash"
    warnings = [s for s in res["splats"] if s["rule"] == "warning"]
    assert warnings and warnings[0]["text"].startswith("WARNING: ")
    assert "warn_on_load" in warnings[0]["text"]
    assert warnings[0]["text"] in res["reason"]
    # Decoded with the .ko that was loaded (kept in modules/): the module's frame is its WARN_ON line.
    assert (results / KDIR / "modules" / "warn_on_load.ko").is_file()
    assert warnings[0]["module_frames"][0].endswith("warn_on_load.c:16")
    assert warnings[0]["source"]["file"] == "warn_on_load.c" and warnings[0]["source"]["line"] == 16
    assert any(f["module"] == "warn_on_load" and f["line"] == 16 for f in warnings[0]["trace"])
    # The guest lived on: the later steps ran and worked.
    alive = step(res, "still-alive")
    assert alive["returncode"] == 0 and "warn_on_load" in alive["stdout"]
    assert step(res, "rmmod")["returncode"] == 0
    assert any(r["text"] == "warn_on_load: exit" for r in res["kmsg"])
    assert_no_qemu(own_tmp)


def test_splat_words_in_payloads_and_in_userspace_records_never_fail_a_run(own_tmp, capsys):
    """Forged crashes: the module logs payloads holding splats' words, userspace writes a "BUG:" line
    into /dev/kmsg. The console shows them as lines of their own; the verdict stays pass."""
    results = own_tmp / "r"
    code, _, _ = harness(["run", "--project", str(FIXTURES / "netlink" / "forged_bug.toml"),
                          "--results", str(results), "--timeout", "300"], capsys)
    res = result(results)
    assert code == 0, res["reason"]
    assert res["verdict"] == "pass" and res["splats"] == [] and res["boot_splats"] == []
    forged = [r for r in res["kmsg"] if r["text"].startswith("BUG: kernel NULL pointer dereference")]
    assert len(forged) == 1 and forged[0]["facility"] == 1  # LOG_USER: written by userspace
    assert any("Oops: 0002" in t["text"] for t in res["trail"])
    assert "BUG: kernel NULL pointer dereference" in (results / KDIR / "console.log").read_text()
    assert_no_qemu(own_tmp)


# -- something never ends --------------------------------------------------------------------------


def test_guest_step_that_never_ends_is_stopped_by_its_own_timeout(own_tmp, capsys):
    results = own_tmp / "r"
    code, secs, _ = harness(["run", "--project", str(FIXTURES / "hang"),
                             "--results", str(results), "--timeout", "300"], capsys)
    assert_no_qemu(own_tmp)
    res = result(results)
    assert code == 5, res["reason"]
    assert res["verdict"] == "timeout"
    assert "'hang'" in res["reason"]
    hang = step(res, "hang")
    assert hang["timed_out"] and 5 <= hang["seconds"] < 15
    assert step(res, "rmmod")["returncode"] == 0, "the guest goes on after a step times out"
    guest = json.loads((results / KDIR / "guest-result.json").read_text())
    boot = guest["uptime_at_start"]  # kernel start to the guest runner's start
    vm = phase(res, "vm")["seconds"]
    assert vm - boot < 60, f"vm phase {vm:.0f}s for a {boot:.0f}s boot and a 5 s step timeout"


@pytest.fixture(scope="module")
def vm_timeout_run(tmp_path_factory):
    """One run of the `hang_vm_timeout` fixture with `--timeout 120`, shared by the two tests below
    (one boot for both). Like ``own_tmp``: run directories under its own tmp dir, QEMU checked.
    The limit must leave the boot time to reach the hanging step: with 60 s, a 1-vCPU guest beside
    root builds was still in insmod when it struck (a cold-cache make test, 2026-12-02)."""
    tmp = tmp_path_factory.mktemp("vm-timeout")
    limit = 120
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(tempfile, "tempdir", str(tmp))
        mp.setenv("TMPDIR", str(tmp))
        t0 = time.monotonic()
        code = cli.main(["run", "--project", str(FIXTURES / "hang_vm_timeout"),
                         "--results", str(tmp / "r"), "--timeout", str(limit)])
        secs = time.monotonic() - t0
        left = qemu_pids(str(tmp))
    return SimpleNamespace(tmp=tmp, limit=limit, code=code, secs=secs, left=left, out=tmp / "r" / KDIR)


def test_guest_step_that_never_ends_is_stopped_by_the_host_side_vm_timeout(vm_timeout_run):
    run = vm_timeout_run
    assert not run.left, f"QEMU still running right after the run returned: {run.left}"
    res = json.loads((run.out / "result.json").read_text())
    assert run.code == 5, res["reason"]
    assert res["verdict"] == "timeout"
    assert res["vm"]["running"] == "hang", f"the guest must have reached the hanging step (boot under {run.limit} s)"
    assert "guest step 'hang' was still running" in res["reason"]
    vm = phase(res, "vm")
    assert not vm["ok"] and f"time limit ({run.limit}s)" in vm["detail"]
    assert run.limit <= vm["seconds"] < run.limit + 10, vm
    assert run.secs < sum(p["seconds"] for p in res["phases"]) + 10
    assert json.loads((run.out / "guest-result.json").read_text())["complete"] is False
    assert not qemu_pids(str(run.tmp))


def test_exec_log_after_a_vm_timeout_shows_the_step_that_was_running(vm_timeout_run):
    # tests/data/README.md: exec.log "shows which step was running when a guest died".
    events = [contract.decode_event(line) for line in (vm_timeout_run.out / "exec.log").read_text().splitlines()]
    started = [e["name"] for e in events if e and e["event"] == contract.STEP_START]
    ended = [e["step"]["name"] for e in events if e and e["event"] == contract.STEP_END]
    assert started[:1] == ["insmod"] and started[-1] == "hang" and "hang" not in ended


def test_sigint_during_boot_stops_the_run_and_leaves_no_qemu(own_tmp):
    results = own_tmp / "r"
    proc = subprocess.Popen([sys.executable, "-m", "harness", "run", "--results", str(results)], cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            # A background shell may have left SIGINT ignored; a terminal's Ctrl-C finds it
                            # at its default, which Python turns into KeyboardInterrupt.
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    assert proc.stdout is not None
    seen = []
    for line in proc.stdout:
        seen.append(line)
        if line.startswith("==> vm"):
            break
    else:
        pytest.fail("the run never reached the vm phase:\n" + "".join(seen))
    wait_for_qemu(own_tmp)
    t0 = time.monotonic()
    proc.send_signal(signal.SIGINT)
    rest = proc.communicate(timeout=60)[0]
    took = time.monotonic() - t0
    assert_no_qemu(own_tmp)
    assert proc.returncode == 130, rest
    assert took < 15, f"{took:.1f}s from SIGINT to exit"
    res = result(results)
    assert res["verdict"] == "interrupted" and res["exit_code"] == 130
    assert "SIGINT" in res["reason"]
    vm = phase(res, "vm")
    assert not vm["ok"]
    assert "verdict: INTERRUPTED" in rest


# -- kernel roots: made once under a lock, checked before use, never left half-made ----------------


@pytest.fixture(scope="module")
def shared_cache(tmp_path_factory) -> Path:
    """One private cache for the root tests below: its root is made once (by the first test that
    needs it) and then damaged and remade."""
    return tmp_path_factory.mktemp("shared-cache")


def _roots(cache: Path) -> list[Path]:
    d = cache / "roots"
    return sorted(p for p in d.iterdir() if p.is_dir()) if d.is_dir() else []


def _bookworm_root(cache: Path, capsys, monkeypatch) -> tuple[Path, dict]:
    """The shared cache's bookworm root and its manifest (made now when missing)."""
    monkeypatch.setenv("HARNESS_CACHE", str(cache))
    code = cli.main(["kernels", "fetch"])
    capsys.readouterr()
    assert code == 0
    roots = [p for p in _roots(cache) if p.name.startswith("debian-bookworm-")]
    assert len(roots) == 1, roots
    return roots[0], json.loads((roots[0] / roots_mod.MANIFEST).read_text())


def _resolved(manifest: dict) -> ResolvedKernel:
    """The kernel a root's manifest was made for, as the root checks want it."""
    release = manifest["release"]
    return ResolvedKernel(spec=parse_spec(manifest["kernel"]), release=release,
                          package_version=manifest["package_version"],
                          packages=(f"linux-image-{release}", f"linux-headers-{release}"),
                          compiler=next(p for p in manifest["packages"] if re.fullmatch(r"gcc-\d+", p)))


def test_two_runs_at_once_on_a_fresh_cache_make_one_root_and_both_pass(own_tmp, shared_cache):
    cache = shared_cache if not _roots(shared_cache) else own_tmp / "cache"  # must be fresh
    # mmdebstrap through a shim that counts its runs
    shim = own_tmp / "shim"
    shim.mkdir()
    count = own_tmp / "mmdebstrap-runs"
    real = shutil.which("mmdebstrap")
    assert real, "mmdebstrap is needed on the host"
    (shim / "mmdebstrap").write_text(f'#!/bin/sh\necho "$$" >> {count}\nexec {real} "$@"\n')
    (shim / "mmdebstrap").chmod(0o755)
    env = dict(os.environ, HARNESS_CACHE=str(cache), PATH=f"{shim}{os.pathsep}{os.environ['PATH']}")
    runs = []
    t0 = time.monotonic()
    for i in (1, 2):
        log = open(own_tmp / f"run{i}.log", "w")
        p = subprocess.Popen([sys.executable, "-m", "harness", "run", "--project", str(REPO),
                              "--results", str(own_tmp / f"r{i}")], cwd=REPO, env=env,
                             stdout=log, stderr=subprocess.STDOUT)
        runs.append((p, log))
    codes = []
    for p, log in runs:
        try:
            codes.append(p.wait(timeout=1200))
        finally:
            log.close()
    took = time.monotonic() - t0
    outs = [(own_tmp / f"run{i}.log").read_text() for i in (1, 2)]
    assert codes == [0, 0], "\n\n".join(outs)
    assert len(count.read_text().splitlines()) == 1, "mmdebstrap must run once for two runs of one kernel"
    roots = _roots(cache)
    assert len(roots) == 1 and not roots[0].name.startswith("."), roots
    assert not list((cache / "roots").glob(".tmp-*"))
    for i in (1, 2):
        head = (own_tmp / f"r{i}" / KDIR / "console.log").read_text().splitlines()[0]
        assert f"--root {roots[0]} " in head, "both runs boot the one root"
    print(f"two runs at once: {took:.0f}s")


def test_truncated_kernel_image_in_the_cached_root_is_found_before_boot_and_remade(
        own_tmp, shared_cache, capsys, monkeypatch):
    root, manifest = _bookworm_root(shared_cache, capsys, monkeypatch)
    img = root / manifest["vmlinuz"]
    size = img.stat().st_size
    assert size == manifest["vmlinuz_size"]
    os.truncate(img, size // 2)
    results = own_tmp / "r"
    code, secs, err = harness(["run", "--project", str(REPO), "--results", str(results)], capsys)
    res = result(results)
    assert code == 0, res["reason"]
    assert "damaged" in err and f"has {size // 2} bytes, expected {size}" in err
    assert err.index("damaged") < err.index("==> vm"), "the damage must be found before boot"
    again = json.loads((root / roots_mod.MANIFEST).read_text())
    assert img.stat().st_size == size == again["vmlinuz_size"]
    assert again["vmlinuz_sha256"] == manifest["vmlinuz_sha256"]
    assert phase(res, "root")["ok"]
    assert [p.name for p in _roots(shared_cache)] == [root.name]


def test_missing_headers_makefile_in_the_cached_root_is_found(shared_cache, capsys, monkeypatch):
    """The check that sends a damaged root to be remade (the test above runs the remake for real,
    about 150 s of mmdebstrap; this one only needs the check to see a missing file)."""
    root, manifest = _bookworm_root(shared_cache, capsys, monkeypatch)
    makefile = root / f"usr/src/linux-headers-{manifest['release']}/Makefile"
    kernel = _resolved(manifest)
    assert roots_mod.check_root(root, kernel) is None
    aside = makefile.with_name("Makefile.aside")
    makefile.rename(aside)
    try:
        assert roots_mod.check_root(root, kernel) == (
            f"headers Makefile is missing (usr/src/linux-headers-{manifest['release']}/Makefile)")
    finally:
        aside.rename(makefile)
    assert roots_mod.check_root(root, kernel) is None


def test_full_disk_while_making_a_root_is_infra_with_a_hint_and_leaves_no_half_root(own_tmp, capsys, monkeypatch):
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root")
    small = own_tmp / "small"
    small.mkdir()
    # Room for the apt index (~130 MB) but not for a root (~1 GB).
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=300M", "tmpfs", str(small)], check=True)
    try:
        cache = small / "cache"
        monkeypatch.setenv("HARNESS_CACHE", str(cache))
        results = own_tmp / "r"
        code, secs, err = harness(["run", "--project", str(REPO), "--results", str(results)], capsys)
        res = result(results)
        assert code == 3, res["reason"]
        assert res["verdict"] == "infra"
        assert "mmdebstrap failed" in res["reason"]
        assert "disk holding the cache is full" in res["reason"]
        assert not phase(res, "root")["ok"]
        left = sorted(p.name for p in (cache / "roots").iterdir())
        assert all(name.endswith((".lock", ".log")) for name in left), left
        assert not [p for p in (cache / "roots").iterdir() if p.is_dir()]
    finally:
        subprocess.run(["umount", str(small)], check=False)

"""The verdicts a maintainer must be able to trust, on real guests (tests/fixtures/verdicts: one
module, a project per case). The forged-records class of the hostile suite is here too: userspace
writes into /dev/kmsg, a guest that dies or hangs after such text. Each asserts the exact verdict."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from harness import cli

from conftest import REPO, wait_for_qemu, wait_no_qemu

pytestmark = pytest.mark.vm

VERDICTS = REPO / "tests" / "fixtures" / "verdicts"


def run(results: Path, case: str, *more: str, project: Path = VERDICTS) -> tuple[int, dict]:
    code = cli.main(["run", "--project", str(project / f"{case}.toml"), "--results", str(results), *more])
    return code, json.loads((results / "debian-bookworm" / "result.json").read_text())


def test_a_kernel_complaint_fails_the_run_and_allowing_it_passes_and_lists_it(own_tmp):
    code, res = run(own_tmp / "a", "positive")
    assert (code, res["verdict"]) == (1, "fail"), res["reason"]
    assert res["reason"].startswith("the kernel complained about the module: seq ")
    assert "do_init_module: 'verdicts'->init suspiciously returned 240, it should follow 0/-E convention" in \
        res["reason"].splitlines()[0]
    assert [s["returncode"] for s in res["steps"]] == [0, 0]  # insmod and rmmod both "worked"
    code, res = run(own_tmp / "b", "positive_allowed")
    assert code == 0, res["reason"]
    allowed = {c["text"].split("\\x0a")[0]: c["allowed_by"] for c in res["complaints"]}
    assert allowed["do_init_module: 'verdicts'->init suspiciously returned 240, it should follow 0/-E convention"] \
        == "this fixture returns a positive value from init on purpose"


def test_forged_records_never_pass_for_the_module_nor_make_a_crash(own_tmp):
    code, res = run(own_tmp / "a", "forged")
    assert (code, res["verdict"]) == (1, "fail")
    assert res["reason"].splitlines()[1] == "expected record #1 <6> 'verdicts: loaded': missing (the trail ended)"
    forged = [r for r in res["kmsg"] if r["text"] in ("verdicts: loaded", "verdicts: unloaded")]
    assert [r["facility"] for r in forged] == [1, 1]
    # forged splat words, then the guest hangs past its limit: a timeout
    code, res = run(own_tmp / "b", "panic_hang", "--timeout", "90")
    assert (code, res["verdict"]) == (5, "timeout"), res["reason"]
    assert res["splats"] == [] and "forge-then-hang" in res["reason"]
    console = (own_tmp / "b" / "debian-bookworm" / "console.log").read_text()
    assert "] Kernel panic - not syncing: forged by a step" in console
    # forged splat words, then the guest dies (a power-off, no panic): the guest ended, no crash
    code, res = run(own_tmp / "c", "forged_then_dies")
    assert (code, res["verdict"]) == (3, "infra"), res["reason"]
    assert res["splats"] == [] and "forge-then-die" in res["reason"]


def test_a_maintainers_steps_get_env_cwd_a_work_directory_cc_and_end_with_their_process(own_tmp):
    t0 = time.monotonic()
    code, res = run(own_tmp, "guest_env")
    assert code == 0, res["reason"]
    steps = {s["name"]: s for s in res["steps"]}
    assert steps["compile-and-run"]["stdout"] == "hello from cc\n/tmp/harness-work\nfrom the step's env\n"
    assert steps["cwd"]["stdout"].splitlines()[0] == "/tmp"
    assert steps["daemon"]["stdout"] == "started a child\n" and steps["daemon"]["seconds"] < 30
    assert "kept its stdout and stderr open" in steps["daemon"]["note"]
    assert time.monotonic() - t0 < 600  # not the daemon's 600 s


def test_extra_guest_packages_come_from_the_kernels_suite(own_tmp):
    code, res = run(own_tmp, "packages")
    assert code == 0, res["reason"]
    assert next(s for s in res["steps"] if s["name"] == "jq")["stdout"] == "42\n"


def test_a_recorded_trail_passes_on_the_next_boot(own_tmp):
    """The module logs its task's pid and a kernel address: recorded on two boots, the trail holds
    patterns where they differ, and passes a third boot."""
    project = own_tmp / "verdicts"
    shutil.copytree(VERDICTS, project)
    code, res = run(own_tmp / "rec", "varying", "--record-trail", project=project)
    assert code == 0, res["reason"]
    trail = (project / "varying.trail.toml").read_text()
    assert "generalized:" in res["reason"] and "pattern = " in trail
    assert "[[expect]]\nlevel = 6\ntext = \"verdicts: loaded\"" in trail
    code, res = run(own_tmp / "check", "varying", project=project)
    assert code == 0, res["reason"]
    # re-recording over a trail edited by hand keeps the edit
    (project / "varying.trail.toml").write_text(trail + "\n# my note\n")
    code, res = run(own_tmp / "rec2", "varying", "--record-trail", project=project)
    assert code == 0, res["reason"]
    assert "kept as" in res["reason"] and "# my note" in (project / "varying.trail.toml.bak").read_text()


def test_an_interrupted_run_keeps_what_the_guest_sent(own_tmp):
    results = own_tmp / "r"
    p = subprocess.Popen([sys.executable, "-m", "harness", "run", "--project", str(VERDICTS / "interrupted.toml"),
                          "--results", str(results)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                         env={**os.environ, "TMPDIR": str(own_tmp)})
    wait_for_qemu(own_tmp, 120)
    deadline = time.monotonic() + 300
    seen = ""
    assert p.stdout is not None
    while "guest step long" not in seen and time.monotonic() < deadline:
        seen += p.stdout.readline()
    time.sleep(2)
    p.send_signal(signal.SIGINT)
    out, _ = p.communicate(timeout=120)
    assert p.returncode == 130, seen + out
    res = json.loads((results / "debian-bookworm" / "result.json").read_text())
    assert res["verdict"] == "interrupted"
    names = [s["name"] for s in res["steps"]]
    assert names[:2] == ["insmod", "first"] and res["steps"][1]["stdout"] == "first done\n"
    assert any(r["text"] == "verdicts: loaded" for r in res["kmsg"])
    assert (results / "debian-bookworm" / "exec.log").stat().st_size > 0
    assert not wait_no_qemu(own_tmp)

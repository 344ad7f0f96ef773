"""arm64 guests on this x86_64 host: bookworm's arm64 kernel under qemu-system-aarch64 (TCG),
its root made and its module built through qemu-user (binfmt_misc; `make setup` registers it).
The first run makes the root (about 10 minutes here); later ones reuse it."""

import json
import xml.etree.ElementTree as ET

import pytest

from harness import cli

from conftest import REPO, foreign_root_or_skip

pytestmark = [pytest.mark.vm, pytest.mark.arm64]
pytest_plugins = ["pytester"]

RESULTS_ID = "debian-bookworm-arm64"
TRAIL = ["Entering: myNetLink_init, protocol family = 30 ", "MyNetLink Init OK!", "Entering: myNetLink_recv_msg",
         "MyNetlink has received: Hello this is a msg from userspace", "exiting myNetLink module"]


@pytest.fixture(autouse=True, scope="module")
def bookworm_arm64_root():
    return foreign_root_or_skip("debian:bookworm:arm64")


def run(results, *args) -> tuple[int, dict]:
    code = cli.main(["run", "--arch", "arm64", "--results", str(results), "--timeout", "900", *args])
    return code, json.loads((results / RESULTS_ID / "result.json").read_text())


def test_the_module_passes_on_bookworms_arm64_kernel_over_both_transports(own_tmp, monkeypatch):
    monkeypatch.chdir(REPO)
    code, res = run(own_tmp / "exec")
    assert code == 0, res["reason"]
    assert res["kernel"] == "debian:bookworm:arm64" and res["kernel_release"].endswith("-arm64")
    assert [t["text"] for t in res["trail"]] == TRAIL
    assert res["build_warnings"] == [], "W=1 stays clean on arm64"
    client = json.loads(next(s for s in res["steps"] if s["name"] == "client")["stdout"])
    assert client["replies"][0]["payload"] == "Hello msg from kernel"
    console = (own_tmp / "exec" / RESULTS_ID / "console.log").read_text()
    assert "Machine model: linux,dummy-virt" in console and "Linux version 6.1." in console
    # the module that was loaded is an arm64 object, built in the arm64 root
    ko = own_tmp / "exec" / RESULTS_ID / "modules" / "netlink_kernel.ko"
    assert ko.read_bytes()[18:20] == (183).to_bytes(2, "little")  # e_machine EM_AARCH64
    junit = ET.parse(own_tmp / "exec" / "junit.xml").getroot()
    assert any("arm64" in (s.get("name") or "") for s in junit.iter("testsuite"))
    code, ssh = run(own_tmp / "ssh", "--transport", "ssh")
    assert code == 0, ssh["reason"]
    assert ssh["transport"] == "ssh" and [t["text"] for t in ssh["trail"]] == TRAIL


PLUGIN_TESTS = '''
import json


def test_the_guest_is_arm64_and_the_module_answers(module_loaded, guest_run, kmsg):
    status, out, err = guest_run("uname -m")
    assert status == 0 and out.strip() == "aarch64", err
    status, out, err = guest_run("python3 /project/userspace/netlink_client.py --json -n", timeout=300)
    assert status == 0, err
    assert json.loads(out)["replies"][0]["payload"] == "Hello msg from kernel"
    kmsg.expect("MyNetlink has received: Hello this is a msg from userspace", level=6, count=1)
'''


def test_the_pytest_plugin_runs_tests_in_an_arm64_guest(pytester, tmp_path, host_cache):
    pytester.makepyfile(PLUGIN_TESTS)
    r = pytester.runpytest_subprocess("-v", "-p", "no:cacheprovider", "--harness-kernel=debian:bookworm:arm64",
                                      f"--harness-project={REPO}", f"--harness-results={tmp_path / 'r'}",
                                      timeout=1500)
    r.assert_outcomes(passed=1)
    assert (tmp_path / "r" / RESULTS_ID).is_dir()


def test_the_hostile_suite_passes_on_arm64(own_tmp):
    from test_hostile_vm import check_hostile_run

    res = check_hostile_run(own_tmp, "debian:bookworm:arm64", timeout=1500)
    assert res["kernel_release"].endswith("-arm64")

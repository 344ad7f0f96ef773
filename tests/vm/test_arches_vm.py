"""Guests of other architectures on this x86_64 host (harness/arches.py), each under its own
qemu-system (TCG), its root made and its module built through qemu-user (binfmt_misc; `make setup`
registers it). The first run of a kernel makes its root (10-25 minutes here); later ones reuse it."""

import json
import xml.etree.ElementTree as ET
from dataclasses import dataclass

import pytest

from harness import cli

from conftest import REPO, foreign_root_or_skip

pytestmark = [pytest.mark.vm, pytest.mark.arches]
pytest_plugins = ["pytester"]

TRAIL = ["Entering: myNetLink_init, protocol family = 30 ", "MyNetLink Init OK!", "Entering: myNetLink_recv_msg",
         "MyNetlink has received: Hello this is a msg from userspace", "exiting myNetLink module"]


@dataclass(frozen=True)
class Guest:
    """What a guest of one architecture shows: what the tests expect of it, written out."""

    spec: str
    uname: str  # uname -m in the guest
    e_machine: int  # of the module the guest loaded (include/uapi/linux/elf-em.h)
    model: str  # the device tree's model, as the kernel prints it (drivers/of/fdt.c)
    version: str  # the start of "Linux version ..."

    @property
    def arch(self) -> str:
        return self.spec.rsplit(":", 1)[1]

    @property
    def results_id(self) -> str:
        return self.spec.replace(":", "-")


GUESTS = {g.arch: g for g in (
    Guest("debian:bookworm:arm64", "aarch64", 183, "Machine model: linux,dummy-virt", "Linux version 6.1."),
    Guest("debian:trixie:riscv64", "riscv64", 243, "Machine model: riscv-virtio,qemu", "Linux version 6.12."),
)}


@pytest.fixture(params=sorted(GUESTS))
def guest(request) -> Guest:
    g = GUESTS[request.param]
    foreign_root_or_skip(g.spec)
    return g


def run(results, g: Guest, *args) -> tuple[int, dict]:
    """`harness run --arch ARCH --kernel SPEC` with the spec written without the architecture."""
    kernel = g.spec.rsplit(":", 1)[0]
    code = cli.main(["run", "--arch", g.arch, "--kernel", kernel, "--results", str(results), "--timeout", "900", *args])
    return code, json.loads((results / g.results_id / "result.json").read_text())


def test_the_module_passes_on_the_architectures_kernel_over_both_transports(guest, own_tmp, monkeypatch):
    monkeypatch.chdir(REPO)
    code, res = run(own_tmp / "exec", guest)
    assert code == 0, res["reason"]
    assert res["kernel"] == guest.spec and res["kernel_release"].endswith(f"-{guest.arch}")
    assert [t["text"] for t in res["trail"]] == TRAIL
    assert res["build_warnings"] == [], f"W=1 stays clean on {guest.arch}"
    client = json.loads(next(s for s in res["steps"] if s["name"] == "client")["stdout"])
    assert client["replies"][0]["payload"] == "Hello msg from kernel"
    console = (own_tmp / "exec" / guest.results_id / "console.log").read_text()
    assert guest.model in console and guest.version in console
    # the module that was loaded is an object of the guest's architecture, built in its root
    ko = own_tmp / "exec" / guest.results_id / "modules" / "netlink_kernel.ko"
    assert ko.read_bytes()[18:20] == guest.e_machine.to_bytes(2, "little")
    junit = ET.parse(own_tmp / "exec" / "junit.xml").getroot()
    assert any(guest.arch in (s.get("name") or "") for s in junit.iter("testsuite"))
    code, ssh = run(own_tmp / "ssh", guest, "--transport", "ssh")
    assert code == 0, ssh["reason"]
    assert ssh["transport"] == "ssh" and [t["text"] for t in ssh["trail"]] == TRAIL


PLUGIN_TESTS = '''
import json


def test_the_guest_is_UNAME_and_the_module_answers(module_loaded, guest_run, kmsg):
    status, out, err = guest_run("uname -m")
    assert status == 0 and out.strip() == "UNAME", err
    status, out, err = guest_run("python3 /project/userspace/netlink_client.py --json -n", timeout=300)
    assert status == 0, err
    assert json.loads(out)["replies"][0]["payload"] == "Hello msg from kernel"
    kmsg.expect("MyNetlink has received: Hello this is a msg from userspace", level=6, count=1)
'''


def test_the_pytest_plugin_runs_tests_in_an_arm64_guest(pytester, tmp_path, host_cache):
    g = GUESTS["arm64"]
    foreign_root_or_skip(g.spec)
    pytester.makepyfile(PLUGIN_TESTS.replace("UNAME", g.uname))
    r = pytester.runpytest_subprocess("-v", "-p", "no:cacheprovider", f"--harness-kernel={g.spec}",
                                      f"--harness-project={REPO}", f"--harness-results={tmp_path / 'r'}",
                                      timeout=1500)
    r.assert_outcomes(passed=1)
    assert (tmp_path / "r" / g.results_id).is_dir()


def test_the_hostile_suite_passes_on_arm64(own_tmp):
    from test_hostile_vm import check_hostile_run

    g = GUESTS["arm64"]
    res = check_hostile_run(own_tmp, foreign_root_or_skip(g.spec), timeout=1500)
    assert res["kernel_release"].endswith("-arm64")

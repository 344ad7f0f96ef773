"""Checks only a debug kernel can make: debian-src:trixie+debug (KASAN, kmemleak, lockdep, UBSAN; the same
kernel serves fault injection and fuzzing, vm/configs/debug.config).

The kernel is built from trixie's linux-source once (~15-25 min on 2 cores) and
cached. These tests run when it is cached, or always with HARNESS_SANITIZERS=1
(`make test-sanitizers` builds it first); otherwise they are skipped, saying how
to get them.
"""

import json

import pytest
from test_hostile_vm import check_hostile_run

from harness import cli
from harness.run import results_id

from conftest import REPO, built_kernel_or_skip

pytestmark = [pytest.mark.vm, pytest.mark.sanitizer]

SPEC = "debian-src:trixie+debug"
FIXTURES = REPO / "tests" / "fixtures"


@pytest.fixture(scope="module")
def kasan():
    """The sanitizer kernel's spec, when it is built (or HARNESS_SANITIZERS=1 asks for it)."""
    return built_kernel_or_skip(SPEC, "HARNESS_SANITIZERS", "test-sanitizers")


def run(results, *args: str) -> tuple[int, dict]:
    code = cli.main(["run", "--kernel", SPEC, "--results", str(results), *args])
    return code, json.loads((results / results_id(SPEC) / "result.json").read_text())


def texts(res: dict) -> list[str]:
    return [r["text"] for r in res["kmsg"]]


def test_hostile_input_leaves_no_sanitizer_report(kasan, own_tmp):
    """The module's trail and the hostile suite on the sanitizer kernel: one boot (each costs
    minutes under TCG), so this test also checks that the kernel is the one it claims to be."""
    res = check_hostile_run(own_tmp, SPEC, timeout=1200)
    assert res["package_version"].startswith("linux-source-6.12 ")
    assert res["build_warnings"] == []
    boot = texts(res)
    # It really is the debug kernel: its sanitizers announced themselves at boot.
    assert any("KernelAddressSanitizer initialized" in t for t in boot), boot[:50]
    assert any("Kernel memory leak detector initialized" in t for t in boot)
    assert any("Lock dependency validator" in t for t in boot)
    # The parameter its .config called for (vng.config_params), and the kernel took it:
    # 4-level paging (max_arch_pfn is 2^34 with 4 levels, 2^40 with 5).
    assert res["kernel_params"][-1] == "no5lvl"
    assert "no5lvl" in next(t for t in boot if t.startswith("Kernel command line:")).split()
    assert any(t.endswith("max_arch_pfn = 0x400000000") for t in boot), [t for t in boot if "max_arch_pfn" in t]
    # Nowhere in the kernel log, boot included: a report while booting would have
    # turned lockdep off for the suite (and the run into an infra verdict).
    sanitizer = [t for t in texts(res) if t.startswith(("BUG: KASAN", "UBSAN:", "WARNING: possible"))]
    assert sanitizer == [] and res["boot_splats"] == []


def test_fifty_cycles_leak_nothing_kmemleak_can_see(kasan, own_tmp):
    code, res = run(own_tmp, "--project", str(REPO / "tests/hostile/leakcheck.toml"), "--timeout", "1200")
    # The kernel's own modules are the tree's, installed and mounted at /lib/modules.
    mods = next(s for s in res["steps"] if s["name"] == "kernel-modules")
    assert mods["returncode"] == 0 and mods["stdout"].startswith(res["kernel_release"] + " "), mods
    step = next(s for s in res["steps"] if s["name"] == "leakcheck")
    found = json.loads(step["stdout"].strip().splitlines()[-1])
    assert found["kmemleak"] is True, found
    assert found["cycles_ok"] == 50, found["problems"]
    assert found["module_reports"] == [], found["module_reports"]
    assert code == 0, res["reason"]
    assert res["splats"] == []


def test_leak_in_a_module_is_found(kasan, own_tmp):
    """The check above can fail: a module that leaks on every load is reported by kmemleak."""
    code, res = run(own_tmp, "--project", str(REPO / "tests/hostile/leaky.toml"), "--timeout", "1200")
    step = next(s for s in res["steps"] if s["name"] == "leakcheck")
    found = json.loads(step["stdout"].strip().splitlines()[-1])
    assert found["kmemleak"] is True, found
    assert len(found["module_reports"]) >= 1, found
    assert "leaked by leaky" in found["module_reports"][0]  # the bytes its init wrote
    assert code == 1 and res["verdict"] == "fail"


def test_blogs_unsafe_module_is_caught_with_the_report(kasan, own_tmp):
    code, res = run(own_tmp, "--project", str(FIXTURES / "netlink/blog_unsafe.toml"), "--timeout", "1200")
    assert code == 4, res["reason"]
    assert res["verdict"] == "crash"
    # The report itself, quoted in result.json: KASAN's, or the kernel's own.
    assert any(w in res["reason"] for w in ("KASAN", "stack guard page", "Kernel panic", "Oops")), res["reason"]

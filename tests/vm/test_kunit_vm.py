"""KUnit and coverage on a kernel built with both: debian-src:trixie+kunit+gcov.

The kernel is built from trixie's linux-source once (~20 min on 2 cores) and cached.
These tests run when it is cached, or always with HARNESS_KUNIT=1 (`make test-kunit`
builds it first); otherwise they are skipped, saying how to get them (a reason
tests/allowed-skips.txt lists: CI does not build this kernel, see README).
"""

import json
import re
import xml.etree.ElementTree as ET

import pytest

from harness import cli
from harness.run import results_id

from conftest import REPO, built_kernel_or_skip

pytestmark = [pytest.mark.vm, pytest.mark.kunit]

SPEC = "debian-src:trixie+kunit+gcov"
FIXTURES = REPO / "tests" / "fixtures"


@pytest.fixture(scope="module")
def kernel():
    """The KUnit + gcov kernel's spec, when it is built (or HARNESS_KUNIT=1 asks for it)."""
    return built_kernel_or_skip(SPEC, "HARNESS_KUNIT", "test-kunit")


def run(results, *args: str) -> tuple[int, dict]:
    code = cli.main(["run", "--kernel", SPEC, "--results", str(results), "--timeout", "900", *args])
    return code, json.loads((results / results_id(SPEC) / "result.json").read_text())


def case_names(source) -> list[str]:
    """The cases a suite's source declares, in order (KUNIT_CASE(name), KUNIT_CASE_PARAM(name, gen))."""
    return re.findall(r"KUNIT_CASE(?:_PARAM)?\((\w+)", source.read_text())


def test_the_modules_kunit_suite_passes_case_by_case_with_its_coverage(kernel, own_tmp):
    results = own_tmp / "r"
    code, res = run(results)
    assert code == 0, res["reason"]
    assert res["verdict"] == "pass" and "trail records matched" in res["reason"]
    # Every case of kernel_src/netlink_kernel_test.c, each a result of its own.
    declared = case_names(REPO / "kernel_src" / "netlink_kernel_test.c")
    assert len(declared) >= 8
    assert [(c["suite"], c["name"], c["status"]) for c in res["kunit"]] == [
        ("netlink_kernel", name, "pass") for name in declared]
    kunit_step = next(s for s in res["steps"] if s["name"] == "kunit netlink_kernel_test")
    assert kunit_step["returncode"] == 0
    # ... and in JUnit, one testcase each.
    junit = ET.parse(results / "junit.xml").getroot()
    names = [c.get("name") for c in junit.iter("testcase") if c.get("classname", "").endswith(".kunit.netlink_kernel")]
    assert names == declared and not list(junit.iter("failure"))
    # Coverage of the module's own sources, by the client's hello, rmmod and the suite.
    cov = res["coverage"]
    assert "error" not in cov, cov
    files = {f["file"]: f for f in cov["files"]}
    assert set(files) == {"netlink_kernel.c", "netlink_msg.h"}, files  # not the test module, not .mod.c
    assert 50 < files["netlink_kernel.c"]["lines"]["percent"] < 100  # the error paths never ran
    assert files["netlink_msg.h"]["lines"]["covered"] > 0
    assert cov["lines"]["total"] == sum(f["lines"]["total"] for f in cov["files"])
    out = results / results_id(SPEC) / "coverage"
    assert "netlink_kernel.c" in (out / "index.html").read_text()
    cobertura = ET.parse(out / "coverage.xml").getroot()
    rate = cobertura.get("line-rate")
    assert cobertura.tag == "coverage" and rate is not None and float(rate) > 0.5


def test_a_failing_kunit_case_fails_the_run_with_its_diagnostics(kernel, own_tmp):
    results = own_tmp / "r"
    code, res = run(results, "--project", str(FIXTURES / "kunit_fails"))
    assert code == 1, res["reason"]
    assert res["verdict"] == "fail"
    by = {f"{c['suite']}.{c['name']}": c for c in res["kunit"]}
    assert by["kunit_target.adds_small_numbers"]["status"] == "pass"
    assert by["kunit_target.needs_hardware"]["status"] == "skip"
    assert by["kunit_target.needs_hardware"]["reason"] == "no such device in a VM"
    three = by["kunit_target.adds_three"]
    assert three["status"] == "fail"
    assert any("EXPECTATION FAILED at" in d and "kunit_target_test.c" in d for d in three["diagnostics"])
    assert any("2 + 3 from the module" in d for d in three["diagnostics"])
    # The parameterized case: each parameter a case, the third (4+3) failing.
    params = [(k, c["status"]) for k, c in by.items() if k.startswith("kunit_target.adds_each.")]
    assert params == [("kunit_target.adds_each.0+0", "pass"), ("kunit_target.adds_each.1+2", "pass"),
                      ("kunit_target.adds_each.4+3", "fail")]
    assert "KUnit: 2 of" in res["reason"] and "kunit_target.adds_three" in res["reason"]
    assert "EXPECTATION FAILED" in res["reason"]
    junit = ET.parse(results / "junit.xml").getroot()
    failed = {c.get("name") for c in junit.iter("testcase") if c.find("failure") is not None}
    assert {"adds_three", "4+3"} <= failed
    assert any(c.get("name") == "needs_hardware" and c.find("skipped") is not None for c in junit.iter("testcase"))


def test_a_crash_in_the_middle_of_a_suite_is_a_crash_with_what_ran(kernel, own_tmp):
    results = own_tmp / "r"
    code, res = run(results, "--project", str(FIXTURES / "kunit_fails" / "crash.toml"))
    assert code == 4, res["reason"]
    assert res["verdict"] == "crash"
    assert "NULL pointer dereference" in res["reason"] or "Oops" in res["reason"]
    by = {f"{c['suite']}.{c['name']}": c["status"] for c in res["kunit"]}
    assert by.get("kunit_crash.adds_before_the_crash") == "pass", res["kunit"]
    assert "kunit_crash.never_runs" not in by
    assert any(c["status"] == "crashed" for c in res["kunit"]), res["kunit"]

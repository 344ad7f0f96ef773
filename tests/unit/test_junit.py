import xml.etree.ElementTree as ET

from harness.model import Phase, RunResult, Verdict
from harness.verdict import junit


def result(verdict: Verdict, reason: str = "", **more) -> RunResult:
    return RunResult(kernel="debian:bookworm", verdict=verdict, reason=reason, harness_version="0.1.0",
                     started_at="2025-01-01T00:00:00+00:00", seconds=21.1, **more)


def child(el: ET.Element, path: str) -> ET.Element:
    """The first element at ``path`` under ``el`` (the test fails when there is none)."""
    found = el.find(path)
    assert found is not None, f"no {path} in <{el.tag}>"
    return found


def test_junit_failure_carries_the_reason():
    r = result(Verdict.FAIL, "printk trail mismatch:\nexpected #4", trail_diff="expected #4",
               phases=(Phase("resolve", 1.1), Phase("vm", 20.0, ok=False, detail="vng exit 1")))
    root = ET.fromstring(junit.junit_xml([r]))
    suite = child(root, "testsuite")
    assert suite.get("name") == "debian:bookworm" and suite.get("failures") == "2"
    verdict = next(c for c in suite.findall("testcase") if c.get("name") == "verdict")
    assert child(verdict, "failure").get("message") == "fail: printk trail mismatch:"
    assert child(verdict, "system-out").text == "expected #4"
    vm = next(c for c in suite.findall("testcase") if c.get("name") == "vm")
    assert child(vm, "failure").get("message") == "vng exit 1"


def test_junit_other_verdicts_are_errors_and_a_pass_is_neither():
    crash, ok = result(Verdict.CRASH, "BUG: kernel NULL pointer dereference"), result(Verdict.PASS)
    suites = ET.fromstring(junit.junit_xml([crash, ok])).findall("testsuite")
    error = child(suites[0], "testcase[@name='verdict']/error")
    assert error.get("type") == "crash" and error.text == "BUG: kernel NULL pointer dereference"
    assert suites[1].get("failures") == "0" and not list(child(suites[1], "testcase[@name='verdict']"))


def test_each_kunit_case_is_a_testcase_of_its_own():
    import json

    from harness.resultjson import load as result_from_json

    from conftest import DATA

    r = result_from_json(json.loads((DATA / "kunit_fails" / "result.json").read_text()))
    root = ET.fromstring(junit.junit_xml([r]).split("?>", 1)[1])
    suite = child(root, "testsuite")
    cases = [c for c in suite.iter("testcase") if ".kunit." in c.get("classname", "")]
    assert [(c.get("classname"), c.get("name")) for c in cases] == [
        (f"{r.kernel}.kunit.kunit_target", "adds_small_numbers"), (f"{r.kernel}.kunit.kunit_target", "adds_three"),
        (f"{r.kernel}.kunit.kunit_target", "needs_hardware"), (f"{r.kernel}.kunit.kunit_target.adds_each", "0+0"),
        (f"{r.kernel}.kunit.kunit_target.adds_each", "1+2"), (f"{r.kernel}.kunit.kunit_target.adds_each", "4+3")]
    failed = {c.get("name"): child(c, "failure") for c in cases if c.find("failure") is not None}
    assert set(failed) == {"adds_three", "4+3"}
    assert failed["adds_three"].get("message", "").startswith("fail: # adds_three: EXPECTATION FAILED at ")
    assert "kunit_target_add(2, 3) == 6 (0x6)" in (failed["adds_three"].text or "")
    skipped = [c for c in cases if c.find("skipped") is not None]
    assert [(c.get("name"), child(c, "skipped").get("message")) for c in skipped] == [
        ("needs_hardware", "no such device in a VM")]
    assert suite.get("tests") == str(len(r.phases) + 1 + 6)
    assert suite.get("failures") == str(1 + 2)  # the verdict, and the two cases

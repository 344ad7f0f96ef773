import xml.etree.ElementTree as ET

from harness.model import Phase, RunResult, Verdict
from harness.verdict import junit


def result(verdict: Verdict, reason: str = "", **more) -> RunResult:
    return RunResult(kernel="debian:bookworm", verdict=verdict, reason=reason, harness_version="0.1.0",
                     started_at="2025-01-01T00:00:00+00:00", seconds=21.1, **more)


def test_junit_failure_carries_the_reason():
    r = result(Verdict.FAIL, "printk trail mismatch:\nexpected #4", trail_diff="expected #4",
               phases=(Phase("resolve", 1.1), Phase("vm", 20.0, ok=False, detail="vng exit 1")))
    root = ET.fromstring(junit.junit_xml([r]))
    suite = root.find("testsuite")
    assert suite.get("name") == "debian:bookworm" and suite.get("failures") == "2"
    verdict = next(c for c in suite.findall("testcase") if c.get("name") == "verdict")
    assert verdict.find("failure").get("message") == "fail: printk trail mismatch:"
    assert verdict.find("system-out").text == "expected #4"
    vm = next(c for c in suite.findall("testcase") if c.get("name") == "vm")
    assert vm.find("failure").get("message") == "vng exit 1"


def test_junit_other_verdicts_are_errors_and_a_pass_is_neither():
    crash, ok = result(Verdict.CRASH, "BUG: kernel NULL pointer dereference"), result(Verdict.PASS)
    suites = ET.fromstring(junit.junit_xml([crash, ok])).findall("testsuite")
    error = suites[0].find("testcase[@name='verdict']/error")
    assert error.get("type") == "crash" and error.text == "BUG: kernel NULL pointer dereference"
    assert suites[1].get("failures") == "0" and not list(suites[1].find("testcase[@name='verdict']"))

"""JUnit XML for CI systems: one <testsuite> per kernel. Pure: results in, text out."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from typing import Sequence

from harness.model import RunResult, Verdict
from harness.verdict import output
from harness.verdict.report import splat_lines


def junit_xml(results: Sequence[RunResult]) -> str:
    """One <testsuite> per kernel; one <testcase> per phase, one for the verdict, and one per KUnit
    case (classname ``KERNEL.kunit.SUITE``)."""
    suites = ET.Element("testsuites", name="kmod-harness")
    for r in results:
        suite = ET.SubElement(suites, "testsuite", name=r.kernel, tests=str(len(r.phases) + 1),
                              time=f"{r.seconds:.3f}")
        failures = 0
        for p in r.phases:
            case = ET.SubElement(suite, "testcase", classname=r.kernel, name=p.name, time=f"{p.seconds:.3f}")
            if not p.ok:
                failures += 1
                ET.SubElement(case, "failure", message=p.detail[:500] or "failed").text = p.detail
        case = ET.SubElement(suite, "testcase", classname=r.kernel, name="verdict", time="0")
        if r.verdict is not Verdict.PASS:
            failures += 1
            tag = "failure" if r.verdict is Verdict.FAIL else "error"
            decoded = "\n".join(line for sp in r.splats for line in splat_lines(sp))
            flaky = "flaky, " if r.classification == "flaky" else ""  # some attempts passed (--repeat, harness report)
            first = r.reason.splitlines()[0] if r.reason else ""
            ET.SubElement(case, tag, message=f"{flaky}{r.verdict.value}: {first}",
                          type=r.verdict.value).text = r.reason + (f"\n\n{decoded}" if decoded else "")
        failed = output.failing_step(r.steps) if r.verdict is not Verdict.PASS else None
        if failed is not None:  # the failing step's own words, the line that failed first
            failing = output.first_failure(failed)
            ET.SubElement(case, "system-out").text = "\n".join(
                ([f"first failing line: {failing}"] if failing else []) + output.tail(failed.stdout))
            ET.SubElement(case, "system-err").text = "\n".join(output.tail(failed.stderr))
        elif r.trail_diff:
            ET.SubElement(case, "system-out").text = r.trail_diff
        failures += _kunit_cases(suite, r)
        suite.set("tests", str(len(r.phases) + 1 + len(r.kunit)))
        suite.set("failures", str(failures))
    ET.indent(suites)
    return ET.tostring(suites, encoding="unicode", xml_declaration=True) + "\n"


def _kunit_cases(suite: ET.Element, r: RunResult) -> int:
    failures = 0
    for c in r.kunit:
        case = ET.SubElement(suite, "testcase", classname=f"{r.kernel}.kunit.{c['suite']}", name=c["name"], time="0")
        diagnostics = "\n".join(c.get("diagnostics", []))
        if c["status"] in ("fail", "crashed"):
            failures += 1
            first = c.get("reason") or next(iter(c.get("diagnostics", [])), "") or c["status"]
            ET.SubElement(case, "failure", message=f"{c['status']}: {first}"[:500], type=c["status"]).text = diagnostics
        elif c["status"] == "skip":
            ET.SubElement(case, "skipped", message=c.get("reason") or "skipped")
        elif diagnostics:
            ET.SubElement(case, "system-out").text = diagnostics
    return failures

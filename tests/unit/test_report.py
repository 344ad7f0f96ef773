import json
import os
import xml.etree.ElementTree as ET

import pytest

from harness import report
from harness.model import KmsgRecord, Phase, RunResult, StepResult, Verdict

from conftest import DATA


def sample() -> RunResult:
    r = RunResult(kernel="debian:bookworm", verdict=Verdict.FAIL, reason="printk trail mismatch:\nexpected #4",
                  kernel_release="6.1.0-56-amd64", package_version="6.1.192-2", accel="tcg", build_in="host")
    r.phases = [Phase("resolve", 1.1), Phase("vm", 20.0, ok=False, detail="vng exit 1")]
    r.steps = [StepResult("insmod", ["insmod", "x.ko"], 0, "", "", 0.1, kmsg_seq_before=1, kmsg_seq_after=3)]
    r.kmsg = [KmsgRecord(level=6, facility=0, seq=2, usec=5, text="hi", caller="T1", fields=(("A", "b"),))]
    r.trail_diff = "expected #4"
    return r


def test_result_json_schema():
    d = json.loads(report.result_json(sample()))
    for key in ("schema", "kernel", "verdict", "exit_code", "reason", "kernel_release", "package_version", "accel",
                "build_in", "phases", "steps", "kmsg", "trail", "splats", "build_warnings", "console_log"):
        assert key in d, key
    assert d["verdict"] == "fail" and d["exit_code"] == 1 and d["schema"] == "kmod-harness/result/v1"
    assert d["kmsg"][0] == {"level": 6, "facility": 0, "seq": 2, "usec": 5, "text": "hi", "flags": "-",
                            "caller": "T1", "fields": {"A": "b"}}
    assert d["phases"][1] == {"name": "vm", "seconds": 20.0, "ok": False, "detail": "vng exit 1"}


def test_summary_lists_reports_from_the_boot_apart():
    r = sample()
    r.boot_splats = [{"rule": "bug", "reason": "BUG:", "seq": 150,
                      "text": "BUG: KASAN: wild-memory-access in do_raw_spin_lock+0x11d/0x270"}]
    lines = report.summary_lines(r)
    at = next(i for i, ln in enumerate(lines) if "while booting" in ln)
    assert "not the module's" in lines[at] and lines[at].endswith(": 1")
    assert lines[at + 1] == "    seq 150: BUG: KASAN: wild-memory-access in do_raw_spin_lock+0x11d/0x270"
    assert not any("while booting" in ln for ln in report.summary_lines(sample()))


def test_recorded_result_has_the_same_schema():
    rec = json.loads((DATA / "pass_bookworm" / "result.json").read_text())
    now = json.loads(report.result_json(sample()))
    assert set(now) <= set(rec) | {"skipped", "boot", "boot_splats", "kernel_params"}  # keys added since
    assert rec["verdict"] == "pass" and len(rec["trail"]) == 5


def test_junit_failure_carries_the_reason():
    root = ET.fromstring(report.junit_xml([sample()]))
    suite = root.find("testsuite")
    assert suite.get("name") == "debian:bookworm" and suite.get("failures") == "2"
    verdict = next(c for c in suite.findall("testcase") if c.get("name") == "verdict")
    assert verdict.find("failure").get("message") == "fail: printk trail mismatch:"
    assert verdict.find("system-out").text == "expected #4"


def test_write_atomic_leaves_nothing_half_written(tmp_path):
    target = tmp_path / "result.json"
    target.write_text("old")

    with pytest.raises(TypeError):
        report.write_atomic(target, 42)  # not text: fails while writing
    assert target.read_text() == "old"
    assert os.listdir(tmp_path) == ["result.json"]
    report.write_atomic(target, "new")
    assert target.read_text() == "new" and oct(target.stat().st_mode & 0o777) == "0o644"

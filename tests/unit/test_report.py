import dataclasses
import json
import os

import pytest

from harness.contract import StepReport
from harness.locks import write_atomic
from harness.model import KmsgRecord, Phase, RunResult, Verdict
from harness.outcomes import SplatReport
from harness.verdict import report

from conftest import DATA

# Fields every result.json holds since schema v2 (harness/run.py assemble fills them).
V2_FIELDS = {"harness_version", "transport", "marker_seq", "vm", "evidence", "read_first", "expected_trail",
             "kunit", "coverage", "complaints", "kmsg_dropped", "attempts", "classification", "machine"}
# v2 grows by addition only: kunit, coverage, complaints, kmsg_dropped, and the attempts of --repeat
# (with the machine that ran them) came later


def sample() -> RunResult:
    return RunResult(
        kernel="debian:bookworm", verdict=Verdict.FAIL, reason="printk trail mismatch:\nexpected #4",
        harness_version="0.1.0", started_at="2025-01-01T00:00:00+00:00", seconds=21.1,
        kernel_release="6.1.0-56-amd64", package_version="6.1.192-2", accel="tcg", build_in="host",
        phases=(Phase("resolve", 1.1), Phase("vm", 20.0, ok=False, detail="vng exit 1")),
        steps=(StepReport("insmod", ("insmod", "x.ko"), 0, "", "", 0.1, kmsg_seq_before=1, kmsg_seq_after=3),),
        kmsg=(KmsgRecord(level=6, facility=0, seq=2, usec=5, text="hi", caller="T1", fields=(("A", "b"),)),),
        trail_diff="expected #4",
    )


def test_result_json_schema():
    d = json.loads(report.result_json(sample()))
    for key in ("schema", "kernel", "verdict", "exit_code", "reason", "kernel_release", "package_version", "accel",
                "build_in", "phases", "steps", "kmsg", "trail", "splats", "build_warnings", *V2_FIELDS):
        assert key in d, key
    assert d["verdict"] == "fail" and d["exit_code"] == 1 and d["schema"] == "kmod-harness/result/v2"
    assert d["kmsg"][0] == {"level": 6, "facility": 0, "seq": 2, "usec": 5, "text": "hi", "flags": "-",
                            "caller": "T1", "fields": {"A": "b"}}
    assert d["phases"][1] == {"name": "vm", "seconds": 20.0, "ok": False, "detail": "vng exit 1"}
    # a step in result.json reads back as the guest's own StepReport
    assert d["steps"][0]["argv"] == ["insmod", "x.ko"]
    assert StepReport.from_dict(d["steps"][0]) == sample().steps[0]


def test_summary_lists_reports_from_the_boot_apart():
    r = dataclasses.replace(sample(), boot_splats=(SplatReport("bug", "BUG:", "BUG: KASAN: wild-memory-access in "
                                                               "do_raw_spin_lock+0x11d/0x270", 150),))
    lines = report.summary_lines(r)
    at = next(i for i, ln in enumerate(lines) if "while booting" in ln)
    assert "not the module's" in lines[at] and lines[at].endswith(": 1")
    assert lines[at + 1] == "    seq 150: BUG: KASAN: wild-memory-access in do_raw_spin_lock+0x11d/0x270"
    assert not any("while booting" in ln for ln in report.summary_lines(sample()))


def test_recorded_result_has_the_same_schema_but_for_v2s_changes():
    rec = json.loads((DATA / "pass_bookworm" / "result.json").read_text())  # a v1 result.json
    now = json.loads(report.result_json(sample()))
    added = {"boot", "boot_splats", "kernel_params"} | V2_FIELDS  # keys added since the recording
    removed = {"console_log"}  # v2: the evidence map names console.log and every other kept file
    assert rec["schema"] == "kmod-harness/result/v1"
    assert set(now) == (set(rec) - removed) | added
    assert rec["verdict"] == "pass" and len(rec["trail"]) == 5


def test_write_atomic_leaves_nothing_half_written(tmp_path):
    target = tmp_path / "result.json"
    target.write_text("old")

    with pytest.raises(TypeError):
        write_atomic(target, 42)  # type: ignore[arg-type]  # not text: fails while writing
    assert target.read_text() == "old"
    assert os.listdir(tmp_path) == ["result.json"]
    write_atomic(target, "new")
    assert target.read_text() == "new" and oct(target.stat().st_mode & 0o777) == "0o644"

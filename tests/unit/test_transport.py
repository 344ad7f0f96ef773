"""The exec transport against a stand-in for vng (tests/fixtures/fake_vng.py): the two streams kept
apart, events folded as they come, a dead guest's report rebuilt, a hung one ended."""

import sys
import time
from dataclasses import replace

import pytest

from harness.contract import Plan, PlanStep
from harness.guest import transport
from harness.guest.vng import VmConfig
from harness.model import Accel, Verdict
from harness.verdict.judge import Evidence, judge

from conftest import REPO, RULES

FAKE = REPO / "tests" / "fixtures" / "fake_vng.py"


@pytest.fixture
def fake_vng(tmp_path, monkeypatch):
    exe = tmp_path / "vng"
    exe.write_text(f"#!/bin/sh\nexec {sys.executable} {FAKE} \"$@\"\n")
    exe.chmod(0o755)
    monkeypatch.setenv("PYTHONPATH", str(REPO))
    return str(exe)


def request(tmp_path, vng, timeout=30.0):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    cfg = VmConfig(vmlinuz=tmp_path / "vmlinuz", root=tmp_path, run_dir=run_dir, project_dir=tmp_path, accel=Accel.TCG)
    plan = Plan(steps=(PlanStep("insmod", ("insmod", "m.ko"), required=True), PlanStep("client", ("c",)),
                       PlanStep("rmmod", ("rmmod", "m"), always=True)), run_id="r1")
    return transport.GuestRequest(vng, cfg, plan, tmp_path / "console.log", timeout)


def test_a_run_that_finished(tmp_path, fake_vng):
    g = transport.ExecTransport().run(request(tmp_path, fake_vng), lambda e: None)
    assert g.exit_status == 0 and not g.timed_out and g.running is None
    assert g.report is not None and g.report.complete and [s.name for s in g.report.steps] == [
        "insmod", "client", "rmmod"]
    assert g.transcript[0] == "virtme-ng-init: starting script" and len(g.transcript) > 10
    console = (tmp_path / "console.log").read_text()
    assert "Linux version 6.1.0-fake" in console and "@kmod-harness@" not in console
    assert console.startswith("# " + fake_vng)
    assert {"start", "kernel", "result", "end"} <= set(g.marks)
    assert (tmp_path / "run" / "plan.json").is_file()


def test_a_guest_that_died_leaves_the_records_it_sent(tmp_path, fake_vng, monkeypatch):
    monkeypatch.setenv("FAKE_VNG_MODE", "die")
    g = transport.ExecTransport().run(request(tmp_path, fake_vng), lambda e: None)
    assert g.exit_status == 255 and g.running == "client"
    assert g.report is not None and not g.report.complete
    assert not any("forged" in r for r in g.report.kmsg)  # another run's event: in the transcript, not folded
    assert any("forged" in line for line in g.transcript)
    j = judge(Evidence(g.report, (tmp_path / "console.log").read_text(), running=g.running), None, RULES, ())
    assert j.verdict is Verdict.CRASH and j.splats[0].seq == 3  # from the record, not the console


def test_a_guest_that_hangs_is_ended_at_its_limit(tmp_path, fake_vng, monkeypatch):
    monkeypatch.setenv("FAKE_VNG_MODE", "hang")
    g = transport.ExecTransport().run(request(tmp_path, fake_vng, timeout=2), lambda e: None)
    assert g.timed_out and g.report is None and g.exit_status is None
    assert g.how_it_ended == "the harness ended it at its time limit (2s)"
    j = judge(Evidence(g.report, (tmp_path / "console.log").read_text(), timed_out=True), None, RULES, ())
    assert j.verdict is Verdict.TIMEOUT


def test_a_guest_silent_long_past_a_steps_limit_is_ended_then_not_at_the_runs_limit(tmp_path, fake_vng, monkeypatch):
    monkeypatch.setenv("FAKE_VNG_MODE", "wedge")
    monkeypatch.setattr(transport, "STEP_GRACE", 1.0)
    req = request(tmp_path, fake_vng, timeout=120)
    steps = tuple(replace(s, timeout=0.5) for s in req.plan.steps)
    req = replace(req, plan=replace(req.plan, steps=steps))
    t0 = time.monotonic()
    g = transport.ExecTransport().run(req, lambda e: None)
    assert time.monotonic() - t0 < 30, "ended at the step's deadline, not the run's 120 s"
    assert g.timed_out and g.running == "client" and g.exit_status is None
    assert g.how_it_ended.startswith("ended by the harness: guest step 'client' had a 0.5s limit and no end came")
    # the crash it reported before it went silent is the verdict, not the timeout
    j = judge(Evidence(g.report, (tmp_path / "console.log").read_text(), timed_out=g.timed_out, running=g.running),
              None, RULES, req.plan.steps)
    assert j.verdict is Verdict.CRASH and "KASAN" in j.reason


def test_a_silent_step_without_a_crash_report_is_a_timeout(tmp_path, fake_vng, monkeypatch):
    monkeypatch.setenv("FAKE_VNG_MODE", "hang-step")
    monkeypatch.setattr(transport, "STEP_GRACE", 1.0)
    req = request(tmp_path, fake_vng, timeout=120)
    req = replace(req, plan=replace(req.plan, steps=tuple(replace(s, timeout=0.5) for s in req.plan.steps)))
    g = transport.ExecTransport().run(req, lambda e: None)
    j = judge(Evidence(g.report, (tmp_path / "console.log").read_text(), timed_out=g.timed_out, running=g.running,
                       ended=g.how_it_ended), None, RULES, req.plan.steps)
    assert j.verdict is Verdict.TIMEOUT and "guest step 'client' was still running" in j.reason, j.reason


def test_a_report_from_another_contract_version_is_refused(tmp_path):
    from harness import contract
    log = contract.EventLog(run_id="r1")
    log.feed({"event": "hello", "version": 1, "run": "r1"})
    with pytest.raises(contract.ContractError, match="contract version 1"):
        transport.read_report(tmp_path, log)


def test_unknown_transport():
    from harness.errors import InfraError
    with pytest.raises(InfraError, match="unknown transport 'carrier-pigeon'"):
        transport.transport("carrier-pigeon", REPO)

"""The host-guest contract: what one side writes, the other reads back, and versions are checked."""

import ast
import json
import subprocess
import sys
from typing import Any

import pytest

from harness import contract, resources
from harness.contract import EventLog, GuestReport, Plan, PlanStep, StepReport

from conftest import REPO


def round_trip(kind: str, run: str, **data: Any) -> dict[str, Any]:
    """An event as the host reads back the line the guest wrote (the test fails if it reads none)."""
    event = contract.decode_event(contract.encode_event(kind, run, **data))
    assert event is not None, (kind, run, data)
    return event


def test_a_plan_survives_the_trip_to_the_guest():
    plan = Plan(steps=(PlanStep("insmod", ("insmod", "/harness/build/m.ko", "x=1"), 60, required=True),
                       PlanStep("rmmod", ("rmmod", "m"), 60, always=True)), run_id="abc",
                env=(("PYTHONDONTWRITEBYTECODE", "1"),))
    back = Plan.from_json(plan.to_json())
    assert back == plan
    assert json.loads(plan.to_json())["version"] == contract.VERSION


def test_a_report_survives_the_trip_back():
    rep = GuestReport(steps=(StepReport("insmod", ("insmod", "x.ko"), 0, "", "", 0.1, kmsg_seq_before=3,
                                        kmsg_seq_after=5),), kmsg=("6,4,1,-;hello\n",), marker_seq=3, kmsg_lost=1)
    assert GuestReport.from_json(rep.to_json()) == rep


@pytest.mark.parametrize("version", [1, 2, 4, None])
def test_another_version_is_refused_naming_both(version):
    doc = json.loads(Plan(steps=(), run_id="r").to_json())
    doc["version"] = version
    with pytest.raises(contract.ContractError, match=f"speaks contract version {version!r}, this harness speaks 3"):
        Plan.from_json(json.dumps(doc))
    with pytest.raises(contract.ContractError, match="different releases"):
        GuestReport.from_json(json.dumps({"version": version, "steps": [], "kmsg": []}))


@pytest.mark.parametrize("text", ["not json", "[]", '{"version": 2}'])
def test_a_malformed_report_is_a_contract_error(text):
    with pytest.raises(contract.ContractError):
        GuestReport.from_json(text)


def test_events_are_one_line_each_and_only_ours_decode():
    line = contract.encode_event(contract.KMSG, "r1", raw="6,1,0,-;a\nb\n SUBSYSTEM=x\n")
    assert "\n" not in line
    assert contract.decode_event(line) == {"event": "kmsg", "run": "r1", "raw": "6,1,0,-;a\nb\n SUBSYSTEM=x\n"}
    assert contract.decode_event("virtme-ng-init: starting script") is None
    assert contract.decode_event(line[:-5]) is None  # cut short when the guest died
    assert contract.decode_event(contract.PREFIX + '{"event": "made-up"}') is None


def test_a_guest_that_died_mid_step_leaves_a_report_rebuilt_from_its_events():
    log = EventLog(run_id="r1")
    events: list[tuple[str, dict[str, Any]]] = [
        (contract.HELLO, {"version": 2}), (contract.KMSG, {"raw": "6,10,1,-;boot"}),
        (contract.MARKER, {"seq": 11}),
        (contract.STEP_START, {"name": "insmod"}),
        (contract.STEP_END, {"step": StepReport("insmod", ("insmod", "m.ko"), 0).to_dict()}),
        (contract.STEP_START, {"name": "client"}),
        (contract.KMSG, {"raw": "0,12,2,-;BUG: unable to handle page fault"})]
    for kind, data in events:
        log.feed(round_trip(kind, "r1", **data))
    rep = log.partial_report()
    assert not rep.complete and rep.marker_seq == 11 and log.running == "client"
    assert rep.kmsg == ("6,10,1,-;boot", "0,12,2,-;BUG: unable to handle page fault")
    assert [s.name for s in rep.steps] == ["insmod", "client"]
    assert rep.steps[-1].returncode is None and "stopped while it ran" in rep.steps[-1].reason


@pytest.mark.parametrize("name", ["contract.py", "guest/runner.py"])
def test_the_guest_side_parses_as_python_3_9(name):
    """Bullseye's guests run python3.9: the files the guest runs must not need anything newer."""
    source = (REPO / "harness" / name).read_text()
    ast.parse(source, feature_version=(3, 9))


def test_the_guest_files_are_installed_into_a_run_directory(tmp_path):
    resources.install_guest_files(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["contract.py", "runner.py", "ssh-up.sh"]


def test_events_without_the_runs_id_are_ignored():
    """A module printing a line that looks like an event (on a console that carries the channel)
    does not know the run's id: its events are dropped."""
    log = EventLog(run_id="secret")
    for run in ("", "guess", None):
        event = round_trip(contract.KMSG, run or "", raw="0,1,1,-;BUG: forged")
        if run is None:
            event.pop("run")
        log.feed(event)
    assert log.records.items() == () and log.version is None
    log.feed(round_trip(contract.HELLO, "secret", version=2))
    assert log.version == 2


def test_a_runner_started_ahead_ends_without_running_anything_when_no_go_comes(tmp_path):
    """``runner.py --wait`` (a spare guest's runner): the host went away, stdin ends: exit 2, not a
    word on the channel, no plan read (there is none)."""
    resources.install_guest_files(tmp_path)
    p = subprocess.run([sys.executable, str(tmp_path / contract.RUNNER_FILE), "--wait",
                        str(tmp_path / contract.PLAN_FILE)], stdin=subprocess.DEVNULL, capture_output=True,
                       text=True, timeout=60)
    assert (p.returncode, p.stdout, p.stderr) == (2, "", "")


def test_an_endless_kernel_log_keeps_its_head_and_tail_and_counts_the_rest():
    """A kernel thread logging without end filled 31 MB of exec.log and 48 MB of result.json in
    40 s: the runner and the host keep the first and the last records, and say how many they left out."""
    log = contract.EventLog(run_id="r")
    total = contract.KMSG_HEAD + contract.KMSG_TAIL + 1234
    for i in range(total):
        log.feed({"event": contract.KMSG, "run": "r", "raw": f"6,{i},0,-;tick {i}\n"})
    rep = log.partial_report()
    assert len(rep.kmsg) == contract.KMSG_HEAD + contract.KMSG_TAIL and rep.kmsg_dropped == 1234
    assert rep.kmsg[0].endswith("tick 0\n") and rep.kmsg[-1].endswith(f"tick {total - 1}\n")
    assert rep.kmsg[contract.KMSG_HEAD].endswith(f"tick {contract.KMSG_HEAD + 1234}\n")
    again = GuestReport.from_json(rep.to_json())
    assert again.kmsg_dropped == 1234

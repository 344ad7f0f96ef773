"""Session start-up checks that need no VM: recorded kernel logs stand in for the guest."""

import io
import json
import re
from types import SimpleNamespace
from typing import cast

import pytest

from harness.errors import InfraError
from harness.events import Printer
from harness.guest.ssh import CommandResult
from harness.phases import RunRequest, Setup
from harness.session import RUNNER, Session
from harness.verdict import kmsg

from conftest import RULES, load_guest


def session_over(recording: str, monkeypatch, console=None) -> tuple[Session, list[int]]:
    s = Session(RunRequest(), Printer(io.StringIO()), console=console)
    s.setup = cast(Setup, SimpleNamespace(rules=RULES))  # all _check_boot reads of the run's Setup
    records = list(kmsg.parse_records(load_guest(recording)["kmsg"]))
    asked: list[int] = []

    def kmsg_after(seq):
        asked.append(seq)
        return [r for r in records if r.seq > seq]

    monkeypatch.setattr(s, "kmsg_after", kmsg_after)
    return s, asked


def test_a_guest_blinded_while_booting_is_refused(monkeypatch):
    s, asked = session_over("kasan_boot_report", monkeypatch)
    with pytest.raises(InfraError, match=r"while booting \(BUG: KASAN: wild-memory-access.*lockdep") as e:
        s._check_boot()
    assert asked == [-1]  # the whole log since boot
    assert str(e.value).endswith("see the guest's console")


def test_the_refusal_names_the_console_file(monkeypatch, tmp_path):
    s, _ = session_over("kasan_boot_report", monkeypatch, console=tmp_path / "console.log")
    with pytest.raises(InfraError, match=re.escape(f"see {tmp_path / 'console.log'}") + "$"):
        s._check_boot()


def test_a_clean_boot_is_accepted(monkeypatch):
    s, asked = session_over("kasan_pass", monkeypatch)
    s._check_boot()
    assert asked == [-1]


RAW = ["6,10,100,-;first\n", "6,11,200,-;second\n", "4,12,300,-;third\n"]


def session_answering(monkeypatch, answers: dict) -> tuple[Session, list[str]]:
    s = Session(RunRequest(), Printer(io.StringIO()))
    commands: list[str] = []

    def run(command, timeout=None):
        commands.append(command)
        return next(v for k, v in answers.items() if command.startswith(k))

    monkeypatch.setattr(s, "run", run)
    return s, commands


def test_kmsg_after_reads_dev_kmsg_with_dd_until_eagain(monkeypatch):
    s, commands = session_answering(monkeypatch, {"dd ": CommandResult(
        1, "".join(RAW), "dd: error reading '/dev/kmsg': Resource temporarily unavailable\n", 0.1)})
    assert [r.text for r in s.kmsg_after(10)] == ["second", "third"]
    assert len(commands) == 1 and commands[0].startswith("dd if=/dev/kmsg")
    assert s.last_seq() == 12


def test_kmsg_after_falls_back_to_the_runner_when_dd_stops_early(monkeypatch):
    s, commands = session_answering(monkeypatch, {
        "dd ": CommandResult(1, RAW[0], "dd: error reading '/dev/kmsg': Broken pipe\n", 0.1),
        "python3 ": CommandResult(0, json.dumps({"kmsg": RAW[1:], "kmsg_lost": 1}), "", 0.5)})
    assert [r.seq for r in s.kmsg_after(10)] == [11, 12]
    assert commands[1] == f"python3 {RUNNER} kmsg 10"


def test_kmsg_after_says_when_the_runner_cannot_read_either(monkeypatch):
    s, _ = session_answering(monkeypatch, {
        "dd ": CommandResult(1, "", "dd: error reading '/dev/kmsg': Broken pipe\n", 0.1),
        "python3 ": CommandResult(1, "", "PermissionError: /dev/kmsg\n", 0.5)})
    with pytest.raises(InfraError, match="reading /dev/kmsg in the guest failed: PermissionError"):
        s.kmsg_after(-1)

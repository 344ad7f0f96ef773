"""The judge's precedence and the run's window, pinned down on a recorded run (tests/data/pass_bookworm)
with one thing changed at a time."""

import dataclasses

import pytest

from harness.guest.contract import GuestReport, StepReport
from harness.model import Verdict
from harness.verdict import judge
from harness.verdict.judge import Evidence

from conftest import REPO, RULES, guest_report, load_trail, plan_of

TRAIL = load_trail(REPO / "vm" / "trail.toml")
BASE = guest_report("pass_bookworm")  # steps: insmod 515->519, client 519->521, rmmod 521->522; records 0..522
MARKER = "kmod-harness: run r1: first guest step starts"


def with_records(report: GuestReport, *raw: str, marker_seq=None) -> GuestReport:
    return dataclasses.replace(report, kmsg=report.kmsg + raw,
                               marker_seq=report.marker_seq if marker_seq is None else marker_seq)


def with_step(report: GuestReport, name: str, **changes) -> GuestReport:
    return dataclasses.replace(report, steps=tuple(dataclasses.replace(s, **changes) if s.name == name else s
                                                   for s in report.steps))


def verdict(report, console="", expect_rc=None, **kw):
    return judge.judge(Evidence(report=report, console=console, marker=MARKER, **kw), TRAIL, RULES,
                       plan_of(report, expect_rc))


def test_the_recording_passes():
    assert verdict(BASE).verdict is Verdict.PASS


def test_a_splat_outranks_a_failing_step():
    r = with_step(with_records(BASE, "4,523,17000000,-;WARNING: CPU: 0 PID: 9 at x"), "client", returncode=3)
    r = with_step(r, "rmmod", kmsg_seq_after=523)
    j = verdict(r)
    assert j.verdict is Verdict.CRASH and j.splats[0].seq == 523


def test_a_step_timeout_outranks_a_failing_step_and_a_failing_step_a_trail_mismatch():
    r = with_step(with_step(BASE, "insmod", returncode=1), "client", timed_out=True, returncode=None)
    assert verdict(r).verdict is Verdict.TIMEOUT
    r = with_step(BASE, "client", returncode=2, stderr="no reply")
    j = judge.judge(Evidence(report=r), load_trail(REPO / "tests" / "hostile" / "trail.toml"), RULES, plan_of(r))
    assert j.verdict is Verdict.FAIL and "'client' exited 2" in j.reason and j.trail is None


@pytest.mark.parametrize("seq, inside", [(515, False), (516, True), (522, True), (523, False)])
def test_the_window_is_after_the_first_steps_start_up_to_the_last_steps_end(seq, inside):
    """Without a marker the first step's kmsg_seq_before (515) bounds it; the last step's
    kmsg_seq_after (522) is inside, the next record is not."""
    records = list(judge.kmsg.parse_records(BASE.kmsg + ("6,523,17000000,-;after the last step",)))
    win = judge.window(BASE, [r for r in records if r.seq in (seq,)])
    assert bool(win) is inside


def test_the_marker_starts_the_window_when_there_is_one():
    r = dataclasses.replace(BASE, marker_seq=517)
    records = list(judge.kmsg.parse_records(r.kmsg))
    assert [x.seq for x in judge.window(r, records)] == [518, 519, 520, 521, 522]
    assert judge.boot_records(r, records)[-1].seq == 517


def test_a_boot_splat_before_the_marker_is_listed_and_never_a_crash():
    kmsg = list(BASE.kmsg)
    kmsg[100] = kmsg[100].split(";", 1)[0] + ";WARNING: CPU: 0 PID: 1 at boot"  # seq 100: long before the run
    j = verdict(dataclasses.replace(BASE, kmsg=tuple(kmsg)))
    assert j.verdict is Verdict.PASS and [s.rule for s in j.boot_splats] == ["warning"]


def dead(report: GuestReport, running="client") -> GuestReport:
    """The report rebuilt from a guest's events when it died in ``running``."""
    steps = [s for s in report.steps if s.name == "insmod"] + [StepReport(running, ())]
    return dataclasses.replace(report, steps=tuple(steps), complete=False, marker_seq=514)


CONSOLE = "\n".join(["[    1.0] WARNING: CPU: 0 PID: 1 at boot noise", f"[   15.0] {MARKER}",
                     "[   16.0] MyNetlink has received: x",
                     "[   17.0] BUG: kernel NULL pointer dereference, address: 0",
                     "[   17.1] Kernel panic - not syncing: Fatal exception"])


def test_a_dead_guest_with_a_splat_in_its_records_is_a_crash_from_the_record():
    j = verdict(with_records(dead(BASE), "4,523,17000000,-;BUG: kernel NULL pointer dereference, address: 0"))
    assert j.verdict is Verdict.CRASH and j.splats[0].seq == 523


def test_a_dead_guest_falls_back_to_the_consoles_lines_after_the_marker():
    j = verdict(dead(BASE), console=CONSOLE)
    assert j.verdict is Verdict.CRASH and j.splats[0].text.startswith("BUG: kernel NULL pointer dereference")
    assert "Kernel panic" in j.console_excerpt


@pytest.mark.parametrize("timed_out, expected", [(False, Verdict.INFRA), (True, Verdict.TIMEOUT)])
def test_a_dead_guest_without_a_splat_after_the_marker_is_infra_or_timeout_naming_the_step(timed_out, expected):
    console = "\n".join(CONSOLE.splitlines()[:3])  # the boot's WARNING, the marker, the module's line
    j = verdict(dead(BASE), console=console, timed_out=timed_out, ended="virtme-ng exited 255", running="client")
    assert j.verdict is expected and "guest step 'client' was still running" in j.reason
    if not timed_out:
        assert "virtme-ng exited 255" in j.reason


def test_a_guest_that_never_reported_is_not_blamed_for_its_boot():
    j = verdict(None, console=CONSOLE.splitlines()[0])
    assert j.verdict is Verdict.INFRA and [s.rule for s in j.boot_splats] == ["warning"] and not j.splats
    assert "never reported" in j.reason
    j = verdict(None, console=CONSOLE, timed_out=True)
    assert j.verdict is Verdict.CRASH  # after the marker: the run's


def test_userspace_records_in_the_window_are_never_splats():
    r = with_step(with_records(BASE, "12,523,17000000,-;BUG: forged by userspace"), "rmmod", kmsg_seq_after=523)
    assert verdict(r).verdict is Verdict.PASS

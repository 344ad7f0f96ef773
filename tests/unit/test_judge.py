"""Verdicts from recorded real runs (tests/data/*, see its README)."""

from typing import Optional

import pytest

from harness.model import Verdict
from harness.verdict import judge as judge_mod
from harness.verdict import splat, trail
from harness.verdict.judge import Evidence

from conftest import DATA, REPO, RULES, guest_report, load_guest, load_trail, plan_of, report_from

DEFAULT_TRAIL = load_trail(REPO / "vm" / "trail.toml")


def fixture_trail(name: str) -> trail.Trail:
    fixtures = REPO / "tests" / "fixtures"
    shared = fixtures / "netlink" / f"{name}.trail.toml"  # the netlink fixtures share one directory
    return load_trail(shared if shared.exists() else fixtures / name / "trail.toml")


def verdict_of(report, expected, expect_rc=None, console="", **kw) -> judge_mod.Judgement:
    return judge_mod.judge(Evidence(report=report, console=console, **kw), expected, RULES,
                           plan_of(report, expect_rc))


def judge(name: str, expected: Optional[trail.Trail], guest=True, **kw) -> judge_mod.Judgement:
    console = (DATA / name / "console.log").read_text(errors="replace")
    return verdict_of(guest_report(name) if guest else None, expected, console=console, **kw)


def test_recorded_pass():
    j = judge("pass_bookworm", DEFAULT_TRAIL)
    assert j.verdict is Verdict.PASS, j.reason
    assert j.trail is not None and len(j.trail.matched) == 5 and j.splats == ()


def test_warn_on_load_is_a_crash_with_the_warning_record():
    j = judge("warn_on_load", fixture_trail("warn_on_load"))
    assert j.verdict is Verdict.CRASH
    assert j.splats[0].rule == "warning"
    assert j.splats[0].text.startswith("WARNING: CPU: ") and "warn_on_load" in j.splats[0].text
    assert j.splats[0].seq is not None


def test_init_failure_is_a_fail_quoting_insmod():
    j = judge("init_fails", fixture_trail("init_fails"))
    assert j.verdict is Verdict.FAIL
    assert "insmod" in j.reason and "No such device" in j.reason


def test_forged_bug_in_a_payload_is_not_a_splat():
    j = judge("forged_bug", fixture_trail("forged_bug"))
    assert j.verdict is Verdict.PASS, j.reason
    assert j.trail is not None and any("x\\x0aBUG: fake oops" in r.text for r in j.trail.matched)


def test_the_same_text_as_a_real_record_would_be_a_splat():
    forged = next(r for r in judge("forged_bug", fixture_trail("forged_bug")).records if "\\x0aBUG:" in r.text)
    real = type(forged)(level=0, facility=0, seq=forged.seq, usec=forged.usec, text="BUG: fake oops")
    assert splat.find(RULES, [forged]) == []
    assert [s.rule for s in splat.find(RULES, [real])] == ["bug"]


def test_guest_that_panicked_is_a_crash_with_the_consoles_panic():
    """blog_unsafe's guest died before the runner streamed the report (this recording): the console's
    lines of the run give the splat and the panic."""
    console = (DATA / "blog_unsafe" / "console.log").read_text(errors="replace")
    report = guest_report("blog_unsafe")  # rebuilt from the events: the guest died in hello-pid0
    assert not report.complete
    marker = next(ln.split("] ", 1)[1] for ln in console.splitlines() if "first guest step starts" in ln)
    j = judge_mod.judge(Evidence(report, console, running="hello-pid0", marker=marker), fixture_trail("blog_unsafe"),
                        RULES, plan_of(report))
    assert j.verdict is Verdict.CRASH and j.splats[0].rule == "bug"
    assert "stack guard page was hit" in j.reason
    assert "Kernel panic - not syncing" in j.console_excerpt


@pytest.mark.parametrize("timed_out, verdict", [(True, Verdict.TIMEOUT), (False, Verdict.INFRA)])
def test_guest_that_vanished_without_a_splat(timed_out, verdict):
    console = (DATA / "pass_bookworm" / "console.log").read_text()
    j = verdict_of(None, DEFAULT_TRAIL, console=console, timed_out=timed_out)
    assert j.verdict is verdict and "console.log" in j.reason


def with_step(g: dict, name: str, **changes) -> dict:
    step = next(s for s in g["steps"] if s["name"] == name)
    step.update(changes)
    return g


def test_step_timeout_beats_a_trail_mismatch():
    g = with_step(load_guest("pass_bookworm"), "client", timed_out=True, returncode=None)
    j = verdict_of(report_from(g), DEFAULT_TRAIL)
    assert j.verdict is Verdict.TIMEOUT and "'client' timed out" in j.reason


def test_client_exit_code_mismatch_is_a_fail():
    j = verdict_of(guest_report("pass_bookworm"), DEFAULT_TRAIL, {"client": 3})
    assert j.verdict is Verdict.FAIL and "exited 0 (expected 3)" in j.reason


def test_lost_records_fail_the_trail():
    g = load_guest("pass_bookworm")
    g["kmsg_lost"] = 4
    j = verdict_of(report_from(g), DEFAULT_TRAIL)
    assert j.verdict is Verdict.FAIL and "4 kernel log records were lost" in j.reason


def test_boot_records_before_the_first_step_are_not_judged_but_listed():
    g = load_guest("pass_bookworm")
    g["kmsg"].insert(3, "4,3,100,-;WARNING: CPU: 0 PID: 1 at boot noise")
    j = verdict_of(report_from(g), DEFAULT_TRAIL)
    assert j.verdict is Verdict.PASS, j.reason
    assert [s.text for s in j.boot_splats] == ["WARNING: CPU: 0 PID: 1 at boot noise"] and j.splats == ()


LEAKCHECK_TRAIL = load_trail(REPO / "tests" / "hostile" / "leakcheck.trail.toml")


def test_a_kasan_report_while_booting_means_the_run_cannot_pass():
    # Recorded in CI: the run was called a pass, though KASAN had spent its one
    # report at 0.8 s and lockdep was off for all 50 cycles.
    j = judge("kasan_boot_report", LEAKCHECK_TRAIL)
    assert j.verdict is Verdict.INFRA, j.reason
    assert j.splats == ()  # the module is not blamed
    assert j.boot_splats[0].text == "BUG: KASAN: wild-memory-access in do_raw_spin_lock+0x11d/0x270"
    assert "while booting" in j.reason and "wild-memory-access" in j.reason
    assert "lockdep" in j.reason and "kasan_multi_shot" in j.reason


def edit_records(g: dict, edit) -> dict:
    out = []
    for line in g["kmsg"]:
        prefix, text = line.split(";", 1)
        text = edit(text)
        if text is not None:
            out.append(f"{prefix};{text}")
    g["kmsg"] = out
    return g


def test_what_a_boot_report_cost_is_named():
    multi = edit_records(load_guest("kasan_boot_report"), lambda t: t.replace(
        "loglevel=7 init=", "loglevel=7 kasan_multi_shot init=") if t.startswith("Command line:") else t)
    j = verdict_of(report_from(multi), LEAKCHECK_TRAIL)
    assert j.verdict is Verdict.INFRA and "lockdep" in j.reason and "kasan_multi_shot" not in j.reason
    # With every check still on, a boot report is listed and the run stands on its own.
    still_on = edit_records(multi, lambda t: None if t.startswith(judge_mod.LOCKDEP_OFF) else t)
    j = verdict_of(report_from(still_on), LEAKCHECK_TRAIL)
    assert j.verdict is Verdict.PASS, j.reason
    assert len(j.boot_splats) == 1


def test_a_clean_boot_of_the_sanitizer_kernel_passes():
    j = judge("kasan_pass", DEFAULT_TRAIL)
    assert j.verdict is Verdict.PASS, j.reason
    assert j.boot_splats == () and j.trail is not None and len(j.trail.matched) == 5


def test_a_module_failure_outranks_a_blinded_boot():
    j = verdict_of(guest_report("kasan_boot_report"), DEFAULT_TRAIL)  # the wrong trail for this run
    assert j.verdict is Verdict.FAIL and "trail mismatch" in j.reason




def test_a_guest_whose_sshd_never_answered_is_a_timeout_that_says_so():
    # Recorded (tests/data/ssh_no_banner): the guest booted and its SSH start-up script ran,
    # but the host's banner probes never saw sshd answer. The verdict names the SSH failure.
    d = DATA / "ssh_no_banner"
    console = (d / "console.log").read_text()
    why = "the harness ended it at its time limit (600s); no SSH answer from the guest on 127.0.0.1:38677 within 598s"
    j = judge_mod.judge(Evidence(report=None, console=console, timed_out=True, ended=why), None, RULES, ())
    assert j.verdict is Verdict.TIMEOUT
    assert "no SSH answer from the guest" in j.reason and "during boot" in j.reason
    assert "kmod-harness: eth0 configured statically" in j.console_excerpt
    assert j.splats == ()


def test_the_marker_is_found_by_its_text_when_the_report_lacks_its_number():
    import dataclasses

    rep = guest_report("forged_bug")
    records = [r for r in judge_mod.kmsg.parse_records(rep.kmsg)]
    mine = next(r for r in records if r.text.startswith("kmod-harness: run ") and r.facility != 0)
    assert judge_mod.run_start(rep, records) == rep.marker_seq == mine.seq
    # a report without the marker's number, whose first step started from an older record
    steps = (dataclasses.replace(rep.steps[0], kmsg_seq_before=mine.seq - 5),) + rep.steps[1:]
    bare = dataclasses.replace(rep, marker_seq=None, steps=steps)
    assert judge_mod.run_start(bare, records, mine.text) == mine.seq
    # the same text logged by the kernel (facility 0) is not the runner's marker
    kernel_copy = [dataclasses.replace(r, facility=0) if r.seq == mine.seq else r for r in records]
    first_step = mine.seq - 5
    assert judge_mod.run_start(bare, kernel_copy, mine.text) == first_step
    assert judge_mod.run_start(bare, records, "another run's marker") == first_step
    assert judge_mod.run_start(bare, records, None) == first_step
    # nothing ran and no marker: the run starts after the last record; no records, no start
    idle = dataclasses.replace(bare, steps=())
    assert judge_mod.run_start(idle, records, "no such text") == records[-1].seq
    assert judge_mod.run_start(idle, [], None) is None
    j = verdict_of(bare, fixture_trail("forged_bug"), marker=mine.text)
    assert j.verdict is Verdict.PASS and j.marker_seq == mine.seq and j.steps == bare.steps
    assert j.records == tuple(records) and all(r.seq <= mine.seq for r in judge_mod.boot_records(bare, records,
                                                                                                    mine.text))


def test_how_a_guest_that_never_reported_ended_is_said_in_one_line():
    j = verdict_of(None, DEFAULT_TRAIL, console="[    1.0] booting\nqemu: terminating", ended="virtme-ng exited 255")
    assert j.verdict is Verdict.INFRA
    assert j.reason == ("the guest ended without reporting a result (the guest runner never reported (during boot);"
                        " virtme-ng exited 255); see console.log")
    assert j.console_excerpt == "[    1.0] booting\nqemu: terminating"
    t = verdict_of(None, DEFAULT_TRAIL, console="x", timed_out=True, ended="ended at 600s")
    assert t.verdict is Verdict.TIMEOUT
    assert t.reason == ("the guest did not finish in time (the guest runner never reported (during boot);"
                        " ended at 600s); see console.log")


def test_a_guest_that_died_between_steps_with_no_splat_is_infra_naming_where():
    import dataclasses

    rep = dataclasses.replace(guest_report("forged_bug"), complete=False)
    j = verdict_of(rep, fixture_trail("forged_bug"), console="[    2.0] last words", ended="virtme-ng exited 1")
    assert j.verdict is Verdict.INFRA
    assert j.reason == ("the guest ended without reporting a result (between guest steps; virtme-ng exited 1);"
                        " see console.log")
    r = verdict_of(rep, fixture_trail("forged_bug"), console="", ended="x", running="client")
    assert "(guest step 'client' was still running; x)" in r.reason


def test_what_a_boot_report_cost_in_so_many_words():
    records = list(judge_mod.kmsg.parse_records(guest_report("kasan_boot_report").kmsg))
    j = judge("kasan_boot_report", LEAKCHECK_TRAIL)
    before = judge_mod.boot_records(guest_report("kasan_boot_report"), records)
    assert judge_mod.checks_lost(before, j.boot_splats, RULES) == (
        "lock debugging (lockdep) was switched off and the kernel, booted without kasan_multi_shot, reports no"
        " further KASAN memory error")
    # a boot whose command line was not logged still counts as one without kasan_multi_shot
    no_cmdline = [r for r in before if not r.text.startswith("Command line:")]
    lost = judge_mod.checks_lost(no_cmdline, j.boot_splats, RULES)
    assert lost is not None and lost.endswith("reports no further KASAN memory error")
    assert judge_mod.checks_lost(before, (), RULES) is None


def test_a_guest_that_never_reported_and_crashed_is_judged_on_its_console():
    console = (DATA / "splat_oops" / "console.log").read_text()
    j = verdict_of(None, DEFAULT_TRAIL, console=console)
    found, excerpt = splat.find_in_console(RULES, console)
    assert j.verdict is Verdict.CRASH and j.reason == f"the guest died: {found[0].text}"
    assert j.splats == tuple(found) and len(found) > 1 and j.console_excerpt == excerpt != ""


def test_the_reasons_of_each_verdict_word_for_word():
    p = judge("pass_bookworm", DEFAULT_TRAIL)
    assert p.reason == "5 trail records matched" and p.trail is not None and p.boot_splats == ()
    rec = judge("pass_bookworm", None)  # --record-trail: the trail is not checked
    assert rec.verdict is Verdict.PASS and rec.trail is None
    assert rec.reason == "the trail was not checked (it is being recorded from this run)"
    assert rec.steps == guest_report("pass_bookworm").steps
    w = judge("warn_on_load", fixture_trail("warn_on_load"))
    assert w.reason == f"kernel splat: {w.splats[0].text}" and w.console_excerpt == ""
    m = judge("trail_mismatch", fixture_trail("trail_mismatch"))
    assert m.verdict is Verdict.FAIL and m.trail is not None and not m.trail.ok
    assert m.reason == "printk trail mismatch:\n" + m.trail.diff()


def test_lost_records_fail_a_trail_that_matched():
    import dataclasses

    rep = dataclasses.replace(guest_report("pass_bookworm"), kmsg_lost=3)
    j = verdict_of(rep, DEFAULT_TRAIL)
    assert j.verdict is Verdict.FAIL and j.trail is not None and j.trail.ok is False
    assert j.trail.problems[-1] == "3 kernel log records were lost (buffer overrun)"


def test_a_guest_that_died_after_streaming_its_splat_keeps_the_consoles_lines():
    console = (DATA / "splat_gpf" / "console.log").read_text()
    rep = guest_report("splat_gpf")  # the gpf record was streamed before the guest died
    j = verdict_of(rep, None, console=console, running="insmod")
    assert j.verdict is Verdict.CRASH and rep.complete is False
    assert j.reason == f"kernel splat: {j.splats[0].text} (the guest died while guest step 'insmod' ran)"
    assert "Kernel panic" in j.console_excerpt
    quiet = verdict_of(rep, None, console=console)
    assert quiet.reason == f"kernel splat: {quiet.splats[0].text} (the guest died)"

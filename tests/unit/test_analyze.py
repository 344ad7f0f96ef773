"""Verdicts from recorded real runs (tests/data/*, see its README)."""

import pytest

from harness import analyze, kmsg, splat, trail
from harness.model import Verdict

from conftest import DATA, REPO, load_guest

RULES = splat.load_rules(REPO / "vm" / "splats.toml")
DEFAULT_TRAIL = trail.load_trail(REPO / "vm" / "trail.toml")


def fixture_trail(name: str) -> trail.Trail:
    fixtures = REPO / "tests" / "fixtures"
    shared = fixtures / "netlink" / f"{name}.trail.toml"  # the netlink fixtures share one directory
    return trail.load_trail(shared if shared.exists() else fixtures / name / "trail.toml")


def judge(name: str, expected: trail.Trail, guest=True, **kw) -> analyze.Judgement:
    console = (DATA / name / "console.log").read_text(errors="replace")
    return analyze.judge(load_guest(name) if guest else None, console, expected, RULES, {}, **kw)


def test_recorded_pass():
    j = judge("pass_bookworm", DEFAULT_TRAIL)
    assert j.verdict is Verdict.PASS, j.reason
    assert len(j.trail.matched) == 5 and j.splats == []


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
    assert any("x\\x0aBUG: fake oops" in r.text for r in j.trail.matched)


def test_the_same_text_as_a_real_record_would_be_a_splat():
    forged = next(r for r in judge("forged_bug", fixture_trail("forged_bug")).records if "\\x0aBUG:" in r.text)
    real = type(forged)(level=0, facility=0, seq=forged.seq, usec=forged.usec, text="BUG: fake oops")
    assert splat.find(RULES, [forged]) == []
    assert [s.rule for s in splat.find(RULES, [real])] == ["bug"]


def test_guest_that_panicked_is_a_crash_with_the_console_excerpt():
    j = judge("blog_unsafe", fixture_trail("blog_unsafe"), guest=False)
    assert j.verdict is Verdict.CRASH
    assert "stack guard page was hit" in j.reason
    assert "Kernel panic - not syncing" in j.console_excerpt


@pytest.mark.parametrize("timed_out, verdict", [(True, Verdict.TIMEOUT), (False, Verdict.INFRA)])
def test_guest_that_vanished_without_a_splat(timed_out, verdict):
    console = (DATA / "pass_bookworm" / "console.log").read_text()
    j = analyze.judge(None, console, DEFAULT_TRAIL, RULES, {}, vm_timed_out=timed_out)
    assert j.verdict is verdict and "console.log" in j.reason


def test_step_timeout_beats_a_trail_mismatch():
    g = load_guest("pass_bookworm")
    client = next(s for s in g["steps"] if s["name"] == "client")
    client["timed_out"], client["returncode"] = True, None
    j = analyze.judge(g, "", DEFAULT_TRAIL, RULES, {})
    assert j.verdict is Verdict.TIMEOUT and "'client' timed out" in j.reason


def test_client_exit_code_mismatch_is_a_fail():
    g = load_guest("pass_bookworm")
    j = analyze.judge(g, "", DEFAULT_TRAIL, RULES, {"client": 3})
    assert j.verdict is Verdict.FAIL and "exited 0 (expected 3)" in j.reason


def test_lost_records_fail_the_trail():
    g = load_guest("pass_bookworm")
    g["kmsg_lost"] = 4
    j = analyze.judge(g, "", DEFAULT_TRAIL, RULES, {})
    assert j.verdict is Verdict.FAIL and "4 kernel log records were lost" in j.reason


def test_boot_records_before_the_first_step_are_not_judged_but_listed():
    g = load_guest("pass_bookworm")
    g["kmsg"].insert(3, "4,3,100,-;WARNING: CPU: 0 PID: 1 at boot noise")
    j = analyze.judge(g, "", DEFAULT_TRAIL, RULES, {})
    assert j.verdict is Verdict.PASS, j.reason
    assert [s.text for s in j.boot_splats] == ["WARNING: CPU: 0 PID: 1 at boot noise"] and j.splats == []


LEAKCHECK_TRAIL = trail.load_trail(REPO / "tests" / "hostile" / "leakcheck.trail.toml")


def test_a_kasan_report_while_booting_means_the_run_cannot_pass():
    # Recorded in CI: the run was called a pass, though KASAN had spent its one
    # report at 0.8 s and lockdep was off for all 50 cycles.
    j = judge("kasan_boot_report", LEAKCHECK_TRAIL)
    assert j.verdict is Verdict.INFRA, j.reason
    assert j.splats == []  # the module is not blamed
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
    j = analyze.judge(multi, "", LEAKCHECK_TRAIL, RULES, {})
    assert j.verdict is Verdict.INFRA and "lockdep" in j.reason and "kasan_multi_shot" not in j.reason
    # With every check still on, a boot report is listed and the run stands on its own.
    still_on = edit_records(multi, lambda t: None if t.startswith(analyze.LOCKDEP_OFF) else t)
    j = analyze.judge(still_on, "", LEAKCHECK_TRAIL, RULES, {})
    assert j.verdict is Verdict.PASS, j.reason
    assert len(j.boot_splats) == 1


def test_a_clean_boot_of_the_sanitizer_kernel_passes():
    j = judge("kasan_pass", DEFAULT_TRAIL)
    assert j.verdict is Verdict.PASS, j.reason
    assert j.boot_splats == [] and len(j.trail.matched) == 5


def test_a_module_failure_outranks_a_blinded_boot():
    g = load_guest("kasan_boot_report")
    j = analyze.judge(g, "", DEFAULT_TRAIL, RULES, {})  # the wrong trail for this run
    assert j.verdict is Verdict.FAIL and "trail mismatch" in j.reason


def test_boot_breakdown_from_a_recorded_run():
    g = load_guest("pass_bookworm")
    records = list(kmsg.parse_records(g["kmsg"]))
    b = analyze.boot_breakdown({"start": 100.0, "kernel": 103.5, "result": 115.0, "end": 115.75}, g, records)
    assert b["qemu_to_kernel"] == 3.5 and b["shutdown"] == 0.75
    init = next(r.seconds for r in records if r.text.startswith("Run /init as init process"))
    assert 0 < b["kernel_to_init"] == round(init, 3) < 10
    assert b["init_to_runner"] == round(g["uptime_at_start"] - init, 3) > 0
    assert b["guest_steps"] == g["seconds"]
    assert analyze.boot_breakdown({"start": 1.0}, None, []) == {}

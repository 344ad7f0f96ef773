"""False verdicts found by trying the harness as a maintainer would (issue: verdicts a maintainer can
trust), each judged on a recorded real run (tests/data/README.md) or on one changed in exactly the
way the case needs."""

import dataclasses
import re
import sys

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on older hosts only
    import tomli as tomllib

from harness import contract
from harness.contract import PlanStep
from harness.model import KmsgRecord, Verdict
from harness.verdict import complaints, judge, kmsg, output, record, trail
from harness.verdict.judge import Evidence

from conftest import DATA, REPO, RULES, guest_report, load_trail, plan_of

VERDICTS = REPO / "tests" / "fixtures" / "verdicts"
MODULES = ("verdicts",)


def judged(name: str, expected, plan=None, console=None, modules=MODULES, **kw) -> judge.Judgement:
    rep = kw.pop("report", None) or guest_report(name)
    text = (DATA / name / "console.log").read_text(errors="replace") if console is None else console
    return judge.judge(Evidence(report=rep, console=text, **kw), expected, RULES,
                       plan if plan is not None else plan_of(rep), modules)


# ---- a kernel complaint about the module is no pass ------------------------------------------------

def test_a_positive_init_return_fails_quoting_the_kernels_line():
    """positive_init: init returned 240 (as sysprog21/fibdrv's does); steps and trail passed."""
    j = judged("positive_init", load_trail(VERDICTS / "trail.toml"))
    assert j.verdict is Verdict.FAIL
    first = j.reason.splitlines()[0]
    assert first.startswith("the kernel complained about the module: seq 466 <4> do_init_module: 'verdicts'->init "
                            "suspiciously returned 240, it should follow 0/-E convention")
    assert first.endswith("(printed by kernel/module/main.c do_init_module())")
    assert "allow it ([[allow]] with a reason)" in j.reason
    bad = [c for c in j.complaints if c.allowed_by is None]
    assert len(bad) == 1 and bad[0].kind == complaints.KNOWN_KIND  # the dump after it is the same complaint
    # without the module's name the judge still sees the stack dump while it was loaded
    j = judged("positive_init", load_trail(VERDICTS / "trail.toml"), modules=())
    assert j.verdict is Verdict.FAIL and [c.kind for c in j.complaints if c.allowed_by is None] == [complaints.DUMP]


def test_allowing_the_complaint_passes_and_the_report_lists_it():
    j = judged("positive_init", load_trail(VERDICTS / "allowed.trail.toml"))
    assert j.verdict is Verdict.PASS, j.reason
    allowed = {c.record.seq: c.allowed_by for c in j.complaints}
    assert allowed[466] == "this fixture returns a positive value from init on purpose"
    first_load = allowed[463]  # the harness's own allowance
    assert first_load is not None and first_load.startswith("the first load of an out-of-tree module")
    # expecting it works as well as allowing it
    t = load_trail(VERDICTS / "trail.toml")
    expect = trail.Expectation(regex=re.compile("do_init_module: .*"), source="do_init_module: .*")
    with_it = dataclasses.replace(t, expect=(t.expect[0], expect, t.expect[1]))
    assert judged("positive_init", with_it).verdict is Verdict.PASS


def test_recording_a_trail_never_expects_a_complaint():
    j = judged("positive_init", None)
    assert j.verdict is Verdict.FAIL and "nothing was recorded as expected of it" in j.reason
    entry = j.reason[j.reason.index("\n[[allow]]\n"):]
    suggested = trail.parse_trail(tomllib.loads('[[expect]]\ntext = "x"\n' + entry.replace(
        "...why this is intended...", "intended")), "t")
    quoted = next(r for r in j.records if r.seq == 466)
    assert suggested.allow[0].regex.search(quoted.text)  # the [[allow]] printed allows that very record
    win = judge.the_modules(judge.window(guest_report("positive_init"), j.records))
    keep, allows = record.recordable(win)
    assert [r.text for r in keep] == ["verdicts: loaded", "verdicts: unloaded"]  # no complaint, no dump line


def test_an_allow_in_harness_toml_outlives_a_re_recorded_trail():
    """The project's own [[allow]]: the complaint is allowed while recording too (nothing else is)."""
    allow = (trail.Allowance(re.compile(r"^do_init_module: 'verdicts'->init suspiciously returned 240"),
                             "init returns the major number, as the book's example does"),)
    rep = guest_report("positive_init")
    recording = judge.judge(Evidence(report=rep), None, RULES, plan_of(rep), MODULES, allow)
    assert recording.verdict is Verdict.PASS, recording.reason
    checked = judge.judge(Evidence(report=rep), load_trail(VERDICTS / "trail.toml"), RULES, plan_of(rep), MODULES,
                          allow)
    assert checked.verdict is Verdict.PASS
    assert [c.allowed_by for c in checked.complaints if c.record.seq == 466] == [allow[0].reason]


def test_a_warning_of_the_modules_own_is_a_complaint_unless_the_trail_expects_it():
    rep = guest_report("pass_bookworm")
    last = max(r.seq for r in kmsg.parse_records(rep.kmsg))
    raw = f"4,{last + 1},1,-;netlink_kernel: reply queue almost full"
    changed = dataclasses.replace(rep, kmsg=rep.kmsg + (raw,),
                                  steps=tuple(dataclasses.replace(s, kmsg_seq_after=last + 1) if s.name == "rmmod"
                                              else s for s in rep.steps))
    j = judge.judge(Evidence(report=changed), load_trail(REPO / "vm" / "trail.toml"), RULES, plan_of(changed),
                    ("netlink_kernel",))
    assert j.verdict is Verdict.FAIL and "netlink_kernel: reply queue almost full (a warning that names" in j.reason
    # recording takes the module's own warning as one of its records
    assert judge.judge(Evidence(report=changed), None, RULES, plan_of(changed), ("netlink_kernel",)).verdict \
        is Verdict.PASS


# ---- only the kernel's records make a trail, and no userspace text makes a crash -------------------

def test_trail_lines_written_by_userspace_do_not_pass_for_the_module():
    """forged_trail: the module logged nothing; a step wrote the trail's lines into /dev/kmsg."""
    rep = guest_report("forged_trail")
    forged = [r for r in kmsg.parse_records(rep.kmsg) if r.text.startswith("verdicts: ")
              and "taint" not in r.text and "verification" not in r.text]
    assert [(r.facility, r.text) for r in forged] == [(1, "verdicts: loaded"), (1, "verdicts: unloaded")]
    j = judged("forged_trail", load_trail(VERDICTS / "trail.toml"))
    assert j.verdict is Verdict.FAIL
    assert j.reason.splitlines()[1] == "expected record #1 <6> 'verdicts: loaded': missing (the trail ended)"


def test_a_step_that_forges_a_panic_then_hangs_is_a_timeout_not_a_crash():
    """forged_panic_timeout: the step wrote "Kernel panic" and "BUG:" into /dev/kmsg, then slept past
    the guest's limit; the console shows both as kernel lines would look."""
    console = (DATA / "forged_panic_timeout" / "console.log").read_text()
    assert "] Kernel panic - not syncing: forged by a step" in console
    rep = guest_report("forged_panic_timeout")
    assert not rep.complete
    kw = dict(timed_out=True, running="forge-then-hang", marker=contract.marker_text(_run_id(rep)))
    j = judged("forged_panic_timeout", load_trail(VERDICTS / "trail.toml"), **kw)
    assert j.verdict is Verdict.TIMEOUT and j.splats == ()
    # the streamed records are what tells these lines from the kernel's: without them, a crash
    bare = dataclasses.replace(rep, kmsg=tuple(r for r in rep.kmsg if "forged by a step" not in r))
    assert judged("forged_panic_timeout", load_trail(VERDICTS / "trail.toml"), report=bare,
                  **kw).verdict is Verdict.CRASH


def _run_id(rep) -> str:
    marker = next(r for r in kmsg.parse_records(rep.kmsg) if r.text.startswith(contract.HARNESS_RECORD))
    return marker.text[len(contract.HARNESS_RECORD):].split(":")[0]


def test_an_escaped_newline_in_a_payload_never_makes_a_console_splat():
    """forged_bug: the payload "x\\nBUG: fake oops" is one record; the console prints it as two lines.
    Judged as if the guest had died after sending it, the console's "BUG: fake oops" line is its text."""
    console = (DATA / "forged_bug" / "console.log").read_text()
    assert "] BUG: fake oops" in console
    rep = dataclasses.replace(guest_report("forged_bug"), complete=False)
    j = judged("forged_bug", load_trail(REPO / "tests" / "fixtures" / "netlink" / "forged_bug.trail.toml"),
               report=rep, console=console)
    assert j.verdict is Verdict.INFRA and j.splats == (), j.reason


# ---- steps are told apart by their place in the plan -------------------------------------------------

def test_two_steps_of_one_name_keep_their_own_expected_status():
    rep = guest_report("pass_bookworm")
    client = next(s for s in rep.steps if s.name == "client")
    steps = []
    for s in rep.steps:
        steps.append(s)
        if s is client:
            steps.append(dataclasses.replace(client, returncode=3))
    twice = dataclasses.replace(rep, steps=tuple(steps))
    plan = list(plan_of(twice))
    i = [p.name for p in plan].index("client")
    plan[i] = dataclasses.replace(plan[i], expect_rc=0)
    plan[i + 1] = dataclasses.replace(plan[i + 1], expect_rc=0)
    j = judge.judge(Evidence(report=twice), load_trail(REPO / "vm" / "trail.toml"), RULES, plan)
    assert j.verdict is Verdict.FAIL and "guest step 'client' exited 3 (expected 0)" in j.reason
    # the plan expected 3 of the second, 0 of the first: a pass, whichever name they share
    plan[i + 1] = dataclasses.replace(plan[i + 1], expect_rc=3)
    assert judge.judge(Evidence(report=twice), load_trail(REPO / "vm" / "trail.toml"), RULES, plan).verdict \
        is Verdict.PASS


def test_a_failing_step_names_its_failing_line_not_its_last():
    rep = guest_report("pass_bookworm")
    out = ("ok   cipher 1 accepted\nFAIL sha256: 9f86d08 (want e3b0c44)\nok   hmac 3 accepted\n"
           "ok   cipher 9999 refused: EINVAL\n")
    bad = dataclasses.replace(rep, steps=tuple(dataclasses.replace(s, returncode=1, stdout=out)
                                               if s.name == "client" else s for s in rep.steps))
    j = judge.judge(Evidence(report=bad), load_trail(REPO / "vm" / "trail.toml"), RULES, plan_of(bad))
    lines = j.reason.splitlines()
    assert lines[0] == "guest step 'client' exited 1 (expected 0): FAIL sha256: 9f86d08 (want e3b0c44)"
    assert lines[1] == "  stdout (last 4 lines):" and lines[-1] == "    ok   cipher 9999 refused: EINVAL"
    st = output.failing_step(bad.steps)
    assert st is not None and st.name == "client"
    first = output.first_failure(st)
    assert first is not None and first.startswith("FAIL sha256")


def test_a_kunit_failure_does_not_hide_a_step_that_timed_out():
    """A KUnit case failed and a step hung: the verdict is the timeout (exit 5), as a matrix
    entry expecting `timeout` must see it."""
    rep = guest_report("kunit_fails")
    hung = dataclasses.replace(rep, steps=tuple(dataclasses.replace(s, timed_out=True, returncode=None)
                                                if s.name == "rmmod" else s for s in rep.steps))
    j = judge.judge(Evidence(report=hung), load_trail(REPO / "tests" / "fixtures" / "kunit_fails" / "trail.toml"),
                    RULES, plan_of(hung))
    assert any(c.failed for c in j.kunit)
    assert j.verdict is Verdict.TIMEOUT and j.reason.startswith("guest step 'rmmod' timed out")


def test_a_step_that_wrote_too_much_to_the_host_fails():
    rep = dataclasses.replace(guest_report("pass_bookworm"), complete=False)
    j = judge.judge(Evidence(report=rep, overflow="the guest wrote 1100 MiB into /harness", running="client"),
                    load_trail(REPO / "vm" / "trail.toml"), RULES, plan_of(rep))
    assert j.verdict is Verdict.FAIL and j.reason == ("the guest wrote 1100 MiB into /harness (guest step 'client' "
                                                      "was running)")


# ---- recording a trail that passes on the next boot -----------------------------------------------------

def _rec(seq: int, text: str, level: int = 6) -> KmsgRecord:
    return KmsgRecord(level=level, facility=0, seq=seq, usec=seq, text=text)


def test_what_changes_between_two_boots_becomes_a_pattern_that_both_match():
    a = [_rec(1, "verdicts: loaded"), _rec(2, "verdicts: loaded by insmod[139], buffer at ffff888003a1c000, 4242 "
                                                "jiffies after boot"), _rec(3, "cipher-gcm[203]: ready")]
    b = [_rec(7, "verdicts: loaded"), _rec(8, "verdicts: loaded by insmod[141], buffer at ffff888003b2d100, 4377 "
                                                "jiffies after boot"), _rec(9, "cipher-gcm[203]: ready")]
    said: list[str] = []
    text = record.trail_toml(a, "two boots", second=b, said=said)
    t = trail.parse_trail(tomllib.loads(text), "t")
    assert [e.source for e in t.expect][0] == "verdicts: loaded"
    assert trail.match(t, a).ok and trail.match(t, b).ok
    third = [_rec(1, "verdicts: loaded"), _rec(2, "verdicts: loaded by insmod[777], buffer at ffff888012345678, 99 "
                                                  "jiffies after boot"), _rec(3, "cipher-gcm[9]: ready")]
    assert trail.match(t, third).ok, "a third boot: pid, address and jiffies differ again"
    assert trail.match(t, [_rec(1, "verdicts: loaded"), _rec(2, "verdicts: loaded by rmmod[1], buffer at x, 1 "
                                                              "jiffies after boot"), third[2]]).ok is False
    assert any("'139' / '141'" in s for s in said) and any("a task's pid" in s for s in said)


def test_a_record_seen_on_one_boot_only_is_left_out_and_said_so():
    said: list[str] = []
    text = record.trail_toml([_rec(1, "a"), _rec(2, "flaky"), _rec(3, "b")], "x", second=[_rec(5, "a"), _rec(6, "b")],
                             said=said)
    assert text.count("\n[[expect]]\n") == 2 and said == ["left out, seen on one boot only: <6> 'flaky'"]


def test_a_trail_edited_by_hand_is_told_from_one_recorded():
    text = record.trail_toml([_rec(1, "a")], "x")
    assert not record.edited_by_hand(text)
    assert record.edited_by_hand(text.replace('text = "a"', 'text = "b"'))
    assert record.edited_by_hand((VERDICTS / "trail.toml").read_text())  # never recorded


def test_plan_steps_carry_their_kind_and_expectation():
    p = PlanStep("x", ("true",), expect_rc=3, kind=contract.STEP, env=(("A", "1"),), cwd="/tmp")
    back = contract.Plan.from_json(contract.Plan(steps=(p,), run_id="r").to_json()).steps[0]
    assert back == p


def test_a_diff_that_failed_a_step_is_quoted_at_its_first_changed_line():
    diff = ("--- expected.txt\n+++ out\n@@ -48,7 +48,7 @@\n Reading at offset 47\n Reading at offset 48\n"
            " Reading at offset 49\n-Reading at offset 50, returned 12586269025.\n"
            "+Reading at offset 50, returned 12586269026.\n Reading at offset 51\n")
    st = contract.StepReport("client", ("sh",), returncode=1, stdout=diff)
    assert output.first_failure(st) == "-Reading at offset 50, returned 12586269025."
    lower = contract.StepReport("openssl", ("sh",), returncode=1,
                                stdout="ok 1\nfail for datalen 16, MACs do not match!\ntest_crypto() failed for 16\n")
    assert output.first_failure(lower) == "fail for datalen 16, MACs do not match!"

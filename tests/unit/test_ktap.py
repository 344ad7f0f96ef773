"""KTAP from real KUnit runs (tests/data/kunit_*, see its README), and the same records changed in
the ways KTAP allows or a dying kernel causes."""

import dataclasses
import re

import pytest

from harness import contract
from harness.model import Verdict
from harness.verdict import judge, kmsg, ktap, splat

from conftest import DATA, REPO, RULES, guest_report, load_trail, plan_of


def step_texts(name: str, step: str) -> list[str]:
    """The kernel records' texts of one step of a recorded run (its window)."""
    rep = guest_report(name)
    st = next(s for s in rep.steps if s.name == step)
    before, after = st.kmsg_seq_before, st.kmsg_seq_after
    assert before is not None, f"{name}: step {step!r} recorded no start"
    return [r.text for r in kmsg.parse_records(rep.kmsg)
            if r.facility == 0 and r.seq > before and (after is None or r.seq <= after)]


def crash_texts() -> list[str]:
    """kunit_crash: the guest died in the kunit step, so its records run to the last one streamed."""
    rep = guest_report("kunit_crash")
    start = next(s for s in rep.steps if s.name == "insmod").kmsg_seq_after
    assert start is not None, "kunit_crash: the insmod step recorded no end"
    return [r.text for r in kmsg.parse_records(rep.kmsg) if r.facility == 0 and r.seq > start]


PASS = step_texts("kunit_pass", "kunit netlink_kernel_test")
FAILS = step_texts("kunit_fails", "kunit kunit_target_test")


def declared(source: str) -> list[str]:
    return re.findall(r"KUNIT_CASE(?:_PARAM)?\((\w+)", (REPO / source).read_text())


def statuses(texts) -> list[tuple[str, str]]:
    return [(c.full_name, c.status) for c in ktap.cases(ktap.parse(texts))]


def test_the_netlink_suite_case_by_case():
    tests = ktap.parse(PASS)
    assert [(t.name, t.status, t.number) for t in tests] == [("netlink_kernel", ktap.PASS, 1)]
    suite = tests[0]
    assert [c.name for c in suite.children] == declared("kernel_src/netlink_kernel_test.c")
    assert [c.number for c in suite.children] == list(range(1, len(suite.children) + 1))
    assert suite.missing == 0 and not suite.failed and suite.diagnostics == []
    found = ktap.cases(tests)
    assert {c.suite for c in found} == {"netlink_kernel"} and {c.status for c in found} == {ktap.PASS}
    assert ktap.summary(found) == f"{len(found)} passed"


def test_failing_skipped_and_parameterized_cases_with_their_diagnostics():
    found = {c.full_name: c for c in ktap.cases(ktap.parse(FAILS))}
    assert list(found) == ["kunit_target.adds_small_numbers", "kunit_target.adds_three",
                           "kunit_target.needs_hardware", "kunit_target.adds_each.0+0",
                           "kunit_target.adds_each.1+2", "kunit_target.adds_each.4+3"]
    assert found["kunit_target.adds_small_numbers"].diagnostics == ()  # "# module:" is the suite's attribute
    three = found["kunit_target.adds_three"]
    assert three.status == ktap.FAIL and three.failed
    assert three.diagnostics[0].startswith("# adds_three: EXPECTATION FAILED at ")
    assert three.diagnostics[0].endswith("kunit_target_test.c:19")
    # the rest of the same record (\x0a in /dev/kmsg), the message last, whatever its indentation
    assert three.diagnostics[1:] == ("Expected kunit_target_add(2, 3) == 5, but", "kunit_target_add(2, 3) == 6 (0x6)",
                                     "2 + 3 from the module")
    skip = found["kunit_target.needs_hardware"]
    assert (skip.status, skip.reason, skip.failed) == (ktap.SKIP, "no such device in a VM", False)
    # a parameter's failure is printed at its parent's depth, before the parameter's result
    param = found["kunit_target.adds_each.4+3"]
    assert param.status == ktap.FAIL and param.diagnostics[0].startswith("# adds_each: EXPECTATION FAILED")
    assert param.diagnostics[-1] == "s->want == 7 (0x7)"
    assert found["kunit_target.adds_each.1+2"].diagnostics == ()
    assert ktap.summary(list(found.values())) == "3 passed, 2 failed, 1 skipped"
    top = ktap.parse(FAILS)
    assert [(t.name, t.status) for t in top] == [("kunit_target", ktap.FAIL)]
    assert [(c.name, c.status) for c in top[0].children] == [
        ("adds_small_numbers", ktap.PASS), ("adds_three", ktap.FAIL), ("needs_hardware", ktap.SKIP),
        ("adds_each", ktap.FAIL)]
    assert [c.name for c in top[0].children[3].children] == ["0+0", "1+2", "4+3"]


def test_a_crash_in_the_middle_keeps_what_ran_and_says_what_never_came():
    texts = crash_texts()
    tests = ktap.parse(texts)
    assert len(tests) == 1
    suite = tests[0]
    assert (suite.name, suite.status, suite.missing) == ("kunit_crash", ktap.CRASHED, 2)
    assert [(c.name, c.status) for c in suite.children] == [("adds_before_the_crash", ktap.PASS)]
    assert suite.diagnostics[0] == "# dereferences_null: about to write through a NULL pointer"
    assert "BUG: kernel NULL pointer dereference, address: 0000000000000000" in suite.diagnostics
    found = ktap.cases(tests)
    assert [(c.full_name, c.status, c.reason) for c in found] == [
        ("kunit_crash.adds_before_the_crash", ktap.PASS, ""),
        ("kunit_crash", ktap.CRASHED, "2 of its results never came")]
    assert ktap.summary(found) == "1 passed, 1 crashed"


def test_every_cut_of_a_real_run_parses_and_never_turns_a_failure_into_a_pass():
    """The kernel can die after any record: what was reported before stays as it was, and a case
    that failed is never listed as passed."""
    whole = dict(statuses(FAILS))
    for n in range(len(FAILS) + 1):
        cut = statuses(FAILS[:n])
        for name, status in cut:
            if status == ktap.PASS:
                assert whole.get(name) == ktap.PASS, (n, name)
        if n < len(FAILS) - 1 and "1..1" in FAILS[:n]:  # the document's plan came, its last result did not
            assert any(s == ktap.CRASHED for _, s in cut), (n, cut)


def test_records_before_the_first_version_line_and_of_other_sources_do_not_count():
    noise = ["ok 1 not ktap yet", "kunit_target: loaded", "    not ok 7 neither"]
    assert statuses(noise + FAILS) == statuses(FAILS)
    # the module's own printk between the results: a diagnostic of the case that was running
    mixed = FAILS[:7] + ["kunit_target: called with 1 and 1"] + FAILS[7:]
    assert statuses(mixed) == statuses(FAILS)
    found = {c.full_name: c for c in ktap.cases(ktap.parse(mixed))}
    assert "kunit_target: called with 1 and 1" in found["kunit_target.adds_three"].diagnostics
    assert ktap.parse([]) == [] and ktap.parse(noise) == []


@pytest.mark.parametrize("header", ["KTAP version 2", "TAP version 14", "TAP version 13"])
def test_other_versions_of_the_header(header):
    texts = [header if t.strip() == "KTAP version 1" and not t.startswith(" ") else t for t in FAILS]
    assert statuses(texts) == statuses(FAILS)


def test_the_indentation_is_what_nests_not_its_width():
    two = [re.sub(r"^( +)", lambda m: " " * (len(m.group(1)) // 2), t) for t in FAILS]
    assert statuses(two) == statuses(FAILS)
    tabs = [re.sub(r"^( +)", lambda m: "\t" * (len(m.group(1)) // 4), t) for t in FAILS]
    assert statuses(tabs) == statuses(FAILS)


def test_todo_and_skip_directives_and_a_result_without_a_name():
    texts = [t.replace("not ok 2 adds_three", "not ok 2 adds_three # TODO the bug is known") for t in FAILS]
    found = {c.full_name: c for c in ktap.cases(ktap.parse(texts))}
    todo = found["kunit_target.adds_three"]
    assert (todo.status, todo.reason, todo.failed) == (ktap.TODO, "the bug is known", False)
    lower = [t.replace("# SKIP no such", "# skip no such") for t in FAILS]
    assert dict(statuses(lower))["kunit_target.needs_hardware"] == ktap.SKIP
    dashed = [t.replace("ok 1 adds_small_numbers", "ok 1 - adds_small_numbers") for t in FAILS]
    assert statuses(dashed) == statuses(FAILS)
    unnamed = [t.replace("ok 1 adds_small_numbers", "ok 1") for t in FAILS]
    assert statuses(unnamed)[0] == ("kunit_target.test 1", ktap.PASS)


def test_a_plan_that_promised_more_than_came():
    # the suite's result line came, but one case's never did: it counts as a failure of the suite
    short = [t for t in FAILS if t.strip() != "ok 3 needs_hardware # SKIP no such device in a VM"]
    top = ktap.parse(short)
    assert top[0].missing == 1 and top[0].failed
    # a module whose document's plan promised two suites, and one came
    two = ["1..2" if t == "1..1" else t for t in FAILS]
    tests = ktap.parse(two)
    assert tests[-1].status == ktap.CRASHED and tests[-1].name == "1 test(s) of the plan"
    assert ("1 test(s) of the plan", ktap.CRASHED) in statuses(two)
    passing = ["1..2" if t == "1..1" else t for t in PASS]
    found = ktap.cases(ktap.parse(passing))
    assert found[-1].failed and found[-1].diagnostics == ("their results never came",)


def as_kunit(rep, names):
    """The recorded report's plan with exactly the steps ``names`` KUnit steps."""
    return tuple(dataclasses.replace(p, kind=contract.KUNIT if p.name in names else
                                     (contract.STEP if p.kind == contract.KUNIT else p.kind)) for p in plan_of(rep))


def test_a_suite_that_failed_with_every_case_passing_is_a_failing_case_itself():
    texts = [t.replace("ok 1 netlink_kernel", "not ok 1 netlink_kernel") if t.startswith("ok 1") else t for t in PASS]
    found = ktap.cases(ktap.parse(texts))
    assert found[-1].full_name == "netlink_kernel" and found[-1].status == ktap.FAIL
    assert found[-1].reason == "it failed, though none of its cases did"


def test_the_judge_lists_each_case_and_fails_the_run_on_a_failing_one():
    j = judge.judge(judge.Evidence(report=guest_report("kunit_pass")),
                    load_trail(REPO / "vm" / "trail.toml"), RULES, plan_of(guest_report("kunit_pass")))
    assert j.verdict is Verdict.PASS, j.reason
    assert [c.name for c in j.kunit] == declared("kernel_src/netlink_kernel_test.c")
    fails = guest_report("kunit_fails")
    f = judge.judge(judge.Evidence(report=fails),
                    load_trail(REPO / "tests" / "fixtures" / "kunit_fails" / "trail.toml"), RULES, plan_of(fails))
    assert f.verdict is Verdict.FAIL
    lines = f.reason.split("\n")
    assert lines[0] == "KUnit: 2 of 6 cases failed (3 passed, 2 failed, 1 skipped):"
    assert lines[1] == "  fail kunit_target.adds_three"
    assert lines[2].startswith("    # adds_three: EXPECTATION FAILED at ") and lines[5] == "    2 + 3 from the module"
    assert lines[6] == "  fail kunit_target.adds_each.4+3"
    # with the test module's insmod a plain step of the plan, the same run is judged on its steps and
    # trail: a pass (the judge goes by a step's kind, not its name)
    plain = tuple(dataclasses.replace(p, kind=contract.STEP) for p in plan_of(fails))
    assert judge.judge(judge.Evidence(report=fails),
                       load_trail(REPO / "tests" / "fixtures" / "kunit_fails" / "trail.toml"), RULES, plain
                       ).verdict is Verdict.PASS


def test_a_test_module_that_printed_no_ktap_is_a_crashed_case():
    rep = guest_report("kunit_pass")
    # the same run, with the KTAP taken out of its records
    kept = tuple(r for r in rep.kmsg if "KTAP" not in r and " ok " not in r and "# Subtest" not in r)
    j = judge.judge(judge.Evidence(report=dataclasses.replace(rep, kmsg=kept)), None, RULES, plan_of(rep))
    assert [(c.suite, c.name, c.status) for c in j.kunit] == [("netlink_kernel_test", "(no KTAP)", ktap.CRASHED)]
    assert j.verdict is Verdict.FAIL and "printed no KTAP" in j.reason


def test_the_judge_reads_the_ktap_of_the_step_the_guest_died_in():
    rep = guest_report("kunit_crash")
    console = (DATA / "kunit_crash" / "console.log").read_text()
    ev = judge.Evidence(report=rep, console=console, running="kunit kunit_crash_test")
    j = judge.judge(ev, None, RULES, plan_of(rep))
    assert j.verdict is Verdict.CRASH and "kunit kunit_crash_test" in j.reason
    assert [(c.full_name, c.status) for c in j.kunit] == [("kunit_crash.adds_before_the_crash", ktap.PASS),
                                                          ("kunit_crash", ktap.CRASHED)]


def test_ktap_the_runner_never_sent_is_read_from_the_console():
    """kunit_crash_unsent (a CI run): the guest panicked while its runner's stream was four records
    behind, so the records stop at `# module:` and the plan, the passing case and the Oops are only
    on the console."""
    rep = guest_report("kunit_crash_unsent")
    assert not any("adds_before_the_crash" in r for r in rep.kmsg)
    console = (DATA / "kunit_crash_unsent" / "console.log").read_text()
    ev = judge.Evidence(report=rep, console=console, running="kunit kunit_crash_test")
    j = judge.judge(ev, None, RULES, plan_of(rep))
    assert j.verdict is Verdict.CRASH
    assert [(c.full_name, c.status, c.reason) for c in j.kunit] == [
        ("kunit_crash.adds_before_the_crash", ktap.PASS, ""),
        ("kunit_crash", ktap.CRASHED, "2 of its results never came")]
    assert any("NULL pointer dereference" in d for d in j.kunit[-1].diagnostics)
    # without the console, all that is known is that the suite began
    alone = judge.judge(dataclasses.replace(ev, console=""), None, RULES, plan_of(rep))
    assert [(c.full_name, c.status) for c in alone.kunit] == [("kunit_crash", ktap.CRASHED)]


def test_a_step_that_ended_takes_nothing_from_the_console():
    rep = guest_report("kunit_fails")
    console = (DATA / "kunit_crash_unsent" / "console.log").read_text()
    records = list(kmsg.parse_records(rep.kmsg))
    plan = as_kunit(rep, ("kunit kunit_target_test",))
    assert judge.kunit_cases(rep, records, plan, console) == judge.kunit_cases(rep, records, plan)


def test_console_after_starts_past_the_last_record_and_its_continuation_lines():
    console = "\n".join([
        "[    1.000000] first",
        "[    2.000000] two lines,",
        "[    2.000000]  the second",
        "no stamp: not a kernel record",
        "[    2.000001][  T106] after, with a caller",
        "[   10.500000] last"])
    assert splat.console_after(console, 2_000_000) == ["after, with a caller", "last"]
    assert splat.console_after(console, 999_999) == []
    assert splat.console_after(console, 10_500_000) == []
    assert splat.console_after(console, 1_000_000) == ["two lines,", " the second", "after, with a caller", "last"]


def test_case_as_json():
    from harness import resultjson

    c = ktap.Case("s", "n", ktap.FAIL, "why", ("d1", "d2"))
    assert resultjson.plain(c) == {"suite": "s", "name": "n", "status": "fail", "reason": "why",
                                    "diagnostics": ["d1", "d2"]}
    assert ktap.Case("", "n", ktap.PASS).full_name == "n" and not ktap.Case("", "n", ktap.TODO).failed


def raw(seq: int, text: str, prio: int = 6) -> str:
    """A /dev/kmsg record line as the runner sends it (for records added to a real run's)."""
    return f"{prio},{seq},{seq * 1000},-;{text}"


def test_only_the_records_of_the_test_modules_own_step_are_its_ktap():
    rep = guest_report("kunit_fails")
    st = next(s for s in rep.steps if s.name == "kunit kunit_target_test")
    seqs = {r.text: r.seq for r in kmsg.parse_records(rep.kmsg) if r.facility == 0}
    top = seqs["not ok 1 kunit_target"]
    names = ("kunit kunit_target_test",)

    def cases_with(**window):
        steps = tuple(dataclasses.replace(s, **window) if s.name == st.name else s for s in rep.steps)
        return [(c.full_name, c.status) for c in judge.kunit_cases(dataclasses.replace(rep, steps=steps),
                                                                     list(kmsg.parse_records(rep.kmsg)),
                                                                     as_kunit(rep, names))]

    whole = cases_with()
    assert len(whole) == 6
    # the window ends with its last record, included: here the document's own result line
    assert cases_with(kmsg_seq_after=top) == whole
    assert cases_with(kmsg_seq_after=top - 1)[-1] == ("kunit_target", ktap.CRASHED)
    # ... and starts after the record it names: here the last version line, so no KTAP begins
    last_version = max(seq for text, seq in seqs.items() if text.strip() == "KTAP version 1")
    assert cases_with(kmsg_seq_before=last_version) == [("kunit_target_test.(no KTAP)", ktap.CRASHED)]
    # built-in suites print KTAP at boot: before the step, not the module's
    boot = (raw(5, "KTAP version 1"), raw(6, "1..1"), raw(7, "not ok 1 builtin_suite"))
    booted = dataclasses.replace(rep, kmsg=boot + rep.kmsg)
    got = judge.kunit_cases(booted, list(kmsg.parse_records(booted.kmsg)), as_kunit(booted, names))
    assert [c.full_name for c in got] == [c for c, _ in whole]


def test_every_kunit_step_is_read_in_order_and_one_without_ktap_says_so():
    rep = guest_report("kunit_fails")
    records = list(kmsg.parse_records(rep.kmsg))
    got = judge.kunit_cases(rep, records, as_kunit(rep, ("insmod", "kunit kunit_target_test")))
    assert [(c.full_name, c.status) for c in got][:2] == [("insmod.(no KTAP)", ktap.CRASHED),
                                                         ("kunit_target.adds_small_numbers", ktap.PASS)]
    assert got[0].reason.startswith("loaded, but its suites printed no KTAP: is it a KUnit test module")
    assert len(got) == 7


def test_the_step_the_guest_died_in_starts_where_the_last_ended_step_did():
    rep = guest_report("kunit_crash")
    insmod_end = next(s for s in rep.steps if s.name == "insmod").kmsg_seq_after
    assert insmod_end is not None
    # KTAP printed before that (built-in suites at boot) is not the dying step's
    early = (raw(3, "KTAP version 1"), raw(4, "1..1"), raw(5, "ok 1 builtin_suite"))
    assert all(int(r.split(",")[1]) < insmod_end for r in early)
    booted = dataclasses.replace(rep, kmsg=early + rep.kmsg)
    got = judge.kunit_cases(booted, list(kmsg.parse_records(booted.kmsg)),
                            as_kunit(booted, ("kunit kunit_crash_test",)))
    assert [(c.full_name, c.status) for c in got] == [("kunit_crash.adds_before_the_crash", ktap.PASS),
                                                      ("kunit_crash", ktap.CRASHED)]


def kunit_failure(cases: list[ktap.Case]) -> tuple[Verdict, str]:
    """What judge makes of cases of which some did not pass (the test fails if it finds nothing)."""
    failure = judge._kunit_failure(cases)
    assert failure is not None, cases
    return failure


def test_a_long_list_of_failures_is_cut_at_ten_cases_of_twelve_lines():
    many = [ktap.Case("s", f"c{i}", ktap.FAIL, "", tuple(f"d{i}.{k}" for k in range(14))) for i in range(12)]
    verdict, reason = kunit_failure(many + [ktap.Case("s", "ok", ktap.PASS)])
    lines = reason.split("\n")
    assert verdict is Verdict.FAIL and lines[0] == "KUnit: 12 of 13 cases failed (1 passed, 12 failed):"
    assert lines[1] == "  fail s.c0" and lines[2:14] == [f"    d0.{k}" for k in range(2, 14)]
    assert sum(1 for ln in lines if ln.startswith("  fail ")) == 10
    assert lines[-1] == "  ... and 2 more (result.json's kunit)"
    ten = kunit_failure(many[:10])[1].split("\n")
    assert not ten[-1].startswith("  ...") and judge._kunit_failure([ktap.Case("s", "ok", ktap.PASS)]) is None
    crashed = kunit_failure([ktap.Case("s", "x", ktap.CRASHED, "why")])[1].split("\n")
    assert crashed[1] == "  crashed s.x: why"


def test_trailing_blanks_and_words_of_the_summary():
    padded = [t + "  " for t in FAILS]
    assert statuses(padded) == statuses(FAILS)
    todo = ktap.Case("s", "t", ktap.TODO)
    assert ktap.summary([todo, todo]) == "2 todo" and ktap.summary([]) == "no test cases"


def test_a_suite_cut_short_right_after_its_header_or_its_version_line():
    header = FAILS[:4]  # the document's version and plan, the suite's version and "# Subtest:"
    found = ktap.cases(ktap.parse(header))
    assert [(c.full_name, c.status) for c in found] == [("kunit_target", ktap.CRASHED)]
    only_version = FAILS[:3]
    tests = ktap.parse(only_version)
    assert [(t.name, t.status) for t in tests] == [("(unnamed)", ktap.CRASHED)]
    # a document with a suite header at its own top level and no result: the suite crashed
    flat = ["KTAP version 1", "# Subtest: lone", "1..2", "kunit_target: dying words"]
    lone = ktap.parse(flat)
    assert [(t.name, t.status, t.missing, t.diagnostics) for t in lone] == [
        ("lone", ktap.CRASHED, 2, ["kunit_target: dying words"])]


def test_results_nested_deeper_than_a_closing_tests_own_subtests_are_cut_short_ones():
    # a parameterized case's results, then its parent suite's result with no line for the case
    texts = [t for t in FAILS if t.strip() not in ("not ok 4 adds_each", "# adds_each: pass:2 fail:1 skip:0 total:3")]
    top = ktap.parse(texts)
    suite = top[0]
    assert [c.name for c in suite.children] == ["adds_small_numbers", "adds_three", "needs_hardware", "adds_each"]
    cut = suite.children[-1]
    assert (cut.status, [c.name for c in cut.children], cut.diagnostics) == (ktap.CRASHED, ["0+0", "1+2", "4+3"], [])
    assert cut.missing == 0 and suite.missing == 0


def test_results_numbered_ten_and_above_are_read():
    """tests/data/kunit_many: a real suite of twelve cases, the eleventh failing. Results 10, 11 and 12
    are read like the others (a parser reading one digit lost them: the suite became "3 of its
    results never came" and the eleventh's failure went unnamed)."""
    rep = guest_report("kunit_many")
    j = judge.judge(judge.Evidence(report=rep), load_trail(REPO / "tests" / "fixtures" / "kunit_many" / "trail.toml"),
                    RULES, plan_of(rep))
    assert [c.name for c in j.kunit] == [f"case_{i}" for i in range(1, 13)]
    assert [c.status for c in j.kunit].count(ktap.PASS) == 11
    failed = [c for c in j.kunit if c.failed]
    assert [(c.name, c.status) for c in failed] == [("case_11", ktap.FAIL)]
    assert j.verdict is Verdict.FAIL and j.reason.splitlines()[:2] == [
        "KUnit: 1 of 12 cases failed (11 passed, 1 failed):", "  fail kunit_many.case_11"]
    assert "the eleventh case fails on purpose" in j.reason

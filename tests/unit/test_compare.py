"""A matrix against a baseline and against the failures it expects: exactly what changed, and an exit
code for what is new only."""

import json

import pytest

from harness import matrix
from harness.errors import UsageError
from harness.verdict import compare
from harness.verdict.compare import Expected, Outcome

from conftest import DATA

PASS = {"verdict": "pass"}


def o(kernel, verdict="pass", **kw):
    return Outcome(kernel=kernel, verdict=verdict, **kw)


def statuses(rows):
    return {r.kernel: (r.status, r.counts) for r in rows}


def test_against_a_baseline_each_kernel_says_what_changed():
    old = [o("debian:bullseye"), o("debian:bookworm"), o("debian:sid", "fail", failed_phase="build"),
           o("debian:trixie", "crash", splat="BUG: x"), o("debian:buster")]
    new = [o("debian:bullseye"), o("debian:bookworm", "fail", failed_phase="vm", trail_problem="expected record #4"),
           o("debian:sid"), o("debian:trixie", "crash", splat="WARNING: y"), o("debian:experimental", "timeout")]
    rows = compare.compare(new, old)
    assert statuses(rows) == {
        "debian:bullseye": ("pass", False), "debian:bookworm": ("new failure", True), "debian:sid": ("fixed", False),
        "debian:trixie": ("still failing", False), "debian:experimental": ("new kernel", True),
        "debian:buster": ("gone", False)}
    by = {r.kernel: r for r in rows}
    assert by["debian:bookworm"].changes == ("verdict: pass -> fail", "phase: - -> vm",
                                             "trail: - -> expected record #4")
    assert by["debian:trixie"].changes == ("splat: BUG: x -> WARNING: y",)
    assert compare.exit_code(rows) == 5  # the new kernel's timeout is the worst of what is new


def test_what_failed_before_does_not_fail_the_matrix_again():
    rows = compare.compare([o("a", "crash"), o("b")], [o("a", "crash"), o("b")])
    assert compare.exit_code(rows) == 0


@pytest.mark.parametrize("new, status, counts", [
    (o("k", "fail", reason="the module does not build: strncpy"), "expected failure", False),
    (o("k"), "unexpected pass", False),
    (o("k", "fail", reason="printk trail mismatch"), "failed otherwise", True),  # the match does not hold
    (o("k", "crash", reason="the module does not build: strncpy"), "failed otherwise", True),
])
def test_an_expected_failure(new, status, counts):
    exp = {"k": Expected("k", "fail", "strncpy is gone in 7.x", match="does not build")}
    (row,) = compare.compare([new], None, exp)
    assert (row.status, row.counts) == (status, counts) and row.why == "strncpy is gone in 7.x"


def test_without_a_baseline_failures_count():
    rows = compare.compare([o("a"), o("b", "infra")])
    assert statuses(rows) == {"a": ("pass", False), "b": ("failing", True)} and compare.exit_code(rows) == 3


def test_the_markdown_lists_what_says_something():
    rows = compare.compare([o("a"), o("b", "fail", failed_phase="build")], [o("a"), o("b")])
    table = compare.markdown(rows)
    assert len(table) == 3 and "`b`" in table[2] and "**new failure**" in table[2] and "pass -> fail" in table[2]
    assert compare.markdown(compare.compare([o("a")], [o("a")])) == []


def test_outcomes_from_a_recorded_result_and_an_older_matrix_json():
    from harness.model import Verdict
    res = json.loads((DATA / "forged_bug" / "result.json").read_text())
    assert res["verdict"] == "pass"
    old = Outcome.from_json({"kernel": "debian:bookworm", "verdict": "fail", "reason": "x"})  # a v1 matrix.json
    assert old.failed_phase is None and old.verdict == Verdict.FAIL.value


@pytest.mark.parametrize("bad, words", [
    ({"verdict": "pass", "why": "x"}, r"kernel\[1\].expect.verdict: .*'fail', 'error'.* \(got 'pass'\)"),
    ({"verdict": "fail"}, r"kernel\[1\].expect.why: required, and missing"),
    ({"verdict": "fail", "why": "x", "match": "("}, r"kernel\[1\].expect.match: not a valid regular expression"),
    ({"verdict": "fail", "why": "x", "reason": "y"}, r"kernel\[1\].expect.reason: unknown key; known keys here: "
                                                     r"match, verdict, why"),
])
def test_bad_expectations_name_the_file_and_key(tmp_path, bad, words):
    body = ", ".join(f'{k} = "{v}"' for k, v in bad.items())
    (tmp_path / "k.toml").write_text(f'[[kernel]]\nspec = "debian:sid"\nexpect = {{ {body} }}\n')
    with pytest.raises(UsageError, match=words) as e:
        matrix.load_matrix(tmp_path / "k.toml")
    assert str(e.value).startswith(f"{tmp_path / 'k.toml'}:3: kernel[1].expect")


@pytest.mark.parametrize("before, now, status, counts", [
    ("pass", "flaky", "newly flaky", True),
    ("flaky", "flaky", "still flaky", False),
    ("flaky", "pass", "fixed", False),
    ("flaky", "fail", "new failure", True),
    ("fail", "flaky", "flaky, was failing", False),
    ("fail", "fail", "still failing", False),
    (None, "flaky", "flaky", True),  # no baseline: a flaky module is a finding
])
def test_flaky_is_a_state_of_its_own_against_the_baseline(before, now, status, counts):
    def outcome(state):
        return compare.Outcome("debian:bookworm", "pass" if state == "pass" else "crash", classification=state)
    old = [outcome(before)] if before else None
    [row] = compare.compare([outcome(now)], old)
    assert (row.status, row.counts) == (status, counts)
    if before and "flaky" in (before, now) and before != now:
        assert f"attempts: {before} -> {now}" in row.changes
    assert compare.exit_code([row]) == (4 if counts else 0)


def test_a_result_without_attempts_is_read_by_its_verdict():
    assert compare.Outcome.from_json({"kernel": "k", "verdict": "fail"}).state == "fail"
    assert compare.Outcome.from_json({"kernel": "k", "verdict": "pass", "classification": "bogus"}).state == "pass"

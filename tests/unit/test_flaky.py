"""Attempts: when another one runs, what they add up to, which one stands for the cell (verdict/flaky.py),
and the --repeat loop that keeps each attempt's evidence (harness/repeat.py) with a fake run."""

import json

import pytest

from harness import repeat
from harness.events import discard
from harness.model import Phase, RunResult, Verdict
from harness.phases import RunRequest
from harness.run import prepare_results, results_id
from harness.verdict import flaky


def att(*verdicts: str) -> list[flaky.Attempt]:
    return [flaky.Attempt(n=i + 1, verdict=v, counted=flaky.counts(Verdict(v))) for i, v in enumerate(verdicts)]


@pytest.mark.parametrize("verdicts, want", [
    (("pass", "pass", "pass"), "pass"),
    (("crash", "crash"), "fail"),
    (("pass", "crash", "pass"), "flaky"),
    (("timeout", "pass"), "flaky"),
    (("infra", "pass"), "pass"),  # the retried infra attempt does not count
    (("infra", "infra"), "fail"),  # nothing counted: not a pass
    (("fail", "infra"), "fail"),
])
def test_classification_is_over_the_attempts_that_count(verdicts, want):
    assert flaky.classify(att(*verdicts)) == want


@pytest.mark.parametrize("verdicts, repeat_, retry, more", [
    ((), 1, 0, True),
    (("pass",), 1, 1, False),
    (("crash",), 1, 5, False),  # a module's failure is never retried
    (("fail",), 3, 0, True),  # but --repeat runs the attempts asked for
    (("infra",), 1, 1, True),  # the retry
    (("infra", "infra"), 1, 1, False),  # no retry left
    (("infra", "pass", "infra"), 3, 1, False),  # one retry in all, not one per attempt
    (("infra",), 1, 0, False),
    (("pass", "error"), 5, 3, False),  # an error or an interrupt ends the series
    (("interrupted",), 5, 3, False),
    (("pass", "crash", "pass", "pass"), 5, 0, True),
    (("pass", "crash", "pass", "pass", "pass"), 5, 0, False),
])
def test_another_attempt_runs_only_when_asked_for_or_after_infra(verdicts, repeat_, retry, more):
    assert flaky.another(att(*verdicts), repeat_, retry) is more


@pytest.mark.parametrize("verdicts, index", [
    (("pass", "crash", "fail"), 1),  # the first failure that counted: its evidence is the finding
    (("pass", "pass"), 0),
    (("infra", "pass"), 1),
    (("pass", "infra"), 1),  # the series stopped on infra: it did not run what was asked
    (("infra",), 0),
])
def test_the_attempt_that_stands_for_the_cell(verdicts, index):
    assert flaky.representative(att(*verdicts)) == index


def test_describe_names_what_failed_and_what_did_not_count():
    a = att("pass", "crash", "infra", "pass", "crash")
    assert flaky.describe(a) == "flaky: 2 of 4 attempts failed (crash, crash); 1 not counted (infra)"
    two = [flaky.Attempt(1, "pass", machine="a"), flaky.Attempt(1, "fail", machine="b")]
    assert flaky.describe(two) == "flaky: 1 of 2 attempts failed (fail) on 2 machines"
    assert flaky.describe(att("infra", "pass")) == "pass in 1 attempt; 1 not counted (infra)"
    assert flaky.describe(att("infra")) == "no attempt that counts; 1 not counted (infra)"


@pytest.mark.parametrize("bad, says", [
    ("x", "must be an object"),
    ({"n": 0, "verdict": "pass"}, "positive integer"),
    ({"n": True, "verdict": "pass"}, "positive integer"),
    ({"n": 1, "verdict": "great"}, "unknown verdict"),
    ({"n": 1, "verdict": "pass", "seconds": "10"}, "seconds must be a number"),
    ({"n": 1, "verdict": "pass", "machine": 3}, "machine must be a string"),
    ({"n": 1, "verdict": "pass", "counted": "yes"}, "counted must be"),
    ({"n": 1, "verdict": "pass", "dir": "../../etc"}, "relative path inside"),
    ({"n": 1, "verdict": "pass", "dir": "/etc"}, "relative path inside"),
    ({"n": 1, "verdict": "pass", "dir": "javascript:alert(1)"}, "relative path inside"),
])
def test_a_malformed_attempt_is_named(bad, says):
    with pytest.raises(ValueError, match=says):
        flaky.from_json(bad)


def test_an_attempt_survives_its_json():
    a = flaky.Attempt(2, "crash", "WARNING: at x", 12.5, True, "host", "m1", "attempts/2", "2026-12-05T10:00:00")
    assert flaky.from_json(json.loads(json.dumps(a.to_json()))) == a


def fake_runs(verdicts: list[str]):
    """A stand-in for run.run: each call writes the evidence a run would and returns the next verdict."""
    calls: list[str] = []  # the verdicts given so far

    def once(req: RunRequest, sink) -> RunResult:
        out = req.results / results_id(req.kernel)
        prepare_results(out)
        v = verdicts[len(calls)]
        calls.append(v)
        (out / "console.log").write_text(f"attempt {len(calls)}: {v}\n")
        (out / "modules").mkdir()
        (out / "modules" / "m.ko").write_text("ko")
        return RunResult(kernel=req.kernel, verdict=Verdict(v), reason=f"{v} on attempt {len(calls)}\nmore",
                         harness_version="t", started_at="", seconds=1.0, phases=(Phase("vm", 1.0),))
    return once, calls


def test_repeat_keeps_every_attempt_and_shows_the_first_failure(tmp_path):
    once, calls = fake_runs(["pass", "crash", "infra", "pass"])
    req = RunRequest(kernel="debian:bookworm", results=tmp_path)
    stale = tmp_path / "debian-bookworm" / "attempts" / "9"
    stale.mkdir(parents=True)
    r = repeat.run_repeated(req, discard, repeat=3, retry_infra=1, once=once)
    assert calls == ["pass", "crash", "infra", "pass"]
    assert r.verdict is Verdict.CRASH and r.classification == "flaky" and r.machine
    assert [(a["n"], a["verdict"], a["counted"], a["dir"]) for a in r.attempts] == [
        (1, "pass", True, "attempts/1"), (2, "crash", True, "attempts/2"), (3, "infra", False, "attempts/3"),
        (4, "pass", True, "attempts/4")]
    cell = tmp_path / "debian-bookworm"
    assert not stale.exists()
    assert (cell / "console.log").read_text() == "attempt 2: crash\n"  # the finding's evidence at the top
    assert (cell / "modules" / "m.ko").is_file()
    for n in range(1, 5):
        assert (cell / "attempts" / str(n) / "console.log").read_text().startswith(f"attempt {n}:")
    doc = json.loads((cell / "result.json").read_text())
    assert doc["classification"] == "flaky" and len(doc["attempts"]) == 4 and doc["verdict"] == "crash"


def test_one_attempt_stays_where_a_run_puts_it(tmp_path):
    once, calls = fake_runs(["fail", "pass"])
    r = repeat.run_repeated(RunRequest(kernel="debian:sid", results=tmp_path), discard, once=once)
    assert calls == ["fail"] and r.classification == "fail"  # a module failure is not retried
    assert r.attempts == ({"n": 1, "verdict": "fail", "reason": "fail on attempt 1", "seconds": 1.0,
                           "counted": True, "machine": r.machine, "started_at": ""},)
    assert not (tmp_path / "debian-sid" / "attempts").exists()
    assert json.loads((tmp_path / "debian-sid" / "result.json").read_text())["attempts"] == list(r.attempts)


@pytest.mark.parametrize("argv, says", [
    (["run", "--repeat", "0"], "give at least 1"),
    (["matrix", "--repeat", "two"], "not a whole number"),
    (["run", "--retry-infra", "-1"], "give at least 0"),
])
def test_bad_attempt_counts_are_usage_errors(argv, says, capsys):
    from harness import cli

    assert cli.main(argv) == 2
    assert says in capsys.readouterr().err

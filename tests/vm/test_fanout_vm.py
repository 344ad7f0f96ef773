"""Boots real VMs: --repeat on a module that crashes about one time in three (flaky) and on the project's
own module (pass), and harness report merging the results of two machines, each with its own cache."""

import json
import re

import pytest

from harness import cli

from conftest import REPO

pytestmark = pytest.mark.vm

FLAKY = REPO / "tests" / "fixtures" / "flaky_crash"


def result(results, kernel_dir="debian-bookworm") -> dict:
    return json.loads((results / kernel_dir / "result.json").read_text())


def check_attempts_agree_with_their_rolls(results) -> dict:
    """Each attempt's verdict is what its own records say it rolled: 0 crashed with the fixture's WARNING,
    1 and 2 passed. A round of five attempts, each one's evidence under attempts/N/."""
    res = result(results)
    assert len(res["attempts"]) == 5 and all(a["counted"] for a in res["attempts"]), res["attempts"]
    for a in res["attempts"]:
        own = json.loads((results / "debian-bookworm" / a["dir"] / "result.json").read_text())
        rolled = next(int(m.group(1)) for r in own["kmsg"] if (m := re.fullmatch(r"flaky_crash: init, rolled (\d)",
                                                                                 r["text"])))
        assert own["verdict"] == a["verdict"] == ("crash" if rolled == 0 else "pass"), (rolled, a)
        if rolled == 0:
            assert own["splats"][0]["text"].startswith("WARNING:") and "flaky_crash_init" in own["splats"][0]["text"]
    verdicts = {a["verdict"] for a in res["attempts"]}
    assert res["classification"] == ("flaky" if verdicts == {"pass", "crash"} else verdicts.pop().replace(
        "crash", "fail"))
    return res


def test_a_module_that_crashes_one_time_in_three_is_flaky_over_five_attempts(own_tmp, capsys):
    """Five attempts are all alike with odds 1 in 7.3 ((2/3)^5 + (1/3)^5); a round that happens to be is
    checked like the others, and another round runs (three rounds all alike: 1 in 390)."""
    for round_ in range(3):
        results = own_tmp / f"round{round_}"
        code = cli.main(["run", "--project", str(FLAKY), "--repeat", "5", "--results", str(results)])
        res = check_attempts_agree_with_their_rolls(results)
        if res["classification"] == "flaky":
            break
    assert res["classification"] == "flaky", "five attempts alike in three rounds: is the roll still random?"
    assert code == 4 and res["verdict"] == "crash"
    first_crash = next(a for a in res["attempts"] if a["verdict"] == "crash")
    assert res["started_at"] == first_crash["started_at"]  # the top holds the first crash's evidence
    console = (results / "debian-bookworm" / "console.log").read_text()
    assert console == (results / "debian-bookworm" / first_crash["dir"] / "console.log").read_text()
    assert "flaky: " in capsys.readouterr().err
    summary_code = cli.main(["report", str(results), "--results", str(own_tmp / "report"), "--project", str(FLAKY)])
    md = (own_tmp / "report" / "summary.md").read_text()
    assert summary_code == 4 and "**flaky** (crash)" in md and "attempts failed (crash" in md
    page = (own_tmp / "report" / "index.html").read_text()
    assert page.count('href="debian-bookworm/attempts/') == 5


def test_the_projects_module_passes_five_times_out_of_five(own_tmp, monkeypatch):
    monkeypatch.chdir(REPO)
    code = cli.main(["run", "--repeat", "5", "--results", str(own_tmp)])
    res = result(own_tmp)
    assert code == 0 and res["classification"] == "pass", res["attempts"]
    assert [a["verdict"] for a in res["attempts"]] == ["pass"] * 5
    assert len({a["started_at"] for a in res["attempts"]}) == 5  # five boots, not one result five times


def test_report_merges_two_machines_each_with_its_own_cache(own_tmp, monkeypatch, host_cache):
    """Machine 1 uses this machine's cache; machine 2 starts from an empty one (it makes its own trixie
    root). harness report reads both results directories into one report holding both cells."""
    monkeypatch.chdir(REPO)
    m1, m2 = own_tmp / "m1", own_tmp / "m2"
    assert cli.main(["run", "--kernel", "debian:bookworm", "--results", str(m1)]) == 0
    monkeypatch.setenv("HARNESS_CACHE", str(own_tmp / "cache2"))
    assert cli.main(["run", "--kernel", "debian:trixie", "--results", str(m2)]) == 0
    assert any((own_tmp / "cache2" / "roots").glob("debian-trixie-*"))
    code = cli.main(["report", str(m1), str(m2), "--results", str(own_tmp / "report"),
                     "--history", str(own_tmp / "history")])
    out = own_tmp / "report"
    doc = json.loads((out / "matrix.json").read_text())
    assert code == 0 and [k["kernel"] for k in doc["kernels"]] == ["debian:bookworm", "debian:trixie"]
    assert doc["sources"] == ["m1", "m2"] and [k["verdict"] for k in doc["kernels"]] == ["pass", "pass"]
    assert {k["kernel_release"][:4] for k in doc["kernels"]} == {"6.1.", "6.12"}
    for kid in ("debian-bookworm", "debian-trixie"):
        assert (out / kid / "console.log").stat().st_size > 1000
    md, page = (out / "summary.md").read_text(), (out / "index.html").read_text()
    assert "`debian:bookworm`" in md and "`debian:trixie`" in md
    assert 'href="debian-bookworm/console.log"' in page and 'href="debian-trixie/console.log"' in page
    assert len(list((own_tmp / "history" / "runs").glob("*.json"))) == 1

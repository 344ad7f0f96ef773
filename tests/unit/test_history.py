"""Each cell's history (verdict/history.py): the streak of failing runs, the baseline, bad entries."""

import pytest

from harness import history_store
from harness.verdict import compare, history


def entry(commit: str, day: int, ok: bool, **states: str) -> history.Entry:
    outcomes = tuple(compare.Outcome(kernel=k.replace("_", ":"), verdict="pass" if s == "pass" else "crash",
                                     classification=s) for k, s in states.items())
    return history.Entry(commit, f"2026-12-{day:02d}T10:00:00+00:00", "main", f"https://ci/{commit}", ok, outcomes)


def test_the_first_failing_run_of_the_current_streak_is_named():
    past = [entry("a", 1, True, debian_bookworm="pass"), entry("b", 2, False, debian_bookworm="fail"),
            entry("c", 3, True, debian_bookworm="pass"), entry("d", 4, False, debian_bookworm="flaky")]
    now = entry("e", 5, False, debian_bookworm="fail")
    h = history.cell("debian:bookworm", list(reversed(past)), now)  # order of the files does not matter
    assert [p.commit for p in h.points] == ["a", "b", "c", "d", "e"]
    assert h.since is not None and h.since.commit == "d" and not h.since_the_start
    assert history.sentence(h) == "failing since 2026-12-04 (first failing: commit d; 5 runs in the history)"
    base = history.baseline(past)
    assert base is not None and base.commit == "c"


def test_a_cell_failing_since_the_oldest_run_kept_says_at_least():
    h = history.cell("debian:sid", [entry("a", 1, False, debian_sid="fail")], entry("b", 2, False, debian_sid="fail"))
    assert history.sentence(h).startswith("failing since at least 2026-12-01")
    first = history.cell("debian:sid", [], entry("b", 2, False, debian_sid="fail"))
    assert history.sentence(first) == "failing since 2026-12-02 (first failing: this run; 1 run in the history)"


def test_a_run_without_the_cell_ends_a_streak_and_shows_as_none():
    h = history.cell("debian:sid", [entry("a", 1, True, debian_sid="fail"), entry("b", 2, True)],
                     entry("c", 3, False, debian_sid="fail"))
    assert [p.state for p in h.points] == ["fail", "-", "fail"] and h.since is not None and h.since.commit == "c"
    assert 'class="hist none"' in history.html(h) and 'href="https://ci/a"' in history.html(h)


def test_no_successful_run_is_no_baseline():
    assert history.baseline([entry("a", 1, False)]) is None


@pytest.mark.parametrize("doc, says", [
    ({"kernels": []}, "run object"),
    ({"run": {"commit": "a", "date": "monday", "ok": True}, "kernels": []}, "ISO 8601"),
    ({"run": {"commit": "", "date": "2026-12-01T00:00:00", "ok": True}, "kernels": []}, "non-empty"),
    ({"run": {"commit": "a", "date": "2026-12-01T00:00:00", "ok": "yes"}, "kernels": []}, "run.ok"),
    ({"run": {"commit": "a", "date": "2026-12-01T00:00:00", "ok": True}, "kernels": {}}, "kernels must be a list"),
    ({"run": {"commit": "a", "date": "2026-12-01T00:00:00", "ok": True}, "kernels": [{"verdict": "pass"}]},
     "malformed"),
    ({"run": {"commit": "a", "date": "2026-12-01T00:00:00", "ok": True}, "kernels": [{"kernel": 1, "verdict": 2}]},
     "strings"),
])
def test_a_bad_entry_is_named(doc, says):
    with pytest.raises(ValueError, match=says):
        history.entry_from_json(doc)


def test_the_store_keeps_entries_by_date_and_commit_and_reports_bad_files(tmp_path, monkeypatch):
    store = tmp_path / "h"
    history_store.prepare(store)
    for day in (3, 1, 2):
        e = entry(f"c{day}", day, True)
        history_store.add(store, '{"run": %s, "kernels": []}' % str(history.run_meta(e)).replace("'", '"')
                          .replace("True", "true"), e)
    (store / "runs" / "20260101T000000-junk.json").write_text("{")
    entries, problems = history_store.load(store)
    assert [e.commit for e in entries] == ["c1", "c2", "c3"]
    assert len(problems) == 1 and "20260101T000000-junk.json" in problems[0] and "not JSON" in problems[0]
    monkeypatch.setattr(history_store, "KEEP", 2)
    e = entry("c4", 4, True)
    history_store.add(store, '{"run": {"commit": "c4", "date": "%s", "ok": true}, "kernels": []}' % e.date, e)
    assert sorted(p.name for p in (store / "runs").iterdir()) == ["20261203T100000-c3.json",
                                                                 "20261204T100000-c4.json"]

import dataclasses
from pathlib import Path

import pytest

from harness.errors import UsageError
from harness.verdict import judge, kmsg, trail
from harness.verdict.kmsg import parse_records

from conftest import REPO, guest_report, load_trail

TRAIL = load_trail(REPO / "vm" / "trail.toml")


def recorded_window():
    g = guest_report("pass_bookworm")
    return judge.window(g, list(parse_records(g.kmsg)))


def test_recorded_run_matches_the_five_records_in_order():
    m = trail.match(TRAIL, recorded_window())
    assert m.ok, m.diff()
    assert [r.text for r in m.matched] == [
        "Entering: myNetLink_init, protocol family = 30 ",
        "MyNetLink Init OK!",
        "Entering: myNetLink_recv_msg",
        "MyNetlink has received: Hello this is a msg from userspace",
        "exiting myNetLink module",
    ]
    seqs = [r.seq for r in m.matched]
    assert seqs == sorted(seqs)


def test_taint_lines_are_allowed_not_other():
    m = trail.match(TRAIL, recorded_window())
    assert any("taints kernel" in r.text for r in m.allowed)
    assert not any("taints kernel" in r.text for r in m.other)


def test_missing_record_is_named():
    win = [r for r in recorded_window() if r.text != "exiting myNetLink module"]
    m = trail.match(TRAIL, win)
    assert not m.ok
    assert "expected record #5" in m.diff() and "exiting myNetLink module" in m.diff() and "missing" in m.diff()


def test_out_of_order_shows_what_came_instead():
    win = recorded_window()
    i = next(k for k, r in enumerate(win) if r.text == "Entering: myNetLink_recv_msg")
    win[i], win[i + 1] = win[i + 1], win[i]
    m = trail.match(TRAIL, win)
    assert not m.ok
    assert "expected record #3" in m.diff() and "but got" in m.diff() and "MyNetlink has received" in m.diff()


def test_wrong_level_fails():
    win = [dataclasses.replace(r, level=3) if r.text == "exiting myNetLink module" else r for r in recorded_window()]
    m = trail.match(TRAIL, win)
    assert not m.ok and "<6>" in m.diff() and "<3>" in m.diff()


def test_duplicate_message_is_an_unexpected_extra():
    win = recorded_window()
    dup = next(r for r in win if r.text.startswith("MyNetlink has received"))
    win.append(dataclasses.replace(dup, seq=10_000))
    m = trail.match(TRAIL, win)
    assert not m.ok and "unexpected extra record seq 10000" in m.diff()


def test_unrelated_records_fail_only_when_strict():
    win = recorded_window() + list(parse_records(["6,9999,1,-;random: crng init done"]))
    assert trail.match(TRAIL, win).ok
    strict = dataclasses.replace(TRAIL, strict=True)
    m = trail.match(strict, win)
    assert not m.ok and "crng init done" in m.diff()


def test_count_and_pattern():
    t = trail.parse_trail({"expect": [{"pattern": "tick \\d+", "count": 3}]})
    recs = list(parse_records([f"6,{i},0,-;tick {i}" for i in range(3)]))
    assert trail.match(t, recs).ok
    assert not trail.match(t, recs[:2]).ok


@pytest.mark.parametrize("entry, words", [
    ({"text": "a", "pattern": "a"}, "exactly one of"),
    ({}, "exactly one of"),
    ({"text": "a", "level": 9}, "level: .*less than or equal to 7"),
    ({"text": "a", "count": 0}, "count: .*greater than or equal to 1"),
    ({"pattern": "("}, "not a valid regular expression"),
    ({"text": "a", "levle": 1}, "levle: unknown key; did you mean 'level'"),
])
def test_bad_trail_entries_name_the_problem(entry, words):
    with pytest.raises(UsageError, match=words):
        trail.parse_trail({"expect": [entry]}, "t.toml")


def test_empty_trail_is_rejected(tmp_path: Path):
    p = tmp_path / "t.toml"
    p.write_text("strict = true\n")
    with pytest.raises(UsageError, match=r"needs \[\[expect\]\] entries \(or `expect = \[\]`"):
        load_trail(p)
    p.write_text("[[expect]\n")
    with pytest.raises(UsageError, match="invalid TOML"):
        load_trail(p)


def test_escaped_newline_is_matched_literally():
    rec = kmsg.parse_record("6,1,0,-;MyNetlink has received: x\\x0aBUG: y")
    t = trail.parse_trail({"expect": [{"text": "MyNetlink has received: x\\x0aBUG: y"}]})
    assert trail.match(t, [rec]).ok


def test_an_expectation_matches_the_whole_record_not_its_start():
    """`text` and `pattern` must match a record's whole text: a record that only begins like the
    expected one ("... but leaked 3 objects") is not it (the mutant fullmatch -> match passed it)."""
    t = trail.parse_trail({"expect": [{"text": "mymod: probe ok"}]})
    assert trail.match(t, list(parse_records(["6,1,0,-;mymod: probe ok"]))).ok
    longer = list(parse_records(["6,1,0,-;mymod: probe ok, but leaked 3 objects"]))
    m = trail.match(t, longer)
    assert not m.ok and m.problems[0] == "expected record #1 <any> 'mymod: probe ok': missing (the trail ended)"
    p = trail.parse_trail({"expect": [{"pattern": "mymod: tick \\d+"}]})
    assert trail.match(p, list(parse_records(["6,1,0,-;mymod: tick 42"]))).ok
    assert not trail.match(p, list(parse_records(["6,1,0,-;mymod: tick 42 and a fault"]))).ok

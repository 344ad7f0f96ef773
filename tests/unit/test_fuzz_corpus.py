"""The corpus on disk, and the tally of a fuzz guest's events."""

import json
from typing import Any

import pytest

from harness import contract
from harness.errors import UsageError
from harness.fuzz.corpus import Corpus, default_dir
from harness.fuzz.tally import Tally, decode_line
from harness.guest import fuzzer

TARGETS: list[dict[str, Any]] = [{"kind": "netlink", "protocol": 30, "key": "netlink:30"},
           {"kind": "file", "path": "/proc/x", "key": "file:/proc/x"}]


def test_inputs_are_kept_once_by_content_and_read_back_by_target_key(tmp_path):
    c = Corpus(tmp_path / "corpus")
    enc = fuzzer.encode_input({"t": 1, "op": "write", "cmd": 0, "data": b"1\n"})
    assert c.add("file:/proc/x", enc) is True
    assert c.add("file:/proc/x", enc) is False  # the same input again: the same file
    assert c.add("netlink:31", fuzzer.encode_input({"t": 0, "op": "send", "cmd": 0, "data": b"x"}))
    assert c.size() == 2
    (tmp_path / "corpus" / "notes.json").write_text("[1, 2]")  # not an input: left alone
    seeds = c.seeds(TARGETS)  # netlink:31 is not declared any more: not a seed
    assert seeds == [{"t": 1, "op": "write", "cmd": 0, "data": enc["data"]}]
    assert fuzzer.decode_input(seeds[0])["data"] == b"1\n"
    assert c.seeds(list(reversed(TARGETS)))[0]["t"] == 0  # by key, not by position


def test_a_corpus_that_cannot_be_made_is_a_usage_error_found_without_making_anything(tmp_path):
    (tmp_path / "file").write_text("")
    with pytest.raises(UsageError, match="cannot be made"):
        Corpus(tmp_path / "file" / "corpus").check_writable()
    with pytest.raises(UsageError, match="is not a directory"):
        Corpus(tmp_path / "file").check_writable()
    Corpus(tmp_path / "a" / "b").check_writable()
    assert not (tmp_path / "a").exists()
    with pytest.raises(UsageError, match="cannot keep the corpus"):
        Corpus(tmp_path / "file" / "corpus").make()


def test_the_default_corpus_is_in_the_project(tmp_path):
    assert default_dir(tmp_path, "mymod") == tmp_path / "fuzz" / "corpus" / "mymod"


def _line(kind: str, run: str = "r1", **data) -> str:
    return contract.encode_event(kind, run, **data)


def test_only_this_runs_fuzz_events_are_heard():
    stats = decode_line(_line(fuzzer.STATS, execs=1), "r1")
    assert stats is not None and stats["execs"] == 1
    assert decode_line(_line(fuzzer.STATS, run="other", execs=1), "r1") is None
    assert decode_line(_line(contract.KMSG, raw="x"), "r1") is None  # the runner's, not the fuzzer's
    assert decode_line("[   1.0] " + _line(fuzzer.HELLO)[:20], "r1") is None  # cut short


def test_the_tally_of_a_guest_that_died():
    now = [0.0]
    added = []
    t = Tally(clock=lambda: now[0], targets=TARGETS, on_new=lambda key, inp: added.append(key))
    g = t.start_guest()
    inp = fuzzer.encode_input({"t": 0, "op": "send", "cmd": 0, "data": b"abc"})
    now[0] = 10.0
    t.feed({"event": fuzzer.HELLO, "kcov": None})
    for n in range(1, 12):
        now[0] += 1
        t.feed({"event": fuzzer.EXEC, "n": n, "input": dict(inp, data=str(n))})
        if n == 3:
            t.feed({"event": fuzzer.NEW, "n": 3, "input": inp, "pcs": [[".text", 4], [".text", 9]]})
    t.feed({"event": fuzzer.STATS, "execs": 9, "seconds": 9.0, "corpus": 1, "pcs": 2})
    assert added == ["netlink:30"] and t.first_seen == {(".text", 4): 13.0, (".text", 9): 13.0}
    assert g.last == (11, dict(inp, data="11"))
    assert [i["data"] for i in g.suspects] == [str(n) for n in range(4, 12)]  # the last 8, oldest first
    assert not g.ended_alone()
    t.end_guest()
    assert t.execs == 11 and t.fuzz_seconds == pytest.approx(11.0)
    assert t.samples[-1] == {"t": 21.0, "execs": 11, "pcs": 2}
    json.dumps(t.samples)


def test_the_recorded_magic_run_reached_the_bug_a_byte_at_a_time():
    """tests/data/fuzz_magic: the fuzz_targets fixture fuzzed with kcov (a real run): each new input
    on protocol 31 matched one more byte of "KMH!", through comparison hints, then the splat."""
    from conftest import DATA

    events = [json.loads(line) for line in (DATA / "fuzz_magic" / "guest-1.events.jsonl").read_text().splitlines()]
    added = []
    keys = json.loads((DATA / "fuzz_magic" / "fuzz.json").read_text())["targets"]
    t = Tally(clock=lambda: 0.0, targets=[{"key": k} for k in keys],
              on_new=lambda key, inp: added.append((key, fuzzer.decode_input(inp)["data"])))
    t.start_guest()
    for ev in events:
        t.feed(ev)
    payloads = [data[16:20] for key, data in added if key == "netlink:31"]
    assert [p for p in payloads if p[:1] == b"K"] == [b"Kell", b"KMll", b"KMHl", b"KMH!"]
    assert {key for key, _ in added} == {"netlink:31", "chardev:/dev/fuzz_targets", "file:/proc/fuzz_targets"}
    assert t.guest.splat is not None and not t.guest.ended_alone()
    assert fuzzer.decode_input(t.guest.suspects[-1])["data"][16:21] == b"KMH!o"  # index 'o' = 111 > 15

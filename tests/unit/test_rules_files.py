
"""The splat rules file and trail files as parsed, each time from the file (the other tests share
one parse, conftest.RULES): what comes out, in order, and the error each wrong entry gives."""

import dataclasses

import pytest

from harness import resources, tomlload
from harness.errors import UsageError
from harness.model import KmsgRecord
from harness.verdict import splat, trail

from conftest import REPO


def test_the_packaged_rules_in_their_file_order():
    data = tomlload.load(resources.data("splats.toml"))
    rules = splat.parse_rules(data, "vm/splats.toml")
    assert isinstance(rules, tuple)
    assert [r.name for r in rules] == [d["name"] for d in data["splat"]]
    assert [r.reason for r in rules] == [d["reason"] for d in data["splat"]]
    assert [r.regex.pattern for r in rules] == [d["pattern"] for d in data["splat"]]
    # the specific ones before the general: a KASAN report is "kasan", not "bug"
    rule = splat.classify(rules, "BUG: KASAN: slab-out-of-bounds in f+0x1/0x2")
    assert rule is not None and rule.name == "kasan"


SRC = {"source": "kernel/x.c f()"}


@pytest.mark.parametrize("entries, words", [
    ([], "x.toml: splat: must not be empty"),
    ([{"name": "a", "pattern": "^A", "reason": "r", **SRC}, {"pattern": "^B", "reason": "r", **SRC}],
     "x.toml: splat\\[2\\].name: required, and missing"),
    ([{"name": "a", "reason": "r", **SRC}], "x.toml: splat\\[1\\].pattern: required, and missing"),
    ([{"name": "a", "pattern": "^A", **SRC}], "x.toml: splat\\[1\\].reason: required, and missing"),
    ([{"name": "a", "pattern": "^A", "reason": "r"}], "x.toml: splat\\[1\\].source: required, and missing"),
    ([{"name": "a", "pattern": "^A", "reason": "r", **SRC}, {"name": "b", "pattern": "(", "reason": "r", **SRC}],
     "x.toml: splat\\[2\\].pattern: not a valid regular expression"),
    ([{"name": "a", "pattern": "^A", "reason": "r", "scope": "sometimes", **SRC}],
     "x.toml: splat\\[1\\].scope: .*'always' or 'module'"),
])
def test_a_wrong_rule_says_which_and_why(entries, words):
    with pytest.raises(UsageError, match=words):
        splat.parse_rules({"splat": entries}, "x.toml")
    if not entries:
        with pytest.raises(UsageError, match="splat: required, and missing"):
            splat.parse_rules({}, "x.toml")


def rec(text: str, seq: int = 1, level: int = 6) -> KmsgRecord:
    return KmsgRecord(seq=seq, level=level, facility=0, usec=seq, text=text)


def test_the_repository_trail_parses_to_its_entries():
    t = trail.parse_trail(tomlload.load(REPO / "vm" / "trail.toml"), "vm/trail.toml")
    assert [e.source for e in t.expect][-1] == "exiting myNetLink module"
    assert [e.level for e in t.expect] == [None, None, 6, 6, 6] and t.strict is False
    assert all(a.reason for a in t.allow) and len(t.allow) == 2


def test_strict_and_allow_are_read():
    data = {"strict": True, "expect": [{"text": "a"}], "allow": [{"pattern": "taint", "reason": "first load"}]}
    t = trail.parse_trail(data, "t.toml")
    assert t.strict is True and t.allow[0].reason == "first load" and t.allow[0].regex.pattern == "taint"
    m = trail.match(t, [rec("a"), rec("x taint", 2), rec("stray", 3)])
    assert not m.ok and [r.text for r in m.allowed] == ["x taint"] and [r.text for r in m.other] == ["stray"]
    assert trail.match(trail.parse_trail({"expect": [{"text": "a"}]}, "t.toml"), [rec("a"), rec("stray", 2)]).ok


@pytest.mark.parametrize("data, words", [
    ({}, "t.toml: a trail needs \\[\\[expect\\]\\] entries \\(or `expect = \\[\\]` for a module that logs nothing"),
    ({"expect": {"text": "a"}}, "t.toml: expect: must be an array"),
    ({"expect": [{"text": "a"}], "allow": [{"pattern": "x"}, {"reason": "r"}]},
     "t.toml: allow\\[1\\].reason: required, and missing"),
    ({"expect": [{"text": "a"}], "allow": [{"pattern": "x", "reason": "r"}, {"reason": "r"}]},
     "t.toml: allow\\[2\\].pattern: required, and missing"),
    ({"expect": [{"text": "a"}, {"text": "b", "pattern": "b"}]}, "t.toml: expect\\[2\\]: give exactly one"),
    ({"expect": [{"text": "a"}, {"pattern": "("}]}, "t.toml: expect\\[2\\].pattern: not a valid regular expression"),
    ({"expect": [{"text": "a", "level": 8}]}, "t.toml: expect\\[1\\].level: .*less than or equal to 7 \\(got 8\\)"),
    ({"expect": [{"text": "a", "count": 0}]}, "expect\\[1\\].count: .*greater than or equal to 1 \\(got 0\\)"),
    ({"expect": [{"text": "a", "count": 9e18}]}, "expect\\[1\\].count: must be an integer"),
    ({"expect": [{"text": "a", "count": 10 ** 9}]}, "expect\\[1\\].count: .*less than or equal to 10000"),
    ({"expect": [{"text": "a", "count": 9000}] * 20}, "expects 180000 records in all; at most 100000"),
    ({"expect": [{"text": "a", "lvl": 1}]}, "expect\\[1\\].lvl: unknown key; did you mean 'level'\\?"),
    ({"expect": [{"text": "a", "level": True}]}, "expect\\[1\\].level: must be an integer \\(got True\\)"),
    ({"expect": [{"text": 5}]}, "expect\\[1\\].text: must be a string \\(got 5\\)"),
    ({"expect": ["a"]}, "expect\\[1\\]: must be a table"),
    ({"strict": "false", "expect": [{"text": "a"}]}, "strict: must be true or false \\(got 'false'\\)"),
    ({"expect": [{"text": "a"}], "allow": [{"pattern": "(", "reason": "r"}]}, "allow\\[1\\].pattern: not a valid"),
])
def test_a_wrong_trail_entry_says_which_and_why(data, words):
    with pytest.raises(UsageError, match=words):
        trail.parse_trail(data, "t.toml")


def test_a_module_that_logs_nothing_says_so_with_an_empty_list():
    t = trail.parse_trail({"expect": []}, "t.toml")
    assert t.expect == () and trail.match(t, [rec("the kernel's own")]).ok
    assert not trail.match(dataclasses.replace(t, strict=True), [rec("the kernel's own")]).ok


def test_a_trail_without_a_name_says_trail():
    with pytest.raises(UsageError, match="^trail: a trail needs \\[\\[expect\\]\\] entries"):
        trail.parse_trail({})


def test_a_splat_as_json():
    assert splat.Splat("bug", "a BUG", "BUG: x", 7).to_json() == {"rule": "bug", "reason": "a BUG", "text": "BUG: x",
                                                                  "seq": 7}


def test_a_dead_guests_console_excerpt_keeps_the_splat_and_the_panic():
    """From the first splat line, ``context`` lines; when the panic comes later, a line saying how many
    were left out, then ten lines from the panic on. Lines of a real crash (tests/data/splat_oops)."""
    from conftest import DATA, RULES

    lines = (DATA / "splat_oops" / "console.log").read_text().splitlines()
    at = next(i for i, ln in enumerate(lines) if "BUG: kernel NULL pointer dereference" in ln)
    panic = next(i for i, ln in enumerate(lines) if "Kernel panic" in ln)
    assert panic - at > 12
    found, excerpt = splat.find_in_console(RULES, "\n".join(lines), None, context=5)
    assert found[0].reason and found[0].seq is None and found[0].text.startswith("BUG: kernel NULL pointer")
    left_out = f"[... {panic - at - 5} console lines left out: see console.log ...]"
    assert excerpt.split("\n") == lines[at:at + 5] + [left_out] + lines[panic:panic + 10]
    # the panic just past the context: nothing left out, but said so
    _, edge = splat.find_in_console(RULES, "\n".join(lines), None, context=panic - at)
    assert edge.split("\n") == (lines[at:panic] + ["[... 0 console lines left out: see console.log ...]"]
                                 + lines[panic:panic + 10])
    # the panic inside the context: no marker line, nothing repeated
    _, whole = splat.find_in_console(RULES, "\n".join(lines), None, context=panic - at + 1)
    assert whole.split("\n") == lines[at:panic + 1]
    assert splat.find_in_console(RULES, "no splat here\n[    1.0] fine", None) == ([], "")


def test_a_mismatch_lists_the_records_that_matched_nothing_ten_at_most():
    t = trail.parse_trail({"expect": [{"text": "a"}, {"text": "b"}]}, "t.toml")
    stray = [rec(f"stray {i}", 10 + i) for i in range(12)]
    m = trail.match(t, [rec("a"), *stray, rec("c", 30)])
    assert not m.ok
    assert m.problems[0] == "expected record #2 <any> 'b': missing (the trail ended)"
    assert m.problems[1] == "records in the window that match no expectation:"
    assert m.problems[2:12] == [f"  seq {10 + i} <6> 'stray {i}'" for i in range(10)]
    assert m.problems[12:] == ["  ... and 3 more"]  # stray 10, stray 11 and c
    ten = trail.match(t, [rec("a"), *stray[:10]])
    assert ten.problems[-1] == "  seq 19 <6> 'stray 9'"  # exactly ten: no "... and" line
    # strict: every stray record is a problem of its own, and no "match no expectation" header
    strict = trail.match(trail.Trail(t.expect, strict=True), [rec("a"), rec("b", 2), rec("x", 3)])
    assert strict.problems == ["record not in the trail (strict): seq 3 <6> 'x'"] and not strict.ok
    assert trail.match(t, [rec("a"), rec("b", 2)]).ok


def test_a_records_header_fields_and_errors():
    from harness.verdict import kmsg

    r = kmsg.parse_record("6,42,1000,-;hello\n")
    assert (r.level, r.facility, r.seq, r.usec, r.text, r.caller, r.fields) == (6, 0, 42, 1000, "hello", None, ())
    c = kmsg.parse_record("14,7,5,-,caller=T12;x=y\n SUBSYSTEM=net\n DEVICE=+n:eth0=1\n")
    assert c.caller == "T12" and c.text == "x=y" and c.facility == 1
    assert c.fields == (("SUBSYSTEM", "net"), ("DEVICE", "+n:eth0=1"))
    with pytest.raises(kmsg.KmsgParseError) as e:
        kmsg.parse_record("x" * 100)
    assert str(e.value) == f"not a /dev/kmsg record: {'x' * 80!r}"

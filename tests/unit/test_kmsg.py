import pytest

from harness.verdict import kmsg
from harness.verdict.kmsg import KmsgParseError, parse_record, parse_records

from conftest import load_guest


def test_record_fields_split_prio_into_facility_and_level():
    r = parse_record("30,812,4012345,-,caller=T123;hello world\n")
    assert (r.facility, r.level, r.prio) == (3, 6, 30)
    assert (r.seq, r.usec, r.flags, r.caller, r.text) == (812, 4012345, "-", "T123", "hello world")
    assert r.seconds == pytest.approx(4.012345)


def test_continuation_lines_become_fields():
    r = parse_record("6,9,10,-;virtio: device\n SUBSYSTEM=virtio\n DEVICE=+virtio:virtio1\n")
    assert r.text == "virtio: device"
    assert dict(r.fields) == {"SUBSYSTEM": "virtio", "DEVICE": "+virtio:virtio1"}


def test_text_may_contain_semicolons_and_commas():
    r = parse_record("4,5,6,c;a;b,c=d")
    assert r.text == "a;b,c=d" and r.flags == "c"


def test_rejects_non_records():
    with pytest.raises(KmsgParseError):
        parse_record("[    0.000000] Linux version 6.1")


def test_recorded_boot_parses_whole_and_in_order():
    raw = load_guest("pass_bookworm")["kmsg"]
    records = list(parse_records(raw))
    assert len(records) == len(raw)
    assert records[0].seq == 0 and records[0].text.startswith("Linux version ")
    seqs = [r.seq for r in records]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    assert kmsg.gaps(records) == []


def test_stream_of_lines_joins_continuations_and_skips_a_cut_tail():
    text = "6,1,5,-;one\n SUBSYSTEM=x\n6,2,6,-;two\n6,3"
    records = list(parse_records(text.splitlines(keepends=True)))
    assert [r.text for r in records] == ["one", "two"]
    assert dict(records[0].fields) == {"SUBSYSTEM": "x"}


def test_gaps_report_lost_sequence_numbers():
    recs = list(parse_records(["6,1,0,-;a", "6,2,0,-;b", "6,7,0,-;c"]))
    assert kmsg.gaps(recs) == [(3, 6)]


def test_unescape_is_for_display_only():
    assert kmsg.unescape("x\\x0aBUG: y") == "x\nBUG: y"

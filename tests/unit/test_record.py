"""--record-trail: the trail written from a run's records must match that run again."""

from harness import tomlload
from harness.verdict import judge, kmsg, record, trail
from harness.verdict.kmsg import parse_record

from conftest import guest_report


def recorded_window():
    g = guest_report("pass_bookworm")
    return judge.window(g, list(kmsg.parse_records(g.kmsg)))


def test_a_recorded_trail_matches_the_run_it_came_from(tmp_path):
    win = recorded_window()
    path = tmp_path / "trail.toml"
    path.write_text(record.trail_toml(win, "a test"))
    t = trail.parse_trail(tomlload.load(path), str(path))
    m = trail.match(t, win)
    assert m.ok, m.diff()
    assert [r.text for r in m.matched] == [
        "Entering: myNetLink_init, protocol family = 30 ", "MyNetLink Init OK!", "Entering: myNetLink_recv_msg",
        "MyNetlink has received: Hello this is a msg from userspace", "exiting myNetLink module"]
    assert [e.level for e in t.expect] == [4, 4, 6, 6, 6]


def test_taint_lines_become_allowances_with_their_reason():
    text = record.trail_toml(recorded_window(), "a test")
    t = trail.parse_trail(tomlload.loads(text), "t")
    assert len(t.allow) == 2 and all(a.reason for a in t.allow)
    assert t.allow[0].regex.fullmatch("netlink_kernel: loading out-of-tree module taints kernel.")
    assert not any("taint" in e.source for e in t.expect)


def test_escaped_payloads_and_userspace_records_are_handled():
    recs = [parse_record('6,5,0,-;got: x\\x0aBUG: "quoted" \\\\ back'), parse_record("13,6,0,-;from userspace")]
    t = trail.parse_trail(tomlload.loads(record.trail_toml(recs, "t")), "t")
    assert [e.source for e in t.expect] == ['got: x\\x0aBUG: "quoted" \\\\ back']
    assert trail.match(t, recs[:1]).ok

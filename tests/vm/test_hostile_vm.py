"""The hostile-input suite (tests/hostile) run by the harness itself on the default kernel.

One boot (TCG here: ~1.5 min with the root cached). The guest side reports one
JSON line per case; this test checks that every case of the full list ran and
passed, that the run had no splat, and that the kernel log agrees with what the
cases saw from userspace.
"""

import json

import pytest

from harness import cli
from harness.model import KmsgRecord
from harness.run import results_id
from harness.verdict import trail

from conftest import REPO, load_trail

pytestmark = pytest.mark.vm

HOSTILE = REPO / "tests" / "hostile"

# The full list, in order: a case that is skipped, renamed or lost fails the test.
LOADED_CASES = [
    "hello_blog_frame",
    "hello_exact_frame",
    "header_pid_zero",
    "header_pid_other_socket",
    "frame_0_bytes",
    "frame_1_byte",
    "frame_4_bytes",
    "frame_15_bytes",
    "frame_16_bytes_zeroed",
    "nlmsg_len_below_header",
    "nlmsg_len_beyond_frame",
    "nlmsg_len_0xffffffff",
    "header_only_message",
    "payload_without_nul",
    "payload_with_newlines",
    "payload_64k",
    "frame_beyond_sndbuf",
    "three_messages_one_send",
    "flood_small_rcvbuf",
    "concurrent_clients",
    "netns_client",
    "unprivileged_user",
    "rmmod_while_open",
]
ABSENT_CASES = ["socket_absent"]


def cases_of(step: dict) -> tuple[list[dict], dict]:
    """The per-case JSON lines of a step's stdout and its summary line."""
    cases, summary = [], None
    for line in step["stdout"].splitlines():
        if not line.strip():
            continue
        obj = json.loads(line)  # the suite prints JSON lines only
        if "summary" in obj:
            summary = obj["summary"]
        else:
            cases.append(obj)
    assert summary is not None, f"step {step['name']!r} printed no summary: {step['stdout'][-2000:]}"
    return cases, summary


def test_hostile_suite_passes_with_every_case_and_no_splat(own_tmp):
    check_hostile_run(own_tmp, "debian:bookworm")


def check_hostile_run(results, kernel: str, timeout: int = 400) -> dict:
    """Run the suite on ``kernel`` and check every case, the splats and the kernel log."""
    code = cli.main(["run", "--kernel", kernel, "--project", str(HOSTILE), "--results", str(results),
                     "--timeout", str(timeout)])
    res = json.loads((results / results_id(kernel) / "result.json").read_text())
    assert code == 0, res["reason"]
    assert res["verdict"] == "pass"
    assert res["splats"] == []

    steps = {s["name"]: s for s in res["steps"]}
    assert [s["name"] for s in res["steps"]] == ["absent-before", "insmod", "hostile", "rmmod", "absent-after"]
    for name, expected in (("absent-before", ABSENT_CASES), ("hostile", LOADED_CASES),
                           ("absent-after", ABSENT_CASES)):
        step = steps[name]
        assert step["returncode"] == 0 and not step["timed_out"], step["stderr"][-2000:]
        cases, summary = cases_of(step)
        assert [c["case"] for c in cases] == expected
        failed = {c["case"]: c["detail"].get("problems") for c in cases if c["ok"] is not True}
        assert not failed, failed
        assert summary["failed"] == [] and summary["cases"] == len(expected)

    by_case = {c["case"]: c["detail"] for c in cases_of(steps["hostile"])[0]}
    # What userspace saw, pinned where every kernel agrees.
    assert by_case["frame_0_bytes"]["send"] == ["errno", "ENODATA"]
    assert by_case["frame_beyond_sndbuf"]["send"] == ["errno", "EMSGSIZE"]
    assert by_case["netns_client"]["send"] == ["errno", "ECONNREFUSED"]
    assert by_case["unprivileged_user"]["bind_group"] == "EPERM"
    assert by_case["flood_small_rcvbuf"]["first_recv"] == "ENOBUFS"
    assert by_case["rmmod_while_open"]["refcnt_open"] == 1 and by_case["rmmod_while_open"]["rmmod_rc"] != 0
    assert by_case["concurrent_clients"]["replies"] == [200] * 8

    # The kernel log of the run agrees with userspace.
    start = steps["absent-before"]["kmsg_seq_before"]
    end = steps["absent-after"]["kmsg_seq_after"]
    win = [r for r in res["kmsg"] if start < r["seq"] <= end]
    texts = [r["text"] for r in win]
    received = [t for t in texts if t.startswith("MyNetlink has received: ")]
    assert texts.count("Entering: myNetLink_recv_msg") == len(received)
    # Bounded by nlmsg_len: no byte past the unterminated payload is printed.
    assert "MyNetlink has received: no-terminator-abc" in texts
    # One record, newlines escaped: the forged "BUG:" line is payload, not a splat.
    assert "MyNetlink has received: line one\\x0aBUG: forged by userspace\\x0aline three" in texts
    # 8 clients x 200 messages: every one logged, none lost from the kernel log.
    assert sum(t.startswith("MyNetlink has received: client ") for t in texts) == 8 * 200
    # Every reply the flooded socket did not get was logged as a failed send, and only those.
    flood = by_case["flood_small_rcvbuf"]
    assert texts.count("Error while sending back to user") == flood["sent"] - flood["queued_replies"]
    assert any(t.startswith("netlink_kernel: dropping malformed message") for t in texts)

    # The trail is not strict (unrelated kernel noise under emulation must not fail a run),
    # but nothing about netlink may be left unexplained by it.
    records = [KmsgRecord(**{k: r[k] for k in ("level", "facility", "seq", "usec", "text")}) for r in win]
    m = trail.match(load_trail(HOSTILE / "trail.toml"), records)
    assert m.ok, m.diff()
    unexplained = [r.text for r in m.other if "netlink" in r.text.lower()]
    assert not unexplained, unexplained
    return res

"""The guest fuzzer's own machinery, run here on the host with a file as the only target:
children really fork, the loop really announces each input before it runs, a child that
hangs or dies ends only itself. (No module and no kcov: those are the VM tests'.)"""

import io
import json
import os

import pytest

from harness.fuzz.tally import decode_line
from harness.guest import fuzzchild, fuzzer
from harness.guest.fuzzchild import DIED, TIMED_OUT, Executor


def _file_target(path) -> list:
    return [{"kind": "file", "path": str(path), "key": f"file:{path}"}]


@pytest.mark.parametrize("per_child", [1, 3])
def test_each_input_runs_in_a_child_and_its_errno_comes_back(tmp_path, per_child):
    target = tmp_path / "target"
    target.write_text("")
    ex = Executor(_file_target(target), {}, per_child, timeout=10)
    pids = set()
    for i in range(4):
        assert ex.run({"t": 0, "op": "write", "cmd": 0, "data": b"input %d" % i}, None) == 0
        assert target.read_bytes() == b"input %d" % i
        pids.add(ex.pid)
    assert os.getpid() not in pids
    missing = Executor(_file_target(tmp_path / "nope"), {}, per_child, timeout=10)
    assert missing.run({"t": 0, "op": "write", "cmd": 0, "data": b"x"}, None) == 2  # ENOENT, not raised


def test_a_child_that_blocks_is_killed_at_the_limit_and_the_next_one_works(tmp_path):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)  # opening it for writing blocks: nobody reads
    ex = Executor(_file_target(fifo) + _file_target(tmp_path / "ok"), {}, 5, timeout=0.5)
    assert ex.run({"t": 0, "op": "write", "cmd": 0, "data": b"x"}, None) == TIMED_OUT
    assert ex.pid is None
    (tmp_path / "ok").write_text("")
    assert ex.run({"t": 1, "op": "write", "cmd": 0, "data": b"y"}, None) == 0


def test_a_child_that_dies_before_answering_is_reported(tmp_path):
    ex = Executor([{"kind": "file"}], {}, 1, timeout=5)  # no path: the child's code raises
    assert ex.run({"t": 0, "op": "write", "cmd": 0, "data": b"x"}, None) == DIED


def _plan(tmp_path, duration: float) -> dict:
    (tmp_path / "target").write_text("")
    return {"version": fuzzer.VERSION, "run_id": "r1", "module": "no_such_module", "coverage": False,
            "duration": duration, "seed": 5, "targets": _file_target(tmp_path / "target"), "splats": ["BUG: "],
            "corpus": [fuzzer.encode_input({"t": 0, "op": "write", "cmd": 0, "data": b"from the corpus"})],
            "exec_timeout": 5.0, "execs_per_child": 1}


def test_the_loop_announces_every_input_before_it_runs_and_says_goodbye(tmp_path, monkeypatch):
    kmsg = tmp_path / "kmsg"
    kmsg.write_text("")
    monkeypatch.setattr(fuzzer.Kmsg, "PATH", str(kmsg))
    out = io.StringIO()
    fz = fuzzer.Fuzzer(_plan(tmp_path, 1.5), out)
    fz.setup()
    fz.send(fuzzer.DONE, reason=fz.loop(), **fz.stats())
    events = []
    for line in out.getvalue().splitlines():
        event = decode_line(line, "r1")
        assert event is not None, line
        events.append(event)
    kinds = [e["event"] for e in events]
    assert kinds[0] == fuzzer.HELLO and kinds[-1] == fuzzer.DONE
    assert "coverage feedback off" in events[0]["kcov"]
    execs = [e for e in events if e["event"] == fuzzer.EXEC]
    assert [e["n"] for e in execs] == list(range(1, len(execs) + 1))
    assert fuzzer.decode_input(execs[0]["input"])["data"] == b"from the corpus"  # the corpus first
    assert events[-1]["execs"] == len(execs) >= 3
    # the last input announced is the last one written (a regular file is not truncated by the write)
    assert (tmp_path / "target").read_bytes().startswith(fuzzer.decode_input(execs[-1]["input"])["data"])


def test_only_the_kernels_own_records_are_splats():
    k = fuzzer.Kmsg.__new__(fuzzer.Kmsg)
    k.patterns = [__import__("re").compile("BUG: ")]
    records = ["6,10,5,-;MyNetlink has received: BUG: forged\n", "12,11,6,-;BUG: from userspace\n",
               "0,12,7,-;BUG: TASK stack guard page was hit at 00000000\n"]
    assert k.splat(records) == 2  # the kernel's own record (facility 0), not the forged ones


def test_plan_and_events_speak_the_same_version():
    assert json.loads(json.dumps({"version": fuzzer.VERSION}))["version"] == 1
    assert set(fuzzer.GUEST_FILES) >= {"fuzzer.py", "fuzzchild.py", "fuzzexec.py", "fuzzmut.py", "contract.py"}
    assert fuzzchild.KCOV_ENABLE == (ord("c") << 8) | 100

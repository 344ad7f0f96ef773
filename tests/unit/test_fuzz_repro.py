"""Minimization candidates, and the repro: a standalone step script that sends the inputs in order."""

import ast

from harness import tomlload
from harness.fuzz import minimize, repro
from harness.guest import fuzzmut
from harness.project import parse_project

from conftest import REPO

NL = [{"kind": "netlink", "protocol": 30, "key": "netlink:30"}]


def _in(data: bytes, t: int = 0) -> dict:
    return {"t": t, "op": "send", "cmd": 0, "data": data}


def test_candidates_are_smaller_unique_and_smallest_first():
    big = fuzzmut.nl_message(b"A" * 40, mtype=5, flags=1, seq=9, pid=0) + fuzzmut.nl_message(b"second")
    case = [_in(big)]
    cands = minimize.candidates(case, NL)
    assert cands and len(cands) <= minimize.MAX_CANDIDATES
    weights = [minimize.weight(c) for c in cands]
    assert weights == sorted(weights) and all(w < minimize.weight(case) for w in weights)
    assert len({minimize.case_key(c) for c in cands}) == len(cands)
    datas = [c[0]["data"] for c in cands]
    assert big[:16] in datas  # the header alone (pid 0 kept)
    assert fuzzmut.headers(big)[1] and big[:fuzzmut.align(56)] in datas  # the first message alone
    assert fuzzmut.set_field(big, 0, "seq", 0) in datas


def test_several_inputs_shrink_to_the_last_alone_first():
    case = [_in(b"a" * 20), _in(b"b" * 20)]
    assert minimize.candidates(case, NL)[0] == [_in(b"b" * 20)]


def test_a_minimal_input_has_no_candidates():
    assert minimize.candidates([_in(b"")], NL) == []


def _script(case):
    about = ["consequence: BUG: TASK stack guard page was hit", "kernel: debian-src:trixie+debug"]
    return repro.script("netlink30-x-abc123", NL, case, about)


def test_the_repro_sends_each_input_in_order_with_the_fuzzers_own_code():
    case = [_in(fuzzmut.nl_message(b"hi", pid=0)), _in(b"\x16\0\0")]
    text = _script(case)
    ast.parse(text)
    ns: dict = {"__name__": "repro"}
    exec(compile(text, "repro.py", "exec"), ns)  # defines, runs nothing (not __main__)
    sent: list[tuple[dict, str, bytes]] = []

    def run_input(target, inp):
        sent.append((target, inp["op"], inp["data"]))
        return 0

    ns["run_input"] = run_input
    assert ns["main"]() == 0
    assert sent == [({"kind": "netlink", "protocol": 30}, "send", case[0]["data"]),
                    ({"kind": "netlink", "protocol": 30}, "send", b"\x16\0\0")]
    assert ns["PORT"] == fuzzmut.PORT  # the same bound port as while fuzzing


def test_the_repro_says_what_it_sends_and_how_to_add_it():
    text = _script([_in(fuzzmut.nl_message(b"", pid=0))])
    assert "#     at 0: nlmsg_len=16 type=0 flags=0x0 seq=0 pid=0x0 (the kernel's own socket)" in text
    assert "# consequence: BUG: TASK stack guard page was hit" in text
    assert text.startswith("#!/usr/bin/env python3\n")


def test_the_step_it_prints_is_a_valid_step_of_a_project(tmp_path):
    step = repro.step_toml("netlink30-x-abc123")
    data = tomlload.loads(f'[module]\nname = "m"\nsource = "src"\ntrail = "t.toml"\n\n{step}')
    (tmp_path / "src").mkdir()
    p = parse_project(data, tmp_path, "h.toml")
    assert p.steps[0].argv == ("python3", "/project/repro/netlink30-x-abc123.py")
    assert p.steps[0].when == "loaded"


def test_describe_other_kinds():
    t = {"kind": "chardev", "path": "/dev/x"}
    assert repro.describe(t, {"t": 0, "op": "ioctl", "cmd": 0x40046601, "data": b"1234"}) == \
        ["chardev /dev/x: ioctl (ioctl 0x40046601, 4 bytes)"]
    assert "shorter than a netlink header" in repro.describe(NL[0], _in(b"abc"))[1]


def test_the_recorded_blog_repro_is_what_the_generator_writes():
    """A repro harness fuzz wrote in a real run (tests/data/fuzz_blog): its inputs read back."""
    path = REPO / "tests/data/fuzz_blog/repro.py"
    ns: dict = {"__name__": "repro"}
    exec(compile(path.read_text(), str(path), "exec"), ns)
    (inp,) = ns["INPUTS"]
    assert len(inp["data"]) <= 16


def test_a_generated_repro_passes_the_type_checker(tmp_path):
    """A repro is a project's own step script: it lands in their repository, under their linters."""
    import subprocess
    import sys
    path = tmp_path / "crash.py"
    path.write_text(repro.script("crash", NL, [_in(b"\x10\x00\x00\x00" + bytes(12))], ["found by a test"]))
    r = subprocess.run([sys.executable, "-m", "mypy", "--strict", "--no-incremental",
                        "--cache-dir", str(tmp_path / "mc"), str(path)], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr

"""Mutations that know netlink headers, and comparison hints (the guest's fuzzmut)."""

import random
import struct

from harness.guest import fuzzmut
from harness.guest.fuzzmut import Mutator

NL = [{"kind": "netlink", "protocol": 30}]


def test_headers_are_walked_as_the_kernel_would():
    a, b = fuzzmut.nl_message(b"abc"), fuzzmut.nl_message(b"")
    assert len(a) == 20 and struct.unpack_from("=I", a)[0] == 19  # padding is not counted
    assert fuzzmut.headers(a + b) == [0, 20]
    assert fuzzmut.headers(b"\0" * 15) == []
    bad = fuzzmut.set_field(a + b, 0, "len", 4)  # a length below a header stops the walk
    assert fuzzmut.headers(bad) == [0]
    assert fuzzmut.headers(fuzzmut.set_len(a + b, 0, 1000)) == [0]


def test_set_len_and_set_field():
    m = fuzzmut.nl_message(b"hello")
    assert struct.unpack_from("=I", fuzzmut.set_len(m + b"xx", 0))[0] == len(m) + 2
    assert struct.unpack_from("=IHHII", fuzzmut.set_field(m, 0, "pid", 0))[4] == 0
    assert struct.unpack_from("=IHHII", fuzzmut.set_field(m, 0, "flags", 0x1FFFF))[2] == 0xFFFF  # masked


def test_mutations_reach_the_values_that_matter_to_a_parser():
    mut = Mutator(random.Random(1), NL)
    seed = {"t": 0, "op": "send", "cmd": 0, "data": fuzzmut.nl_message(b"hello\0")}
    pids, lens, sizes = set(), set(), set()
    for _ in range(3000):
        out = mut.mutate(seed, [seed])
        assert out["t"] == 0 and out["op"] == "send" and len(out["data"]) <= fuzzmut.MAX_DATA
        sizes.add(len(out["data"]))
        if len(out["data"]) >= 16:
            length, _, _, _, pid = struct.unpack_from("=IHHII", out["data"])
            pids.add(pid)
            lens.add(length - len(out["data"]))
    assert {0, fuzzmut.PORT, 0xFFFFFFFF} <= pids  # the kernel's own port, our own, -1
    assert {0, -1, 1} <= lens  # the real length, and off by one either way
    assert any(s < 16 for s in sizes)  # shorter than a header


def test_the_same_seed_gives_the_same_inputs():
    seed = {"t": 0, "op": "send", "cmd": 0, "data": fuzzmut.nl_message(b"x")}
    m1, m2 = Mutator(random.Random(7), NL), Mutator(random.Random(7), NL)
    assert [m1.mutate(seed, [seed]) for _ in range(50)] == [m2.mutate(seed, [seed]) for _ in range(50)]


def test_an_ioctl_keeps_its_argument_size():
    targets = [{"kind": "chardev", "path": "/dev/x", "ioctls": [{"cmd": 0x40046601, "size": 4}]}]
    mut = Mutator(random.Random(3), targets)
    seeds = [dict(s, t=0) for s in fuzzmut.default_seeds(targets[0])]
    assert seeds[0] == {"t": 0, "op": "ioctl", "cmd": 0x40046601, "data": b"\0\0\0\0"}
    for _ in range(500):
        out = mut.mutate(seeds[0], seeds)
        if out["op"] == "ioctl" and out["cmd"] == 0x40046601:
            assert len(out["data"]) == 4


def test_a_constant_compared_with_an_input_byte_is_put_where_that_byte_is():
    mut = Mutator(random.Random(0), NL)
    inp = {"t": 0, "op": "send", "cmd": 0, "data": fuzzmut.nl_message(b"hello")}
    # __sanitizer_cov_trace_const_cmp1('K', p[0]): type = size 1 (bits 1-2: 0) | KCOV_CMP_CONST
    out = mut.hints(inp, [(1, ord("K"), ord("h"))])
    assert [o["data"][16:21] for o in out] == [b"Kello"]
    assert b"K" in mut.tokens


def test_hints_of_wider_and_variable_comparisons_go_both_ways():
    mut = Mutator(random.Random(0), NL)
    data = fuzzmut.nl_message(b"abcd")  # nlmsg_len 20
    inp = {"t": 0, "op": "send", "cmd": 0, "data": data}
    # nlh->nlmsg_len compared with skb->len (both variables, 4 bytes: size code 2 << 1)
    out = mut.hints(inp, [(4, 20, 24)])
    assert any(struct.unpack_from("=I", o["data"])[0] == 24 for o in out)  # where 20 was, 24
    assert len(out) <= fuzzmut.HINTS_PER_INPUT


def test_default_seeds_of_each_kind():
    nl = fuzzmut.default_seeds({"kind": "netlink", "protocol": 30, "templates": ["1000000000000000"]})
    assert nl[0]["data"] == bytes.fromhex("1000000000000000") and all(s["op"] == "send" for s in nl)
    assert all(fuzzmut.headers(s["data"]) for s in nl[1:])
    assert [s["op"] for s in fuzzmut.default_seeds({"kind": "file", "path": "/proc/x"})] == ["write", "write"]

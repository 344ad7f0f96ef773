"""Smaller test cases to try in place of one that crashed the kernel (pure).

A test case is the inputs sent in order (usually one). Each round of minimization
runs the candidates of ``candidates`` in one fresh guest, smallest first; the first
that crashes the kernel the same way becomes the test case, and the next round starts
from it. A round where none crashes ends minimization (each crash costs a boot, so
the candidates of a round are many and the rounds few).

For a netlink send the candidates keep the crash's cause and drop the rest: the first
message alone, the header alone, the payload halved or gone, each header field set
back to the plain value (0, the real length). Other inputs are halved and zeroed.
"""

from __future__ import annotations

from typing import Any, Sequence

from harness.guest import fuzzmut

Case = list[dict[str, Any]]  # inputs as the repro sends them: {"t", "op", "cmd", "data": bytes}
MAX_CANDIDATES = 16


def weight(case: Sequence[dict[str, Any]]) -> tuple[int, int, int]:
    """What makes a case smaller: fewer inputs, fewer bytes, fewer bytes that are not 0."""
    return (len(case), sum(len(i["data"]) for i in case), sum(1 for i in case for b in i["data"] if b))


def candidates(case: Case, targets: Sequence[dict[str, Any]]) -> list[Case]:
    """Smaller cases than ``case``, smallest first, each different from it and from each other."""
    out: list[Case] = []
    if len(case) > 1:
        out.append(case[-1:])
        out += [case[:i] + case[i + 1:] for i in range(len(case))]
    last, rest = case[-1], case[:-1]
    kind = targets[int(last["t"])]["kind"]
    datas = netlink_shrinks(last["data"]) if kind == "netlink" else byte_shrinks(last["data"])
    out += [rest + [dict(last, data=d)] for d in datas]
    seen, unique = {case_key(case)}, []
    for c in sorted(out, key=weight):
        if case_key(c) not in seen and weight(c) < weight(case):
            seen.add(case_key(c))
            unique.append(c)
    return unique[:MAX_CANDIDATES]


def case_key(case: Sequence[dict[str, Any]]) -> tuple[Any, ...]:
    return tuple((i["t"], i["op"], i.get("cmd", 0), bytes(i["data"])) for i in case)


def netlink_shrinks(data: bytes) -> list[bytes]:
    heads = fuzzmut.headers(data)
    if not heads:
        return byte_shrinks(data)
    out: list[bytes] = []
    first_len = fuzzmut.align(max(fuzzmut.HDR, int.from_bytes(data[:4], "little")))
    if len(heads) > 1 and first_len < len(data):
        out.append(data[:first_len])
    hdr = data[:fuzzmut.HDR]
    payload = data[fuzzmut.HDR:]
    out += [hdr, fuzzmut.set_len(hdr, 0)]
    if payload:
        half = hdr + payload[:len(payload) // 2]
        out += [half, fuzzmut.set_len(half, 0)]
    for name in ("type", "flags", "seq"):
        out.append(fuzzmut.set_field(data, 0, name, 0))
    out.append(fuzzmut.set_len(data, 0))
    return [d for d in out if d != data]


def byte_shrinks(data: bytes) -> list[bytes]:
    if not data:
        return []
    out = [data[:1], data[:len(data) // 2], data[1:], data[:-1], bytes(len(data))]
    return [d for d in out if d != data]

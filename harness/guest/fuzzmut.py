"""Seeds and mutations of fuzz inputs, knowing netlink headers and lengths (guest side).

Standard library only, Python 3.9: runs in the guest beside ``fuzzer.py``; the host's
minimizer reads netlink frames with the same functions.

A netlink send is a run of ``struct nlmsghdr`` (len, type, flags, seq, pid: ``=IHHII``,
16 bytes, native order) each followed by its payload, 4-byte aligned. The mutations
set one header field to a value that matters to a parser (0, -1, the maximum, the
sender's own port, lengths off by one, the real length), or change bytes and then,
half the time, set the message's length to match again, so that inputs both break
the length checks and get past them to the code behind.

Comparison hints: with kcov's comparison tracing, a module that compares input bytes
with a constant says so; ``hints`` puts the constant where the compared value sits in
the input (what syzkaller calls hints). A magic value compared byte by byte then takes
one execution a byte instead of 1 in 256 times the input's length.
"""

from __future__ import annotations

import random
import struct
import sys
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Sequence, Tuple

if TYPE_CHECKING or "harness.guest" in sys.modules:  # the host's package
    from harness.guest.fuzzexec import PORT
else:  # in the guest, fuzzexec.py sits beside this file
    from fuzzexec import PORT

Input = Dict[str, Any]  # {"t": target index, "op": str, "cmd": int, "data": bytes}

NLMSG = struct.Struct("=IHHII")  # len, type, flags, seq, pid
HDR = NLMSG.size
MAX_DATA = 4096
# Header field -> (offset, size, values worth trying). Lengths are computed per input.
FIELDS = {
    "len": (0, 4, (0, 1, 15, 16, 17, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF)),
    "type": (4, 2, (0, 1, 2, 3, 4, 15, 16, 17, 0x7FFF, 0xFFFF)),
    "flags": (6, 2, (0, 1, 4, 5, 0x100, 0x200, 0x300, 0x301, 0x8000, 0xFFFF)),
    "seq": (8, 4, (0, 1, 0x7FFFFFFF, 0xFFFFFFFF)),
    "pid": (12, 4, (0, PORT, 1, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF)),
}
INTERESTING = {1: (0, 1, 0x7F, 0x80, 0xFF), 2: (0, 1, 0x7FFF, 0x8000, 0xFFFF),
               4: (0, 1, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF)}
HINTS_PER_INPUT = 64
PLACES_PER_HINT = 8


def align(n: int) -> int:
    return (n + 3) & ~3


def nl_message(payload: bytes, mtype: int = 0, flags: int = 0, seq: int = 0, pid: int = PORT) -> bytes:
    """One well-formed message: nlmsg_len counts the header and payload, padding follows."""
    length = HDR + len(payload)
    return NLMSG.pack(length, mtype, flags, seq, pid) + payload + b"\0" * (align(length) - length)


def headers(data: bytes) -> List[int]:
    """Offsets of the headers in a send, walked as the kernel's parsers would (stops at a
    length that cannot be walked: below a header, or past the data)."""
    out: List[int] = []
    off = 0
    while off + HDR <= len(data):
        out.append(off)
        length = struct.unpack_from("=I", data, off)[0]
        if length < HDR or off + align(length) > len(data):
            break
        off += align(length)
    return out


def set_len(data: bytes, off: int, length: Optional[int] = None) -> bytes:
    """The message at ``off`` with its nlmsg_len set to ``length`` (default: the rest of the data)."""
    if off + HDR > len(data):
        return data
    value = len(data) - off if length is None else length
    return data[:off] + struct.pack("=I", value & 0xFFFFFFFF) + data[off + 4:]


def set_field(data: bytes, off: int, name: str, value: int) -> bytes:
    at, size, _ = FIELDS[name]
    fmt = "=I" if size == 4 else "=H"
    return data[:off + at] + struct.pack(fmt, value & ((1 << (8 * size)) - 1)) + data[off + at + size:]


def default_seeds(target: Dict[str, Any]) -> List[Input]:
    """What a fuzz run starts from when the corpus is empty, per kind of target."""
    kind = target["kind"]
    if kind == "netlink":
        out = [bytes.fromhex(t) for t in target.get("templates", [])]
        out += [nl_message(b"hello\0"), nl_message(b"hello\0", flags=1, seq=1), nl_message(b"")]
        return [{"op": "send", "cmd": 0, "data": d} for d in out]
    if kind == "chardev":
        calls = [{"op": "ioctl", "cmd": c["cmd"], "data": b"\0" * c["size"]} for c in target.get("ioctls", [])]
        return calls + [{"op": "write", "cmd": 0, "data": b"\0" * 8}, {"op": "read", "cmd": 0, "data": b"\x40"}]
    return [{"op": "write", "cmd": 0, "data": b"0\n"}, {"op": "write", "cmd": 0, "data": b"1\n"}]


class Mutator:
    def __init__(self, rng: random.Random, targets: Sequence[Dict[str, Any]]):
        self.rng, self.targets = rng, targets
        self.tokens: List[bytes] = []  # byte strings the module compared input with (from hints)

    def mutate(self, inp: Input, corpus: Sequence[Input]) -> Input:
        """A new input from ``inp``: one to four mutations stacked."""
        out = dict(inp)
        kind = self.targets[inp["t"]]["kind"]
        for _ in range(self.rng.choice((1, 1, 2, 2, 3, 4))):
            if kind == "netlink":
                out["data"] = self.netlink(out["data"], corpus)
            elif kind == "chardev":
                out = self.chardev(out, corpus)
            else:
                out["data"] = self.bytes_op(out["data"], corpus)
        out["data"] = out["data"][:MAX_DATA]
        return out

    # ---- netlink -----------------------------------------------------------------------
    def netlink(self, data: bytes, corpus: Sequence[Input]) -> bytes:
        r = self.rng.random()
        heads = headers(data) or ([0] if len(data) >= HDR else [])
        if heads and r < 0.35:
            off = self.rng.choice(heads)
            name = self.rng.choice(tuple(FIELDS))
            if name == "len":
                rest = len(data) - off
                value = self.rng.choice(FIELDS["len"][2] + (rest, rest - 1, rest + 1, align(rest) + 4))
            elif self.rng.random() < 0.8:
                value = self.rng.choice(FIELDS[name][2])
            else:
                value = self.rng.getrandbits(8 * FIELDS[name][1])
            return set_field(data, off, name, value)
        if r < 0.45:
            return self.rng.choice((self.truncate, self.append_message))(data, corpus)
        new = self.bytes_op(data, corpus, start=HDR if len(data) > HDR and self.rng.random() < 0.7 else 0)
        if self.rng.random() < 0.5:
            heads = headers(new)
            if heads:
                new = set_len(new, heads[-1])
        return new

    def truncate(self, data: bytes, corpus: Sequence[Input]) -> bytes:
        if not data:
            return data
        return data[:self.rng.randrange(len(data))]

    def append_message(self, data: bytes, corpus: Sequence[Input]) -> bytes:
        other = self._other(corpus, "netlink")
        if other is not None and self.rng.random() < 0.5:
            return data + b"\0" * (align(len(data)) - len(data)) + other
        payload = bytes(self.rng.getrandbits(8) for _ in range(self.rng.randrange(0, 32)))
        return data + b"\0" * (align(len(data)) - len(data)) + nl_message(payload)

    # ---- character devices -----------------------------------------------------------------
    def chardev(self, inp: Input, corpus: Sequence[Input]) -> Input:
        ioctls = self.targets[inp["t"]].get("ioctls", [])
        r = self.rng.random()
        out = dict(inp)
        if r < 0.1 and ioctls:
            c = self.rng.choice(ioctls)
            out.update(op="ioctl", cmd=c["cmd"], data=(inp["data"] + b"\0" * c["size"])[:c["size"]])
        elif r < 0.15:
            out["op"] = self.rng.choice(("write", "read"))
        elif r < 0.18 and out["op"] == "ioctl":
            out["cmd"] = out["cmd"] ^ (1 << self.rng.randrange(8))  # a neighbouring command number
        else:
            size = len(inp["data"])
            data = self.bytes_op(inp["data"], corpus)
            out["data"] = (data + b"\0" * size)[:size] if out["op"] == "ioctl" and size else data
        return out

    # ---- bytes -------------------------------------------------------------------------------
    def bytes_op(self, data: bytes, corpus: Sequence[Input], start: int = 0) -> bytes:
        """One change of the bytes from ``start`` on (the header stays for field mutations)."""
        rng = self.rng
        body = bytearray(data[start:])
        op = rng.randrange(9)
        if not body and op < 5:
            op = 5
        if op == 0:
            i = rng.randrange(len(body))
            body[i] ^= 1 << rng.randrange(8)
        elif op == 1:
            body[rng.randrange(len(body))] = rng.getrandbits(8)
        elif op == 2:
            size = rng.choice((1, 2, 4))
            if len(body) >= size:
                i = rng.randrange(len(body) - size + 1)
                body[i:i + size] = rng.choice(INTERESTING[size]).to_bytes(size, "little")
        elif op == 3:
            i = rng.randrange(len(body))
            del body[i:i + rng.randrange(1, 17)]
        elif op == 4:
            i = rng.randrange(len(body))
            n = rng.randrange(1, 17)
            body[i:i] = body[i:i + n]
        elif op == 5:
            i = rng.randrange(len(body) + 1)
            body[i:i] = bytes(rng.getrandbits(8) for _ in range(rng.randrange(1, 9)))
        elif op in (6, 7) and self.tokens:
            tok = rng.choice(self.tokens)
            i = rng.randrange(len(body) + 1)
            body[i:i + (len(tok) if op == 6 else 0)] = tok
        else:
            other = self._other(corpus, None)
            if other is not None and other:
                cut = rng.randrange(len(body) + 1)
                body = body[:cut] + other[rng.randrange(len(other)):]
        return data[:start] + bytes(body)

    def _other(self, corpus: Sequence[Input], kind: Optional[str]) -> Optional[bytes]:
        if not corpus:
            return None
        cands = [c for c in corpus if kind is None or self.targets[c["t"]]["kind"] == kind]
        return self.rng.choice(cands)["data"] if cands else None

    # ---- comparison hints ---------------------------------------------------------------------
    def hints(self, inp: Input, cmps: Sequence[Tuple[int, int, int]]) -> List[Input]:
        """Inputs with a compared value replaced by what it was compared with. ``cmps``: kcov's
        comparison records (type, arg1, arg2); with KCOV_CMP_CONST (bit 0) arg1 is the constant."""
        data: bytes = inp["data"]
        out: List[Input] = []
        seen: set = set()
        for kind, a1, a2 in cmps:
            size = 1 << ((kind >> 1) & 3)
            pairs = [(a2, a1)] if kind & 1 else [(a2, a1), (a1, a2)]
            for old, new in pairs:
                mask = (1 << (8 * size)) - 1
                old, new = old & mask, new & mask
                if old == new or (size, old, new) in seen:
                    continue
                seen.add((size, old, new))
                token = new.to_bytes(size, "little")
                if size > 1 or kind & 1:
                    self.add_token(token)
                places = find_all(data, old.to_bytes(size, "little"))
                if len(places) > PLACES_PER_HINT:
                    places = self.rng.sample(places, PLACES_PER_HINT)
                for i in places:
                    out.append(dict(inp, data=data[:i] + token + data[i + size:]))
                    if len(out) >= HINTS_PER_INPUT:
                        return out
        return out

    def add_token(self, token: bytes) -> None:
        if token not in self.tokens:
            self.tokens.append(token)
            if len(self.tokens) > 256:
                self.tokens.pop(0)


def find_all(data: bytes, needle: bytes) -> List[int]:
    out: List[int] = []
    i = data.find(needle)
    while i >= 0:
        out.append(i)
        i = data.find(needle, i + 1)
    return out



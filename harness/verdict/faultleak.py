"""kmemleak's reports in a fault walk, each given to the point it belongs to. Pure.

The walker scans every few points (``guest/faultwalk.py``), with kmemleak's ``verbose`` on:
each report is a kernel record like any splat, printed by mm/kmemleak.c print_unreferenced(),
naming the task that allocated the object and its backtrace. The scan comes after the
module's unload, so the module's frames in it are bare addresses; the point is the one
whose process allocated the object, else the one whose load held those addresses.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Optional, Sequence

from harness.faultplan import PointRun
from harness.model import KmsgRecord
from harness.verdict import splat
from harness.verdict.faultpoint import KMEMLEAK, Consequence
from harness.verdict.trace import Frame

_COMM = re.compile(r'comm "([^"]*)", pid (\d+), jiffies (\d+)')
_RAW = re.compile(r"^0x([0-9a-f]+)$")
_SYM = re.compile(r"^(?P<func>[A-Za-z0-9_.$]+)\+0x(?P<off>[0-9a-f]+)/0x(?P<size>[0-9a-f]+)(?: \[(?P<mod>\w+)\])?$")


@dataclass(frozen=True)
class Leak:
    seq: int
    comm: str
    pid: Optional[int]
    frames: tuple[Frame, ...]  # symbolic frames as printed; bare addresses as frames named "0x..."
    raw: tuple[int, ...]  # the bare addresses among them (code that was gone when kmemleak printed)


def _body(text: str) -> str:
    return text[len("kmemleak: "):] if text.startswith("kmemleak: ") else text


def parse_leak(records: Sequence[KmsgRecord], seq: int) -> Optional[Leak]:
    """The report that starts at record ``seq``: who allocated the object and its backtrace."""
    at = next((i for i, r in enumerate(records) if r.seq == seq), None)
    if at is None:
        return None
    comm, pid, frames, raw = "", None, [], []
    in_trace = False
    for r in records[at + 1:at + 80]:
        if r.facility != records[at].facility:
            continue
        body = _body(r.text)
        if body.lstrip().startswith("unreferenced object"):
            break
        m = _COMM.search(body)
        if m and not in_trace:
            comm, pid = m.group(1), int(m.group(2))
        elif body.lstrip().startswith("backtrace"):
            in_trace = True
        elif in_trace:
            if not body.startswith("    "):
                break
            frame = _leak_frame(body.strip(), r.seq)
            if frame is not None:
                frames.append(frame)
                if frame.function.startswith("0x"):
                    raw.append(int(frame.function, 16))
    return Leak(seq, comm, pid, tuple(frames), tuple(raw))


def _leak_frame(text: str, seq: int) -> Optional[Frame]:
    text = re.sub(r"^\[<[0-9a-f]+>\]\s*", "", text)  # older kernels print the address first
    m = _SYM.match(text)
    if m:
        return Frame(m.group("func"), int(m.group("off"), 16), int(m.group("size"), 16), m.group("mod"), True,
                     "stack", seq)
    if _RAW.match(text):
        return Frame(text, 0, 0, None, True, "stack", seq)
    return None


def attribute_leaks(records: Sequence[KmsgRecord], runs: Sequence[PointRun], rules: Sequence[splat.SplatRule],
                    module: str) -> tuple[dict[tuple[str, int], list[tuple[Consequence, list[KmsgRecord]]]],
                                          list[Consequence]]:
    """kmemleak's reports of a guest, each given to the point it belongs to: the one whose process
    allocated the object, else the last one before the report whose load held a bare address of its
    backtrace or whose module a frame names. The rest (the kernel's own, the boot's) are returned apart."""
    out: dict[tuple[str, int], list[tuple[Consequence, list[KmsgRecord]]]] = {}
    stray: list[Consequence] = []
    by_pid = {p.pid: r for r in runs for p in r.procs if p.pid is not None}
    for s in splat.find(rules, records):
        if s.rule != KMEMLEAK or s.seq is None:
            continue
        leak = parse_leak(records, s.seq)
        c = Consequence(s.rule, s.text, s.seq)
        owner = by_pid.get(leak.pid) if leak is not None and leak.pid is not None else None
        if owner is None and leak is not None:
            before = [r for r in runs if r.seq_before is not None and r.seq_before < s.seq]
            named = any(f.module == module for f in leak.frames)
            owner = next((r for r in reversed(before) if named or any(_in_load(a, r) for a in leak.raw)), None)
        if owner is None:
            stray.append(c)
            continue
        out.setdefault((owner.phase, owner.n), []).append((c, report(records, s.seq)))
    return out, stray


def report(records: Sequence[KmsgRecord], seq: int, most: int = 80) -> list[KmsgRecord]:
    """The records of kmemleak's report that starts at ``seq``."""
    at = next((i for i, r in enumerate(records) if r.seq == seq), None)
    if at is None:
        return []
    out = [records[at]]
    for r in records[at + 1:at + most]:
        if r.facility == records[at].facility and (_body(r.text).startswith(" ")):
            out.append(r)
        elif r.facility == records[at].facility:
            break
    return out


def _in_load(address: int, run: PointRun) -> bool:
    """Whether an address is near the module's code in the point's load (within 1 MiB of a section)."""
    bases = list(run.sections.values()) + ([run.init_fn] if run.init_fn else [])
    return any(0 <= address - b < (1 << 20) for b in bases)

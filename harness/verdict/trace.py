"""A splat's call trace, read from the records that follow it. Pure: records in, frames out.

The kernel prints a report as a run of records: the splat's line,
then registers (``RIP: 0010:func+0x16/0x20 [mod]`` names where it happened),
``Call Trace:``, ``<TASK>``, one frame a record (`` func+0x68/0x1000 [mod]``,
`` ? func+...`` when the unwinder is not sure of it), ``</TASK>``, and an end
(``---[ end trace ...]---``, or KASAN's line of ``=``).
"""

from __future__ import annotations

import re
from typing import Optional, Sequence

from harness.model import KmsgRecord
from harness.outcomes import Frame
from harness.verdict.splat import console_text

_SYM = r"(?P<func>[A-Za-z0-9_.$]+)\+0x(?P<off>[0-9a-f]+)/0x(?P<size>[0-9a-f]+)(?: \[(?P<mod>[A-Za-z0-9_]+)\])?"
_FRAME = re.compile(r"^\s+(?P<unsure>\? )?" + _SYM + r"\s*$")
_RIP = re.compile(r"^RIP: [0-9a-f]{4}:" + _SYM + r"\s*$")
_END = re.compile(r"^(---\[ end trace|={20,}$|Kernel panic - not syncing)")
MAX_RECORDS = 300  # a report is shorter: beyond, it is something else


def report_records(records: Sequence[KmsgRecord], splat_seq: int) -> list[KmsgRecord]:
    """The records of the report that starts at ``splat_seq``, up to its end: the end line, or the
    end of its call trace (a NULL dereference's "BUG:" is printed at one level, its Oops at another)."""
    start = next((i for i, r in enumerate(records) if r.seq == splat_seq), None)
    if start is None:
        return []
    out = [records[start]]
    for r in records[start + 1:start + MAX_RECORDS]:
        if r.facility != records[start].facility:
            continue  # a userspace record in between (the runner's marks)
        out.append(r)
        if _END.match(r.text) or r.text.strip() == "</TASK>":
            break
    return out


def frames(report: Sequence[KmsgRecord]) -> list[Frame]:
    """The RIP frame first (where it happened), then the call trace's kernel-mode frames."""
    return _frames([(r.seq, r.text) for r in report])


def _frames(lines: Sequence[tuple[int, str]]) -> list[Frame]:
    out: list[Frame] = []
    in_trace = False
    for seq, text in lines:
        m = _RIP.match(text)
        if m and not in_trace:
            out.append(_frame(m, seq, "rip", True))
            continue
        if text.startswith("Call Trace:"):
            in_trace = True
            continue
        if not in_trace:
            continue
        if text.strip() == "</TASK>":
            in_trace = False
            continue
        m = _FRAME.match(text)
        if m:
            out.append(_frame(m, seq, "stack", m.group("unsure") is None))
    return out


def of_console(lines: Sequence[str], splat_text: str) -> list[Frame]:
    """The frames of a report seen only on the console (the guest died before its records were
    sent): the lines after the splat's, the kernel's prefixes taken off. Frames get seq -1."""
    texts = [t for t in (console_text(line) for line in lines) if t is not None]
    start = next((i for i, t in enumerate(texts) if t == splat_text), None)
    if start is None:
        return []
    report = [(-1, texts[start])]
    for t in texts[start + 1:start + MAX_RECORDS]:
        report.append((-1, t))
        if _END.match(t):
            break
    return _frames(report)


def _frame(m: re.Match[str], seq: int, where: str, reliable: bool) -> Frame:
    return Frame(function=m.group("func"), offset=int(m.group("off"), 16), size=int(m.group("size"), 16),
                 module=m.group("mod"), reliable=reliable, where=where, seq=seq)


def of_splat(records: Sequence[KmsgRecord], splat_seq: Optional[int]) -> list[Frame]:
    """The frames of the report a splat record starts (none for a splat seen only on the console)."""
    if splat_seq is None:
        return []
    return frames(report_records(records, splat_seq))


def in_modules(frames_: Sequence[Frame], modules: Sequence[str]) -> list[Frame]:
    """The frames of the given modules (the project's), most useful first: reliable ones, the RIP first."""
    mine = [f for f in frames_ if f.module in modules]
    return sorted(mine, key=lambda f: (not f.reliable, f.where != "rip"))


def describe_all(frames_: Sequence[Frame]) -> list[str]:
    """Each frame a line (and its inlined chain), a run of the same frame as one line with a count:
    a recursion that overran the stack is a few lines, not hundreds."""
    out: list[str] = []
    i = 0
    while i < len(frames_):
        j = i
        while j + 1 < len(frames_) and frames_[j + 1].describe() == frames_[i].describe():
            j += 1
        out.append(frames_[i].describe() + (f"  (x{j - i + 1})" if j > i else ""))
        i = j + 1
    return out

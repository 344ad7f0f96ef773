"""Parse ``/dev/kmsg`` records.

A record is ``prio,seq,usec,flags[,key=value...];text`` followed by zero or
more continuation lines starting with a space (`` SUBSYSTEM=pci``). The text
keeps the kernel's escaping: a newline inside a printk'd string arrives as
``\\x0a``, so one record can never be forged into two by userspace.

The parser works on any iterable of lines (a live stream, a recorded file, the
list the guest runner sends), in the way KUnit's parser does.
"""

from __future__ import annotations

import re
from typing import Iterable, Iterator, Optional

from harness.model import KmsgRecord

_HEADER = re.compile(r"^(\d+),(\d+),(\d+),([^,;]*)((?:,[^;]*)?);(.*)$", re.DOTALL)


class KmsgParseError(ValueError):
    pass


def parse_record(raw: str) -> KmsgRecord:
    """Parse one record, as one ``read()`` of ``/dev/kmsg`` returns it."""
    head, _, rest = raw.rstrip("\n").partition("\n")
    m = _HEADER.match(head)
    if not m:
        raise KmsgParseError(f"not a /dev/kmsg record: {head[:80]!r}")
    prio, seq, usec, flags, extra, text = m.groups()
    caller: Optional[str] = None
    for item in extra.split(",")[1:]:
        key, _, value = item.partition("=")
        if key == "caller":
            caller = value
    fields = []
    for line in rest.split("\n") if rest else []:
        key, sep, value = line.strip().partition("=")
        if sep:
            fields.append((key, value))
    p = int(prio)
    return KmsgRecord(
        level=p & 7,
        facility=p >> 3,
        seq=int(seq),
        usec=int(usec),
        text=text,
        flags=flags,
        caller=caller,
        fields=tuple(fields),
    )


def parse_records(lines: Iterable[str]) -> Iterator[KmsgRecord]:
    """Parse a stream of lines or of whole records; joins continuation lines.

    Lines that are not records (a truncated tail, blank lines) are skipped:
    a recorded log cut in the middle of a record still yields what it holds.
    """
    pending: Optional[str] = None
    for chunk in lines:
        for line in chunk.splitlines():
            if line.startswith(" ") and pending is not None:
                pending += "\n" + line
                continue
            if pending is not None:
                rec = _try_parse(pending)
                if rec is not None:
                    yield rec
            pending = line if _HEADER.match(line) else None
    if pending is not None:
        rec = _try_parse(pending)
        if rec is not None:
            yield rec


def _try_parse(raw: str) -> Optional[KmsgRecord]:
    try:
        return parse_record(raw)
    except KmsgParseError:
        return None


def unescape(text: str) -> str:
    """Undo the kernel's ``\\xNN`` escaping, for display only (never for matching splats)."""
    return re.sub(r"\\x([0-9a-f]{2})", lambda m: chr(int(m.group(1), 16)), text)


def gaps(records: Iterable[KmsgRecord]) -> list[tuple[int, int]]:
    """Sequence-number ranges missing between consecutive records (lost records)."""
    out = []
    prev: Optional[int] = None
    for r in records:
        if prev is not None and r.seq > prev + 1:
            out.append((prev + 1, r.seq - 1))
        prev = r.seq
    return out

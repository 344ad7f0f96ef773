"""Kernel splats (Oops, BUG, WARNING, panic, sanitizer reports) in kmsg records or console text.

Rules (``vm/splats.toml``) are anchored at the start of a record's text; only
records the kernel logged (facility 0) are looked at. See that file for why.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Iterable, Optional, Sequence

from harness import schema, userfile
from harness.model import KmsgRecord
from harness.verdict.kmsg import unescape


@dataclass(frozen=True)
class SplatRule:
    name: str
    regex: re.Pattern[str]
    reason: str
    scope: str = "always"  # "module": only when the module's frames are in the trace (or it names the module)
    source: str = ""  # where the kernel prints it
    once_unless: Optional[str] = None  # printed once per boot unless the kernel was booted with this parameter


@dataclass(frozen=True)
class Splat:
    rule: str
    reason: str
    text: str
    seq: Optional[int] = None

    def to_json(self) -> dict[str, Any]:
        return {"rule": self.rule, "reason": self.reason, "text": self.text, "seq": self.seq}


def parse_rules(data: dict[str, Any], where: str, text: str = "") -> tuple[SplatRule, ...]:
    """Rules from a parsed splats file (``vm/splats.toml``); ``where`` names it in errors."""
    m = userfile.check(schema.SplatRulesFile, userfile.Document(data, text, where))
    return tuple(SplatRule(r.name, re.compile(r.pattern), r.reason, r.scope, r.source, r.once_unless)
                 for r in m.splat)


KERNEL_FACILITY = 0  # what the kernel's own printk records carry; userspace writes get LOG_USER or more
LOGLEVEL_DEFAULT = 4  # a console line shows no level: printk's default (CONFIG_MESSAGE_LOGLEVEL_DEFAULT)


def classify(rules: Iterable[SplatRule], text: str) -> Optional[SplatRule]:
    """The first rule whose pattern matches at the start of ``text``."""
    return next((rule for rule in rules if rule.regex.match(text)), None)


def find(rules: Iterable[SplatRule], records: Sequence[KmsgRecord], modules: Sequence[str] = ()) -> list[Splat]:
    """Splats in kernel records (facility 0). A rule of scope "module" counts only when the record
    or the report that follows it (its call trace) names one of ``modules``."""
    rules = tuple(rules)
    out = []
    for i, r in enumerate(records):
        if r.facility != KERNEL_FACILITY:
            continue
        rule = classify(rules, r.text)
        if rule is None or (rule.scope == "module" and not _about(records, i, modules)):
            continue
        out.append(Splat(rule.name, rule.reason, r.text, r.seq))
    return out


REPORT_SPAN = 80  # records a report runs to after its first line (its trace), at most


def _about(records: Sequence[KmsgRecord], i: int, modules: Sequence[str]) -> bool:
    """Whether the report starting at ``records[i]`` names a module of ``modules`` (``[name]`` in a
    frame, or the name as a word) before the next report or the end of its trace."""
    if not modules:
        return False
    words = re.compile(r"(?<![A-Za-z0-9_-])(" + "|".join(re.escape(m) for m in modules) + r")(?![A-Za-z0-9_-])")
    for r in records[i:i + REPORT_SPAN]:
        if r.facility == KERNEL_FACILITY and words.search(r.text):
            return True
        if r is not records[i] and (r.text.startswith("---[ end trace") or r.text.startswith("=====")):
            break
    return False


# What the kernel puts before a record's text on the console: the time stamp, and with
# CONFIG_PRINTK_CALLER the caller ("[  T123]" a task, "[    C1]" a CPU).
_CONSOLE_PREFIX = re.compile(r"^\[\s*\d+\.\d+\](\[\s*[TC]\d+\])?\s?")


def console_text(line: str) -> Optional[str]:
    """A console line's record text, or None for a line that is no kernel record (no time stamp)."""
    m = _CONSOLE_PREFIX.match(line)
    return line[m.end():] if m else None


_CONSOLE_STAMP = re.compile(r"^\[\s*(\d+)\.(\d{6})\]")


def _stamp(line: str) -> int:
    m = _CONSOLE_STAMP.match(line)
    return int(m.group(1)) * 1_000_000 + int(m.group(2)) if m else -1


def console_after(console: str, usec: int) -> list[str]:
    """The record texts of the console lines after the last line stamped at or before ``usec``
    (a record's time stamp). The console is written as the kernel logs, the runner's stream of
    records lags behind it: what a dying guest printed after its last streamed record is here."""
    lines = console.splitlines()
    last = None
    for i, line in enumerate(lines):
        m = _CONSOLE_STAMP.match(line)
        if m and int(m.group(1)) * 1_000_000 + int(m.group(2)) <= usec:
            last = i
    if last is None:
        return []
    return [t for t in (console_text(line) for line in lines[last + 1:]) if t is not None]


def console_records(console: str, marker: Optional[str], streamed: Sequence[KmsgRecord]) -> list[KmsgRecord]:
    """What a guest that died printed on its console after the line holding ``marker`` and after its
    last ``streamed`` record, as records: one per console line (a stack dump prints one record per
    line), numbered on from the streamed ones, at the console's time stamps. The console shows no
    facility: these are the kernel's only as far as the kernel printed last (a step that wrote into
    /dev/kmsg in the instant before the guest died could stand among them)."""
    _, lines = split_console(console, marker)
    last = max(streamed, key=lambda r: r.seq) if streamed else None
    skip = not_kernel(streamed)
    out: list[KmsgRecord] = []
    seq = last.seq + 1 if last is not None else 0
    for line in lines:
        text, usec = console_text(line), _stamp(line)
        if text is None or (last is not None and usec <= last.usec) or (usec, text) in skip:
            continue
        out.append(KmsgRecord(level=LOGLEVEL_DEFAULT, facility=KERNEL_FACILITY, seq=seq, usec=usec, text=text))
        seq += 1
    return out


def split_console(console: str, marker: Optional[str]) -> tuple[list[str], list[str]]:
    """Console lines before the line holding ``marker`` (the guest runner's record before its first
    step: the boot) and from it on (the run). No marker there: it is all boot."""
    lines = console.splitlines()
    if marker is None:
        return [], lines
    at = next((i for i, line in enumerate(lines) if marker in line), len(lines))
    return lines[:at], lines[at:]


def find_in_console(rules: Iterable[SplatRule], console: str, marker: Optional[str] = None,
                    streamed: Sequence[KmsgRecord] = (), context: int = 30) -> tuple[list[Splat], str]:
    """Splats in the console lines of the run (after ``marker``; all lines when it is None). Only
    used when the guest died before its runner could send the records (a panic is only there).

    The console prints what userspace writes into /dev/kmsg like a kernel record, and a record
    whose text holds an escaped newline as two lines: a line that is the text of a ``streamed``
    userspace record, or a second line of a streamed record's own text, is never a splat.

    Returns the splats and an excerpt: from the first splat line, ``context`` lines on.
    """
    _, lines = split_console(console, marker)
    return _scan(tuple(rules), lines, context, not_kernel(streamed))


def not_kernel(records: Sequence[KmsgRecord]) -> set[tuple[int, str]]:
    """(time stamp, line) of every console line the ``records`` account for that is not the head
    of a kernel record: userspace records, and the lines after the first of any record's text."""
    out: set[tuple[int, str]] = set()
    for r in records:
        lines = unescape(r.text).split("\n")
        for k, line in enumerate(lines):
            if k or r.facility != KERNEL_FACILITY:
                out.add((r.usec, line))
    return out


def boot_splats_in_console(rules: Iterable[SplatRule], console: str, marker: Optional[str]) -> list[Splat]:
    boot, _ = split_console(console, marker)
    return _scan(tuple(rules), boot, 0)[0]


def _scan(rules: tuple[SplatRule, ...], lines: list[str], context: int,
          skip: Optional[set[tuple[int, str]]] = None) -> tuple[list[Splat], str]:
    out = []
    first = None
    for i, line in enumerate(lines):
        text = console_text(line)
        if text is not None and skip and (_stamp(line), text) in skip:
            continue
        rule = classify(rules, text) if text is not None else None
        if rule is not None and text is not None:
            out.append(Splat(rule.name, rule.reason, text))
            if first is None:
                first = i
    if first is None:
        return out, ""
    excerpt = lines[first:first + context]
    panic = next((i for i in range(len(lines) - 1, first + context - 1, -1) if "Kernel panic" in lines[i]), None)
    if panic is not None:  # a long backtrace sits between the splat and the panic: keep both ends
        excerpt += [f"[... {panic - first - context} console lines left out: see console.log ...]"]
        excerpt += lines[panic:panic + 10]
    return out, "\n".join(excerpt)

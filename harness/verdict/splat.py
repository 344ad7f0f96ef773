"""Kernel splats (Oops, BUG, WARNING, panic, sanitizer reports) in kmsg records or console text.

Rules (``vm/splats.toml``) are anchored at the start of a record's text; only
records the kernel logged (facility 0) are looked at. See that file for why.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Iterable, Optional

from harness.errors import UsageError
from harness.model import KmsgRecord


@dataclass(frozen=True)
class SplatRule:
    name: str
    regex: re.Pattern[str]
    reason: str


@dataclass(frozen=True)
class Splat:
    rule: str
    reason: str
    text: str
    seq: Optional[int] = None

    def to_json(self) -> dict[str, Any]:
        return {"rule": self.rule, "reason": self.reason, "text": self.text, "seq": self.seq}


def parse_rules(data: dict[str, Any], where: str) -> tuple[SplatRule, ...]:
    """Rules from a parsed splats file (``vm/splats.toml``); ``where`` names it in errors."""
    rules = []
    for i, d in enumerate(data.get("splat", [])):
        try:
            rules.append(SplatRule(d["name"], re.compile(d["pattern"]), d["reason"]))
        except KeyError as e:
            raise UsageError(f"{where}: [[splat]] #{i + 1} lacks {e}") from None
        except re.error as e:
            raise UsageError(f"{where}: [[splat]] #{i + 1} bad pattern: {e}") from None
    if not rules:
        raise UsageError(f"{where}: no [[splat]] rules")
    return tuple(rules)


KERNEL_FACILITY = 0  # what the kernel's own printk records carry; userspace writes get LOG_USER or more


def classify(rules: Iterable[SplatRule], text: str) -> Optional[SplatRule]:
    """The first rule whose pattern matches at the start of ``text``."""
    return next((rule for rule in rules if rule.regex.match(text)), None)


def find(rules: Iterable[SplatRule], records: Iterable[KmsgRecord]) -> list[Splat]:
    rules = tuple(rules)
    out = []
    for r in records:
        if r.facility != KERNEL_FACILITY:
            continue
        rule = classify(rules, r.text)
        if rule is not None:
            out.append(Splat(rule.name, rule.reason, r.text, r.seq))
    return out


# What the kernel puts before a record's text on the console: the time stamp, and with
# CONFIG_PRINTK_CALLER the caller ("[  T123]" a task, "[    C1]" a CPU).
_CONSOLE_PREFIX = re.compile(r"^\[\s*\d+\.\d+\](\[\s*[TC]\d+\])?\s?")


def console_text(line: str) -> Optional[str]:
    """A console line's record text, or None for a line that is no kernel record (no time stamp)."""
    m = _CONSOLE_PREFIX.match(line)
    return line[m.end():] if m else None


_CONSOLE_STAMP = re.compile(r"^\[\s*(\d+)\.(\d{6})\]")


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


def split_console(console: str, marker: Optional[str]) -> tuple[list[str], list[str]]:
    """Console lines before the line holding ``marker`` (the guest runner's record before its first
    step: the boot) and from it on (the run). No marker there: it is all boot."""
    lines = console.splitlines()
    if marker is None:
        return [], lines
    at = next((i for i, line in enumerate(lines) if marker in line), len(lines))
    return lines[:at], lines[at:]


def find_in_console(rules: Iterable[SplatRule], console: str, marker: Optional[str] = None,
                    context: int = 30) -> tuple[list[Splat], str]:
    """Splats in the console lines of the run (after ``marker``; all lines when it is None). Only
    used when the guest died before its runner could send the records (a panic is only there).

    Returns the splats and an excerpt: from the first splat line, ``context`` lines on.
    """
    _, lines = split_console(console, marker)
    return _scan(tuple(rules), lines, context)


def boot_splats_in_console(rules: Iterable[SplatRule], console: str, marker: Optional[str]) -> list[Splat]:
    boot, _ = split_console(console, marker)
    return _scan(tuple(rules), boot, 0)[0]


def _scan(rules: tuple[SplatRule, ...], lines: list[str], context: int) -> tuple[list[Splat], str]:
    out = []
    first = None
    for i, line in enumerate(lines):
        text = console_text(line)
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

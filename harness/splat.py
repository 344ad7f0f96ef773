"""Kernel splats (Oops, BUG, WARNING, panic, sanitizer reports) in kmsg records or console text."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Optional

from harness import tomlload
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

    def to_json(self) -> dict:
        return {"rule": self.rule, "reason": self.reason, "text": self.text, "seq": self.seq}


def load_rules(path: Path) -> tuple[SplatRule, ...]:
    data = tomlload.load(path)
    rules = []
    for i, d in enumerate(data.get("splat", [])):
        try:
            rules.append(SplatRule(d["name"], re.compile(d["pattern"]), d["reason"]))
        except KeyError as e:
            raise UsageError(f"{path}: [[splat]] #{i + 1} lacks {e}") from None
        except re.error as e:
            raise UsageError(f"{path}: [[splat]] #{i + 1} bad pattern: {e}") from None
    if not rules:
        raise UsageError(f"{path}: no [[splat]] rules")
    return tuple(rules)


def find(rules: Iterable[SplatRule], records: Iterable[KmsgRecord]) -> list[Splat]:
    rules = tuple(rules)
    out = []
    for r in records:
        for rule in rules:
            if rule.regex.search(r.text):
                out.append(Splat(rule.name, rule.reason, r.text, r.seq))
                break
    return out


_CONSOLE_PREFIX = re.compile(r"^\[\s*\d+\.\d+\]\s?")


def find_in_console(rules: Iterable[SplatRule], console: str, context: int = 30) -> tuple[list[Splat], str]:
    """Splats in console text (only used when the guest died before reporting records).

    Returns the splats and an excerpt: from the first splat line, ``context`` lines on.
    """
    rules = tuple(rules)
    lines = console.splitlines()
    out = []
    first = None
    for i, line in enumerate(lines):
        text = _CONSOLE_PREFIX.sub("", line)
        for rule in rules:
            if rule.regex.search(text):
                out.append(Splat(rule.name, rule.reason, text))
                if first is None:
                    first = i
                break
    if first is None:
        return out, ""
    excerpt = lines[first:first + context]
    panic = next((i for i in range(len(lines) - 1, first + context - 1, -1) if "Kernel panic" in lines[i]), None)
    if panic is not None:  # a long backtrace sits between the splat and the panic: keep both ends
        excerpt += [f"[... {panic - first - context} console lines left out: see console.log ...]"]
        excerpt += lines[panic:panic + 10]
    return out, "\n".join(excerpt)

"""``--record-trail``: a trail file written from a run's own records, that passes on the next boot.
Pure: records in, TOML out.

Every record the kernel logged (facility 0) between the first step and the last is an
``[[expect]]`` with its level, except

- the lines a first load of an unsigned out-of-tree module prints once per boot, which
  become ``[[allow]]`` entries;
- stack dumps and splats (the judge fails such a run before anything is recorded) and the
  kernel's own complaints about the module, which are never expected by themselves.

What changes from boot to boot must not be written as exact text: the run is made twice, on
two boots, and ``generalize`` turns the tokens that differ into patterns (and kernel
addresses and ``comm[pid]`` tokens, even when the two boots happened to agree). What was
generalized is listed, for the user to read. A file recorded this way carries the hash of its
body: re-recording over a file edited by hand keeps a backup first.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import re
from dataclasses import dataclass
from typing import Optional, Sequence

from harness.model import KmsgRecord
from harness.verdict import complaints
from harness.verdict.splat import KERNEL_FACILITY

# Printed once per boot on the first load of an out-of-tree module / an unsigned one.
TAINT_LINES = (
    (r"loading out-of-tree module taints kernel\.",
     "the first load of an out-of-tree module in a boot taints the kernel (once per boot)"),
    (r"module verification failed: signature and/or required key missing - tainting kernel",
     "the module is not signed and the kernel checks signatures (once per boot)"),
)
HASH_LINE = "# kmod-harness recorded this file; body sha256: "
# Tokens: a hex word (an address, 8 digits or more) whole, then words, numbers, spaces, the rest.
_TOKEN = re.compile(r"0x[0-9a-fA-F]+|(?<![A-Za-z0-9_])[0-9a-fA-F]{8,}(?![A-Za-z0-9_])|[A-Za-z_]+|\d+|\s+|.")
# Values that differ from boot to boot even when two boots agree: kernel addresses, a task's pid.
_VOLATILE = ((re.compile(r"^(0x)?ffff[0-9a-f]{12}$"), "(0x)?[0-9a-f]+", "kernel address"),)
_COMM_PID = re.compile(r"(\S+)\[(\d+)\]")


def toml_str(text: str) -> str:
    # A JSON string is a valid TOML basic string: the same escapes, \uXXXX for control characters.
    return json.dumps(text, ensure_ascii=False)


def _taint(text: str) -> Optional[tuple[str, str]]:
    for pattern, reason in TAINT_LINES:
        m = re.fullmatch(r"(\S+): " + pattern, text)
        if m:
            return re.escape(m.group(1)) + ": " + pattern, reason
    return None


@dataclass(frozen=True)
class Entry:
    """One expectation of a recorded trail."""

    level: int
    text: Optional[str] = None  # exact
    pattern: Optional[str] = None  # generalized
    count: int = 1
    note: str = ""  # what was generalized, in words


def recordable(records: Sequence[KmsgRecord]) -> tuple[list[KmsgRecord], dict[str, str]]:
    """The records a trail expects (kernel's, no taint line, no dump, no complaint) and the
    [[allow]] patterns for the taint lines, with their reasons."""
    keep: list[KmsgRecord] = []
    allows: dict[str, str] = {}
    for r in records:
        if r.facility != KERNEL_FACILITY:
            continue  # userspace's own writes to /dev/kmsg (the runner's marks among them)
        taint = _taint(r.text)
        if taint is not None:
            allows.setdefault(*taint)
        elif not complaints.is_dump(r.text) and complaints.known(r.text) is None:
            keep.append(r)
    return keep, allows


def generalize(first: Sequence[KmsgRecord], second: Sequence[KmsgRecord]) -> tuple[list[Entry], list[str]]:
    """Expectations that both runs' records match, and what was said of each change: tokens that
    differ become patterns; a record seen in one run only is left out (it is not the module's
    every-run behaviour), and said so."""
    said: list[str] = []
    matcher = difflib.SequenceMatcher(a=[_shape(r) for r in first], b=[_shape(r) for r in second], autojunk=False)
    entries: list[Entry] = []
    for op, i1, i2, j1, j2 in matcher.get_opcodes():
        if op == "equal":
            entries += [_entry(first[i], second[j]) for i, j in zip(range(i1, i2), range(j1, j2), strict=True)]
            continue
        pairs = min(i2 - i1, j2 - j1) if op == "replace" else 0
        entries += [_entry(first[i1 + k], second[j1 + k]) for k in range(pairs)]
        for r in list(first[i1 + pairs:i2]) + list(second[j1 + pairs:j2]):
            said.append(f"left out, seen on one boot only: <{r.level}> {r.text!r}")
    said += [f"generalized: {e.note}" for e in entries if e.note]
    return _counted(entries), said


def _shape(r: KmsgRecord) -> str:
    """A record with its numbers blanked: what two boots' records have in common."""
    return f"{r.level}:" + re.sub(r"0x[0-9a-fA-F]+|\d+", "#", r.text)


def _entry(a: KmsgRecord, b: KmsgRecord) -> Entry:
    ta, tb = _TOKEN.findall(a.text), _TOKEN.findall(b.text)
    level = a.level
    if ta == tb and not _volatile(ta):
        return Entry(level, text=a.text)
    out: list[str] = []
    changed: list[str] = []
    sm = difflib.SequenceMatcher(a=ta, b=tb, autojunk=False)
    for op, i1, i2, j1, j2 in sm.get_opcodes():
        if op == "equal":
            for k, tok in enumerate(ta[i1:i2]):
                cls = _volatile_class(tok, ta, i1 + k)
                if cls is None:
                    out.append(re.escape(tok))
                else:
                    out.append(cls[0])
                    changed.append(f"{tok!r} ({cls[1]})")
            continue
        x, y = "".join(ta[i1:i2]), "".join(tb[j1:j2])
        out.append(_class_of(x, y))
        changed.append(f"{x!r} / {y!r}")
    pattern = "".join(out)
    return Entry(level, pattern=pattern, note=f"<{level}> {a.text!r}: " + ", ".join(changed))


def _volatile(tokens: list[str]) -> bool:
    return any(_volatile_class(t, tokens, i) is not None for i, t in enumerate(tokens))


def _volatile_class(tok: str, tokens: list[str], i: int) -> Optional[tuple[str, str]]:
    for regex, cls, what in _VOLATILE:
        if regex.match(tok):
            return cls, what
    if tok.isdigit() and 0 < i < len(tokens) - 1 and tokens[i - 1] == "[" and tokens[i + 1] == "]" \
            and i >= 2 and not tokens[i - 2].isspace():
        return r"\d+", "a task's pid"
    return None


def _class_of(x: str, y: str) -> str:
    for regex, cls, _ in _VOLATILE:
        if regex.match(x) and regex.match(y):
            return cls
    if x.isdigit() and y.isdigit():
        return r"\d+"
    if re.fullmatch(r"-?\d+", x) and re.fullmatch(r"-?\d+", y):
        return r"-?\d+"
    if re.fullmatch(r"(0x)?[0-9a-fA-F]+", x) and re.fullmatch(r"(0x)?[0-9a-fA-F]+", y):
        return r"(0x)?[0-9a-fA-F]+"
    if re.fullmatch(r"[\w.-]+", x) and re.fullmatch(r"[\w.-]+", y):
        return r"[\w.-]+"
    if x and y and not re.search(r"\s", x + y):
        return r"\S+"
    return ".*?"


def _counted(entries: list[Entry]) -> list[Entry]:
    out: list[Entry] = []
    for e in entries:
        if out and (out[-1].level, out[-1].text, out[-1].pattern) == (e.level, e.text, e.pattern) and not e.note:
            last = out.pop()
            e = Entry(e.level, e.text, e.pattern, last.count + 1, last.note)
        out.append(e)
    return out


def trail_toml(records: Sequence[KmsgRecord], source: str, second: Optional[Sequence[KmsgRecord]] = None,
               said: Optional[list[str]] = None) -> str:
    """The trail of ``records`` (the run's window), as a trail file; with ``second`` (the same run
    on another boot), generalized over both. ``said`` collects what was generalized or left out."""
    keep, allows = recordable(records)
    if second is not None:
        entries, notes = generalize(keep, recordable(second)[0])
        if said is not None:
            said += notes
    else:
        entries = _counted([Entry(r.level, text=r.text) for r in keep])
    body = _body(entries, allows, source)
    return f"{HASH_LINE}{body_hash(body)}\n{body}"


def _body(entries: Sequence[Entry], allows: dict[str, str], source: str) -> str:
    head = [
        f"# Recorded by `harness run --record-trail` from {source}.",
        "# Each [[expect]] must appear in this order: `text` matches a record's text exactly,",
        "# `pattern` (a Python regex for the whole text) where a value changed between the two",
        "# boots it was recorded on; `level` is checked when given. [[allow]] lists records that",
        "# may appear (or not) without failing the run, with the reason. Edit freely: a later",
        "# --record-trail keeps a backup of a file changed by hand.",
        "",
        "strict = false",
        "",
    ]
    expects = []
    for e in entries:
        lines = ["[[expect]]"] + ([f"# {e.note}"] if e.note else []) + [f"level = {e.level}"]
        lines.append(f"text = {toml_str(e.text)}" if e.text is not None else f"pattern = {toml_str(str(e.pattern))}")
        if e.count > 1:
            lines.append(f"count = {e.count}")
        expects.append("\n".join(lines) + "\n")
    allow = [f"[[allow]]\npattern = {toml_str(p)}\nreason = {toml_str(why)}\n" for p, why in allows.items()]
    if not expects:
        head += ["# The module logged nothing between the first step and the last, on either boot: the trail",
                 "# expects no record (records that come later are \"other\", and fail the run only if strict).",
                 "expect = []", ""]
    return "\n".join(head) + "\n" + "\n".join(expects + allow)


def body_hash(body: str) -> str:
    return hashlib.sha256(body.encode()).hexdigest()[:16]


def edited_by_hand(text: str) -> bool:
    """Whether an existing trail file differs from what --record-trail wrote (or was never recorded)."""
    first, _, body = text.partition("\n")
    return not first.startswith(HASH_LINE) or first[len(HASH_LINE):].strip() != body_hash(body)

"""Kernel complaints about the module that are not crashes. Pure: records in, complaints out.

A module can pass its steps and trail while the kernel complains about it: sysprog21/fibdrv's
init returns its major number, and every insmod then logs ``do_init_module: 'fibdrv'->init
suspiciously returned 240, it should follow 0/-E convention`` with a full stack dump, at
warning level. Such a run must not pass unless the project says the complaint is intended.

A complaint is a record the kernel logged (facility 0) in the run's window, at warning level
or worse (0-4), that the trail neither expects nor allows, and that either

- names one of the project's modules (as a word: ``fibdrv``, ``'fibdrv'``, ``[fibdrv]``), or
- opens a stack dump (``CPU: 0 PID: 139 Comm: insmod ...``, printed by lib/dump_stack.c
  dump_stack_print_info()) while the module is loaded: the complaint then quoted is the record
  before the dump that says why (the dump itself varies from boot to boot).

Some complaints are benign and allowed by the harness itself (ALLOWED), each with its reason,
and listed in the report as allowed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Optional, Sequence

from harness.model import KmsgRecord
from harness.verdict import trail as trail_mod

WARNING = 4  # KERN_WARNING; lower is worse

# The kernel's messages about a module it loads, by where it prints them (Linux 6.12). Each is a
# complaint (unless allowed), and --record-trail never turns one into an expectation.
KNOWN = (
    # kernel/module/main.c do_init_module(): pr_warn + dump_stack()
    (r"do_init_module: '(?P<m>[^']+)'->init suspiciously returned -?\d+, it should follow 0/-E convention",
     "kernel/module/main.c do_init_module()"),
    # kernel/module/main.c resolve_symbol_wait() / check_version(): the module needs what the kernel lacks
    (r"(?P<m>\S+): Unknown symbol \S+", "kernel/module/main.c resolve_symbol_wait()"),
    (r"(?P<m>\S+): disagrees about version of symbol \S+", "kernel/module/version.c check_version()"),
    # kernel/params.c parse_args(): an insmod parameter the module does not have
    (r"(?P<m>\S+): [Uu]nknown parameter `[^']*'( ignored)?", "kernel/params.c parse_one()/parse_args()"),
    # kernel/module/main.c module_augment_kernel_taints() / module_license_taint_check()
    (r"(?P<m>\S+): module license '[^']*' taints kernel\.", "kernel/module/main.c module_license_taint_check()"),
    (r"(?P<m>\S+): module is from the staging directory, the quality is unknown, you have been warned\.",
     "kernel/module/main.c module_augment_kernel_taints()"),
)

# Benign complaints, allowed unless a trail says otherwise: printed once per boot for any
# unsigned out-of-tree module (kernel/module/main.c module_augment_kernel_taints(),
# kernel/module/signing.c module_sig_check()).
ALLOWED = (
    (r"(?P<m>\S+): loading out-of-tree module taints kernel\.",
     "the first load of an out-of-tree module in a boot taints the kernel (once per boot)"),
    (r"(?P<m>\S+): module verification failed: signature and/or required key missing - tainting kernel",
     "the module is not signed and the kernel checks signatures (once per boot)"),
)

# lib/dump_stack.c dump_stack_print_info(): the first line of every stack dump (WARN, BUG, dump_stack()).
DUMP_HEAD = re.compile(r"CPU: \d+ (UID: \d+ )?PID: \d+ Comm: ")
# The lines a dump continues with: the hardware, registers, the call trace and its frames.
DUMP_BODY = re.compile(r"\s*(Hardware name: |Call Trace:|<TASK>|</TASK>|<IRQ>|</IRQ>|RIP: |RSP: |RAX: |RDX: |RBP: |"
                       r"R\d+: |FS: |CS: |CR2: |DR\d: |Code: |Workqueue: |Modules linked in:|\s+\?? ?\S+\+0x)")


NAMES, DUMP, KNOWN_KIND = "names the module", "stack dump", "known"


@dataclass(frozen=True)
class Complaint:
    record: KmsgRecord  # the record quoted: what the kernel said
    why: str  # in words: what makes it a complaint, or the KNOWN source that prints it
    kind: str = NAMES  # NAMES (maybe the module's own warning), DUMP or KNOWN_KIND (the kernel's about it)
    allowed_by: Optional[str] = None  # the reason it is allowed (a trail's [[allow]] or ALLOWED)

    @property
    def the_kernels(self) -> bool:
        """Said by the kernel about the module (never recorded as expected), not maybe by the module itself."""
        return self.kind != NAMES

    def to_json(self) -> dict[str, object]:
        return {"seq": self.record.seq, "level": self.record.level, "text": self.record.text, "why": self.why,
                "kind": self.kind, "allowed_by": self.allowed_by}


# A printk of several lines is one record, its newlines escaped (do_init_module() adds "loading
# module anyway..." on a line of its own).
_MORE_LINES = r"(?:\\x0a.*)?"


def known(text: str) -> Optional[str]:
    """The kernel source that prints ``text``, when it is one of the known complaints about a module."""
    return next((src for pattern, src in KNOWN if re.fullmatch(pattern + _MORE_LINES, text)), None)


def benign(text: str) -> Optional[str]:
    return next((why for pattern, why in ALLOWED if re.fullmatch(pattern, text)), None)


def names(text: str, modules: Sequence[str]) -> bool:
    return any(re.search(rf"(?<![A-Za-z0-9_-]){re.escape(m)}(?![A-Za-z0-9_-])", text) for m in modules)


def is_dump(text: str) -> bool:
    return bool(DUMP_HEAD.match(text) or DUMP_BODY.match(text))


def find(records: Sequence[KmsgRecord], modules: Sequence[str], loaded: tuple[Optional[int], Optional[int]],
         expected: Optional[trail_mod.Trail], allow: Sequence[trail_mod.Allowance] = ()) -> list[Complaint]:
    """Every complaint in ``records`` (the run's window, kernel records only), allowed ones included.
    ``loaded``: the sequence numbers between which the module was loaded (None: open)."""
    out: list[Complaint] = []
    seen: set[int] = set()
    for i, r in enumerate(records):
        if r.level > WARNING or r.seq in seen:
            continue
        if DUMP_HEAD.match(r.text):
            if not _within(r.seq, loaded):
                continue
            cause = _cause(records, i)
            quoted = cause if cause is not None else r
            if quoted.seq in seen:
                continue
            seen.add(quoted.seq)
            source = known(quoted.text)
            out.append(_judged(quoted, f"printed by {source}, with a stack dump" if source else
                               "a stack dump while the module was loaded", DUMP, expected, allow))
        elif names(r.text, modules) and not is_dump(r.text):
            seen.add(r.seq)
            source = known(r.text)
            out.append(_judged(r, f"printed by {source}" if source else "a warning that names the module",
                               KNOWN_KIND if source else NAMES, expected, allow))
    return [c for c in out if not _expected(c.record, expected)]


def _cause(records: Sequence[KmsgRecord], i: int) -> Optional[KmsgRecord]:
    """The record just before a dump that says why it was printed (a warning or worse), if any."""
    for r in reversed(records[max(0, i - 3):i]):
        if r.level <= WARNING and not is_dump(r.text):
            return r
    return None


def _within(seq: int, loaded: tuple[Optional[int], Optional[int]]) -> bool:
    start, end = loaded
    return (start is None or seq > start) and (end is None or seq <= end)


def _expected(r: KmsgRecord, expected: Optional[trail_mod.Trail]) -> bool:
    return expected is not None and any(e.matches_text(r) for e in expected.expect)


def _judged(r: KmsgRecord, why: str, kind: str, expected: Optional[trail_mod.Trail],
            allow: Sequence[trail_mod.Allowance]) -> Complaint:
    for a in tuple(expected.allow if expected is not None else ()) + tuple(allow):
        if a.regex.search(r.text):
            return Complaint(r, why, kind, allowed_by=a.reason)
    return Complaint(r, why, kind, allowed_by=benign(r.text))


def allow_entry(c: Complaint) -> str:
    """The [[allow]] a project adds to a trail file when the complaint is intended."""
    from harness.verdict.record import toml_str

    pattern = "^" + re.sub(r"([.^$*+?{}\[\]\\|()])", r"\\\1", c.record.text) + "$"
    return f"[[allow]]\npattern = {toml_str(pattern)}\nreason = \"...why this is intended...\""

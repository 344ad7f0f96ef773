"""``--record-trail``: a trail file written from a run's own records. Pure: records in, TOML out.

Every record the kernel logged between the first step and the last is an
``[[expect]]`` with its level, except the lines a first load of an unsigned
out-of-tree module prints once per boot, which become ``[[allow]]`` entries.
The file is a starting point: the developer edits it (a pattern for a number
that changes, a record that is not the module's business).
"""

from __future__ import annotations

import json
import re
from typing import Optional, Sequence

from harness.model import KmsgRecord
from harness.verdict.splat import KERNEL_FACILITY

# Printed once per boot on the first load of an out-of-tree module / an unsigned one.
TAINT_LINES = (
    (r"loading out-of-tree module taints kernel\.",
     "the first load of an out-of-tree module in a boot taints the kernel (once per boot)"),
    (r"module verification failed: signature and/or required key missing - tainting kernel",
     "the module is not signed and the kernel checks signatures (once per boot)"),
)


def _toml_str(text: str) -> str:
    # A JSON string is a valid TOML basic string: the same escapes, \uXXXX for control characters.
    return json.dumps(text, ensure_ascii=False)


def _taint(text: str) -> Optional[tuple[str, str]]:
    for pattern, reason in TAINT_LINES:
        m = re.fullmatch(r"(\S+): " + pattern, text)
        if m:
            return re.escape(m.group(1)) + ": " + pattern, reason
    return None


def trail_toml(records: Sequence[KmsgRecord], source: str) -> str:
    """The trail of ``records`` (the run's window), as a trail file; ``source`` says where they came from."""
    expects: list[str] = []
    allows: dict[str, str] = {}
    for r in records:
        if r.facility != KERNEL_FACILITY:
            continue  # userspace's own writes to /dev/kmsg (the runner's marker among them)
        taint = _taint(r.text)
        if taint is not None:
            allows.setdefault(*taint)
            continue
        expects.append(f"[[expect]]\nlevel = {r.level}\ntext = {_toml_str(r.text)}\n")
    head = [
        f"# Recorded by `harness run --record-trail` from {source}.",
        "# Each [[expect]] must appear in this order: `text` matches a record's text exactly,",
        "# `pattern` (a Python regex for the whole text) can replace it where a value changes",
        "# from run to run; `level` is checked when given. [[allow]] lists records that may",
        "# appear (or not) without failing the run, with the reason.",
        "",
        "strict = false",
        "",
    ]
    allow = [f"[[allow]]\npattern = {_toml_str(p)}\nreason = {_toml_str(why)}\n" for p, why in allows.items()]
    if not expects:
        head.append("# The run logged nothing between its first step and its last: a trail needs at least one")
        head.append("# [[expect]] entry. Add the record the module should log, or make the module log one.")
    return "\n".join(head) + "\n" + "\n".join(expects + allow)

"""A finding's repro: a standalone step script, and the ``[[step]]`` that runs it.

The script is ``harness/guest/fuzzexec.py`` (the very code the fuzzer sent the input with)
followed by the inputs and a ``main`` that sends them in order. It needs nothing but the
guest's python3, and the module loaded: as a ``[[step]]`` (``when = "loaded"``, the
default) it makes ``harness run`` reproduce the crash on any kernel, and pass once the
module is fixed. Pure text: nothing here writes files.
"""

from __future__ import annotations

import json
import re
import struct
from typing import Any, Sequence

from harness import resources
from harness.guest import fuzzmut

REPRO_DIR = "repro"  # under the project's directory (the guest's /project)
STEP_TIMEOUT = 60


def slug(text: str, limit: int = 40) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:limit].strip("-") or "crash"


def describe(target: dict[str, Any], inp: dict[str, Any]) -> list[str]:
    """What an input is, for people: a netlink send's headers field by field, else its size."""
    data: bytes = inp["data"]
    if target["kind"] != "netlink":
        what = f"ioctl {inp['cmd']:#x}, " if inp["op"] == "ioctl" else ""
        return [f"{target['kind']} {target['path']}: {inp['op']} ({what}{len(data)} bytes)"]
    out = [f"netlink protocol {target['protocol']}: one send of {len(data)} bytes"]
    heads = fuzzmut.headers(data)
    if not heads:
        out.append("  shorter than a netlink header (16 bytes)")
    for off in heads:
        length, mtype, flags, seq, pid = struct.unpack_from("=IHHII", data, off)
        who = " (the sender's own port)" if pid == fuzzmut.PORT else " (the kernel's own socket)" if pid == 0 else ""
        out.append(f"  at {off}: nlmsg_len={length} type={mtype} flags={flags:#x} seq={seq} pid={pid:#x}{who}")
    return out


def script(name: str, targets: Sequence[dict[str, Any]], case: Sequence[dict[str, Any]], about: Sequence[str]) -> str:
    """The repro's text. ``case``: the inputs in order (data as bytes); ``about``: comment lines."""
    used = sorted({int(i["t"]) for i in case})
    keep = {t: {k: v for k, v in targets[t].items() if k in ("kind", "protocol", "path")} for t in used}
    head = ["#!/usr/bin/env python3", f"# {name}: a crash found by `harness fuzz` (kmod-harness).", "#"]
    head += [f"# {line}" if line else "#" for line in about]
    head += ["#", "# What it sends:"] + [f"#   {line}" for i in case for line in describe(targets[i["t"]], i)]
    head += ["#", "# As a step of harness.toml (the module loaded; it crashes the kernel until the module is fixed):"]
    head += [f"#   {line}" for line in step_toml(name).splitlines()]
    body = resources.guest_file("fuzzexec.py").read_text()
    # annotated (as strings: never evaluated, so any guest's Python runs it) for a type checker's sake
    tail = ["", "", f"TARGETS: 'Dict[str, Dict[str, Any]]' = {json.dumps(keep)}", "INPUTS: 'list[Dict[str, Any]]' = ["]
    tail += [f"    {{'t': {int(i['t'])}, 'op': {i['op']!r}, 'cmd': {int(i.get('cmd', 0)):#x}, "
             f"'data': bytes.fromhex({i['data'].hex()!r})}}," for i in case]
    tail += ["]", "", "", "def main() -> int:",
             "    for n, inp in enumerate(INPUTS):",
             "        target = TARGETS[str(inp['t'])]",
             "        err = run_input(target, inp)",
             "        print('input %d: %s %s, %d bytes: %s' % (n + 1, target['kind'], inp['op'], len(inp['data']),",
             "              'errno %d (%s)' % (err, os.strerror(err)) if err else 'done'), flush=True)",
             "    return 0", "", "", "if __name__ == '__main__':", "    raise SystemExit(main())", ""]
    return "\n".join(head) + "\n" + body + "\n".join(tail)


def step_toml(name: str) -> str:
    """The ``[[step]]`` that adds the repro to a project."""
    return (f'[[step]]\nname = "{name}"\nrun = ["python3", "/project/{REPRO_DIR}/{name}.py"]\n'
            f"timeout = {STEP_TIMEOUT}\n")

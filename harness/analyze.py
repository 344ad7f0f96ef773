"""From what the guest reported (or failed to report) to a verdict. Pure: no I/O.

Order of judgement, worst first: a splat in the kernel log (or, when the guest
died before reporting, in the console); a guest that never reported; a step
that timed out; a step that failed; a trail that does not match.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional, Sequence

from harness import kmsg, splat, trail
from harness.model import KmsgRecord, StepResult, Verdict


@dataclass
class Judgement:
    verdict: Verdict
    reason: str
    records: list[KmsgRecord] = field(default_factory=list)
    steps: list[StepResult] = field(default_factory=list)
    trail: Optional[trail.TrailMatch] = None
    splats: list[splat.Splat] = field(default_factory=list)
    console_excerpt: str = ""


def steps_from_guest(guest: dict[str, Any]) -> list[StepResult]:
    out = []
    for s in guest.get("steps", []):
        out.append(StepResult(
            name=s["name"], argv=list(s.get("argv", [])), returncode=s.get("returncode"),
            stdout=s.get("stdout", ""), stderr=s.get("stderr", "") or s.get("reason", ""),
            seconds=s.get("seconds", 0.0), timed_out=s.get("timed_out", False),
            kmsg_seq_before=s.get("kmsg_seq_before"), kmsg_seq_after=s.get("kmsg_seq_after"),
            skipped=s.get("skipped", False),
        ))
    return out


def window(records: Sequence[KmsgRecord], steps: Sequence[StepResult]) -> list[KmsgRecord]:
    """Records from the start of the first step to the end of the last one that ran."""
    ran = [s for s in steps if s.returncode is not None or s.timed_out]
    if not ran:
        return []
    start = ran[0].kmsg_seq_before
    end = ran[-1].kmsg_seq_after
    return [r for r in records if (start is None or r.seq > start) and (end is None or r.seq <= end)]


def boot_breakdown(marks: dict[str, float], guest: Optional[dict[str, Any]],
                   records: Sequence[KmsgRecord]) -> dict[str, float]:
    """Split the vm phase: host start to kernel start (vng, initramfs, QEMU, firmware), kernel to
    its init, init to the guest runner (virtme-ng-init, udev), guest steps, and shutdown."""
    out: dict[str, float] = {}
    if "kernel" in marks:
        out["qemu_to_kernel"] = marks["kernel"] - marks["start"]
    init = next((r.seconds for r in records if r.text.startswith("Run /init as init process")), None)
    if init is not None:
        out["kernel_to_init"] = init
        if guest and "uptime_at_start" in guest:
            out["init_to_runner"] = guest["uptime_at_start"] - init
    if guest and "seconds" in guest:
        out["guest_steps"] = guest["seconds"]
    if "result" in marks and "end" in marks:
        out["shutdown"] = marks["end"] - marks["result"]
    return {k: round(v, 3) for k, v in out.items()}


def judge(
    guest: Optional[dict[str, Any]],
    console: str,
    expected: trail.Trail,
    rules: Sequence[splat.SplatRule],
    expect_rc: dict[str, int],
    vm_timed_out: bool = False,
    last_step: Optional[str] = None,
) -> Judgement:
    if guest is None:
        found, excerpt = splat.find_in_console(rules, console)
        if found:
            return Judgement(Verdict.CRASH, f"the guest died: {found[0].text}", splats=found,
                             console_excerpt=excerpt)
        if vm_timed_out:
            running = f" (guest step {last_step!r} was still running)" if last_step else " (during boot)"
            return Judgement(Verdict.TIMEOUT, f"the guest did not finish in time{running}; see console.log",
                             console_excerpt="\n".join(console.splitlines()[-30:]))
        return Judgement(Verdict.INFRA, "the guest ended without reporting a result; see console.log",
                         console_excerpt="\n".join(console.splitlines()[-30:]))

    records = list(kmsg.parse_records(guest.get("kmsg", [])))
    steps = steps_from_guest(guest)
    win = window(records, steps)
    j = Judgement(Verdict.PASS, "", records=records, steps=steps)
    j.splats = splat.find(rules, win)
    if j.splats:
        j.verdict, j.reason = Verdict.CRASH, f"kernel splat: {j.splats[0].text}"
        return j
    for s in steps:
        if s.timed_out:
            j.verdict, j.reason = Verdict.TIMEOUT, f"guest step {s.name!r} timed out"
            return j
    for s in steps:
        if s.returncode is None:
            continue
        want = expect_rc.get(s.name, 0)
        if s.returncode != want:
            msg = (s.stderr or s.stdout).strip().splitlines()
            j.verdict = Verdict.FAIL
            j.reason = f"guest step {s.name!r} exited {s.returncode} (expected {want})" + (
                f": {msg[-1]}" if msg else "")
            return j
    j.trail = trail.match(expected, win)
    if guest.get("kmsg_lost"):
        j.trail.problems.append(f"{guest['kmsg_lost']} kernel log records were lost (buffer overrun)")
        j.trail.ok = False
    if not j.trail.ok:
        j.verdict, j.reason = Verdict.FAIL, "printk trail mismatch:\n" + j.trail.diff()
        return j
    j.reason = f"{len(j.trail.matched)} trail records matched"
    return j

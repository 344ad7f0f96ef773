"""From what the guest reported (or failed to report) to a verdict. Pure: no I/O.

Order of judgement, worst first: a splat in the kernel log (or, when the guest
died before reporting, in the console); a guest that never reported; a step
that timed out; a step that failed; a trail that does not match; and last, a
run that would pass but whose kernel had switched its own checks off while
booting (see ``checks_lost``): that run cannot vouch for the module.
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
    # Splats logged before the first guest step: not the module's doing, but reported.
    boot_splats: list[splat.Splat] = field(default_factory=list)
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


def before_steps(records: Sequence[KmsgRecord], steps: Sequence[StepResult]) -> list[KmsgRecord]:
    """Records logged before the first step that ran: the boot (all of them when no step ran)."""
    ran = [s for s in steps if s.returncode is not None or s.timed_out]
    if ran and ran[0].kmsg_seq_before is None:
        return []
    start = ran[0].kmsg_seq_before if ran else None
    return [r for r in records if start is None or r.seq <= start]


# The kernel prints this when a report taints it: lockdep is off from then on.
LOCKDEP_OFF = "Disabling lock debugging due to kernel taint"


def checks_lost(before: Sequence[KmsgRecord], boot_splats: Sequence[splat.Splat]) -> Optional[str]:
    """What a splat logged before the first guest step cost the run's checks, if anything.

    A boot-time splat is not the module's doing (so it is no crash verdict), but it
    can blind the kernel: a report that taints it turns lock debugging off, and
    KASAN, unless booted with ``kasan_multi_shot``, reports only its first error.
    Seen here: a debug 6.12 kernel under TCG reported a KASAN wild-memory-access
    in an interrupt ~1 s into 3 of the 5 boots of one CI run
    (tests/data/kasan_boot_report; vm.config_params now avoids that one).
    """
    if not boot_splats:
        return None
    lost = []
    if any(r.text.startswith(LOCKDEP_OFF) for r in before):
        lost.append("lock debugging (lockdep) was switched off")
    cmdline = next((r.text for r in before if r.text.startswith("Command line:")), "")
    if any(s.rule == "kasan" or "KASAN:" in s.text for s in boot_splats) and "kasan_multi_shot" not in cmdline.split():
        lost.append("KASAN, booted without kasan_multi_shot, reports no further error")
    return " and ".join(lost) or None


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
    before = before_steps(records, steps)
    j.boot_splats = splat.find(rules, before)
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
    lost = checks_lost(before, j.boot_splats)
    if lost:
        j.verdict = Verdict.INFRA
        j.reason = (f"the kernel reported a bug while booting, before any guest step ({j.boot_splats[0].text}),"
                    f" and {lost}: this run cannot vouch for the module (its trail matched);"
                    " see console.log, and report it against the kernel if it recurs")
        return j
    j.reason = f"{len(j.trail.matched)} trail records matched"
    return j

"""From what the guest reported (or failed to report) to a verdict. Pure: no I/O.

Order of judgement, worst first:

1. a splat in a kernel record of the run (after the runner's marker); when the
   guest died before its runner could send records, a splat in the console;
2. a guest that did not finish: ``timeout`` when the harness ended it at its
   limit, ``infra`` otherwise, each naming how it ended and what was running;
3. a step that timed out; 4. a step that exited other than expected;
5. a KUnit case that failed (or never finished), read from its test module's KTAP;
6. a trail that does not match;
7. and last, a run that would pass but whose kernel switched its own checks off
   while booting (see ``checks_lost``): that run cannot vouch for the module.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Mapping, Optional, Sequence

from harness.guest import contract
from harness.guest.contract import GuestReport, StepReport
from harness.model import KmsgRecord, Verdict
from harness.verdict import kmsg, ktap, splat, trail


@dataclass(frozen=True)
class Evidence:
    """What a guest run left: the runner's report (None: not one event arrived) and the console."""

    report: Optional[GuestReport]
    console: str = ""
    timed_out: bool = False  # the harness ended the guest at its time limit
    ended: str = ""  # how the guest ended, in a few words ("virtme-ng exited 255")
    running: Optional[str] = None  # the step that had started and not ended
    marker: Optional[str] = None  # the text of the runner's marker record: console lines after it are the run's


@dataclass(frozen=True)
class Judgement:
    verdict: Verdict
    reason: str
    records: tuple[KmsgRecord, ...] = ()
    steps: tuple[StepReport, ...] = ()
    trail: Optional[trail.TrailMatch] = None
    splats: tuple[splat.Splat, ...] = ()
    boot_splats: tuple[splat.Splat, ...] = ()  # logged before the first guest step: not the module's
    console_excerpt: str = ""
    marker_seq: Optional[int] = None
    kunit: tuple[ktap.Case, ...] = ()  # the KUnit cases of the test modules loaded, in order


def run_start(report: GuestReport, records: Sequence[KmsgRecord], marker: Optional[str] = None) -> Optional[int]:
    """The sequence number after which records are the run's: the runner's marker record (as the
    runner reported it, or found by its text), or for a report without one, the first step's start."""
    if report.marker_seq is not None:
        return report.marker_seq
    found = next((r.seq for r in records if marker and r.facility != splat.KERNEL_FACILITY and r.text == marker),
                 None)
    if found is not None:
        return found
    ran = [s for s in report.steps if s.ran]
    if ran:
        return ran[0].kmsg_seq_before
    return records[-1].seq if records else None


def window(report: GuestReport, records: Sequence[KmsgRecord], marker: Optional[str] = None) -> list[KmsgRecord]:
    """The run's records: after the marker, up to the end of the last step that ran (up to the
    last record when the guest died and the report was rebuilt from its events)."""
    start = run_start(report, records, marker)
    ran = [s for s in report.steps if s.ran]
    end = ran[-1].kmsg_seq_after if ran and report.complete else None
    return [r for r in records if (start is None or r.seq > start) and (end is None or r.seq <= end)]


def boot_records(report: GuestReport, records: Sequence[KmsgRecord], marker: Optional[str] = None
                 ) -> list[KmsgRecord]:
    start = run_start(report, records, marker)
    return [r for r in records if start is None or r.seq <= start]


def the_modules(records: Sequence[KmsgRecord]) -> list[KmsgRecord]:
    """Records for the trail: without the runner's own marks (userspace records it writes
    around each step), which are no part of any module's trail."""
    return [r for r in records
            if r.facility == splat.KERNEL_FACILITY or not r.text.startswith(contract.HARNESS_RECORD)]


# The kernel prints this when a report taints it: lockdep is off from then on.
LOCKDEP_OFF = "Disabling lock debugging due to kernel taint"


def checks_lost(before: Sequence[KmsgRecord], boot_splats: Sequence[splat.Splat]) -> Optional[str]:
    """What a splat logged before the first guest step cost the run's checks, if anything.

    A boot-time splat is not the module's doing (so it is no crash verdict), but it
    can blind the kernel: a report that taints it turns lock debugging off, and
    KASAN, unless booted with ``kasan_multi_shot``, reports only its first error
    (recorded: tests/data/kasan_boot_report).
    """
    if not boot_splats:
        return None
    lost = []
    if any(r.text.startswith(LOCKDEP_OFF) for r in before):
        lost.append("lock debugging (lockdep) was switched off")
    cmdline = next((r.text for r in before if r.text.startswith("Command line:")), "")
    if any(s.rule == "kasan" for s in boot_splats) and "kasan_multi_shot" not in cmdline.split():
        lost.append("KASAN, booted without kasan_multi_shot, reports no further error")
    return " and ".join(lost) or None


def kunit_cases(report: GuestReport, records: Sequence[KmsgRecord], names: Sequence[str],
                console: str = "") -> tuple[ktap.Case, ...]:
    """The KUnit cases of each step of ``names`` (a test module's insmod): the KTAP in the kernel
    records of its window. A step that ran and printed none is one crashed case saying so; the
    step the guest died in reads up to the last record that got out, and then on in ``console``:
    the runner's stream lags behind the console, and a panic can stop it a few records short."""
    out: list[ktap.Case] = []
    after: Optional[int] = None  # the end of the last step that ended
    for st in report.steps:
        start = st.kmsg_seq_before if st.kmsg_seq_before is not None else after
        if st.name in names and (st.ran or not report.complete):
            texts = [r.text for r in records if r.facility == splat.KERNEL_FACILITY
                     and (start is None or r.seq > start)
                     and (st.kmsg_seq_after is None or r.seq <= st.kmsg_seq_after)]
            if st.kmsg_seq_after is None and not report.complete and records and console:
                texts += splat.console_after(console, max(records, key=lambda r: r.seq).usec)
            found = ktap.cases(ktap.parse(texts))
            module = st.name.split(" ", 1)[-1]
            out += found or [ktap.Case(module, "(no KTAP)", ktap.CRASHED,
                                       "loaded, but its suites printed no KTAP: is it a KUnit test module "
                                       "(kunit_test_suite), and KUnit enabled (kunit.enable=1)?")]
        after = st.kmsg_seq_after if st.kmsg_seq_after is not None else after
    return tuple(out)


def judge(ev: Evidence, expected: Optional[trail.Trail], rules: Sequence[splat.SplatRule],
          expect_rc: Mapping[str, int], kunit: Sequence[str] = ()) -> Judgement:
    """``expected`` None: the trail is not checked (``--record-trail`` writes it from this run).
    ``kunit``: the steps whose records are KTAP (``plan.kunit_steps``)."""
    if ev.report is None:
        return _no_report(ev, rules)
    report = ev.report
    records = tuple(kmsg.parse_records(report.kmsg))
    win = window(report, records, ev.marker)
    before = boot_records(report, records, ev.marker)
    base = Judgement(Verdict.PASS, "", records=records, steps=report.steps,
                     boot_splats=tuple(splat.find(rules, before)), marker_seq=run_start(report, records, ev.marker),
                     kunit=kunit_cases(report, records, kunit, ev.console))
    found = tuple(splat.find(rules, win))
    if found and report.complete:
        return _with(base, Verdict.CRASH, f"kernel splat: {found[0].text}", splats=found)
    if found:  # the guest died: its console's lines of the run show how (a panic is often only there)
        excerpt = splat.find_in_console(rules, ev.console, ev.marker)[1]
        during = f" while guest step {ev.running!r} ran" if ev.running else ""
        return _with(base, Verdict.CRASH, f"kernel splat: {found[0].text} (the guest died{during})", splats=found,
                     console_excerpt=excerpt)
    if not report.complete:
        return _died(ev, base, rules)
    failed = _step_failure(report.steps, expect_rc) or _kunit_failure(base.kunit)
    if failed is not None:
        return _with(base, *failed)
    if expected is None:
        return _with(base, Verdict.PASS, "the trail was not checked (it is being recorded from this run)")
    match = trail.match(expected, the_modules(win))
    if report.kmsg_lost:
        match.problems.append(f"{report.kmsg_lost} kernel log records were lost (buffer overrun)")
        match.ok = False
    if not match.ok:
        return _with(base, Verdict.FAIL, "printk trail mismatch:\n" + match.diff(), trail=match)
    lost = checks_lost(before, base.boot_splats)
    if lost:
        return _with(base, Verdict.INFRA,
                     f"the kernel reported a bug while booting, before any guest step ({base.boot_splats[0].text}),"
                     f" and {lost}: this run cannot vouch for the module (its trail matched);"
                     " see console.log, and report it against the kernel if it recurs", trail=match)
    return _with(base, Verdict.PASS, f"{len(match.matched)} trail records matched", trail=match)


def _with(base: Judgement, verdict: Verdict, reason: str, **changes: Any) -> Judgement:
    return replace(base, verdict=verdict, reason=reason, **changes)


def _step_failure(steps: Sequence[StepReport], expect_rc: Mapping[str, int]) -> Optional[tuple[Verdict, str]]:
    for s in steps:
        if s.timed_out:
            return Verdict.TIMEOUT, f"guest step {s.name!r} timed out"
    for s in steps:
        if s.returncode is None:
            continue
        want = expect_rc.get(s.name, 0)
        if s.returncode != want:
            msg = (s.stderr or s.stdout).strip().splitlines()
            return Verdict.FAIL, f"guest step {s.name!r} exited {s.returncode} (expected {want})" + (
                f": {msg[-1]}" if msg else "")
    return None


def _kunit_failure(cases: Sequence[ktap.Case]) -> Optional[tuple[Verdict, str]]:
    bad = [c for c in cases if c.failed]
    if not bad:
        return None
    lines = [f"KUnit: {len(bad)} of {len(cases)} cases failed ({ktap.summary(cases)}):"]
    for c in bad[:10]:
        lines.append(f"  {c.status} {c.full_name}" + (f": {c.reason}" if c.reason else ""))
        lines += [f"    {d}" for d in c.diagnostics[-12:]]
    if len(bad) > 10:
        lines.append(f"  ... and {len(bad) - 10} more (result.json's kunit)")
    return Verdict.FAIL, "\n".join(lines)


def _no_report(ev: Evidence, rules: Sequence[splat.SplatRule]) -> Judgement:
    """Not one event came from the runner: the guest died or hung before it ran, or with it."""
    found, excerpt = splat.find_in_console(rules, ev.console, ev.marker)
    if found:
        return Judgement(Verdict.CRASH, f"the guest died: {found[0].text}", splats=tuple(found),
                         console_excerpt=excerpt)
    j = _gone(ev, "the guest runner never reported (during boot)")
    return replace(j, boot_splats=tuple(splat.boot_splats_in_console(rules, ev.console, ev.marker)))


def _died(ev: Evidence, base: Judgement, rules: Sequence[splat.SplatRule]) -> Judgement:
    """The runner started and the guest stopped before it finished, with no splat in the records it
    sent: the console's lines of the run are the last resort (a panic is often only there)."""
    found, excerpt = splat.find_in_console(rules, ev.console, ev.marker)
    if found:
        return _with(base, Verdict.CRASH, f"the guest died: {found[0].text}", splats=tuple(found),
                     console_excerpt=excerpt)
    where = f"guest step {ev.running!r} was still running" if ev.running else "between guest steps"
    j = _gone(ev, where)
    return _with(base, j.verdict, j.reason, console_excerpt=j.console_excerpt)


def _gone(ev: Evidence, where: str) -> Judgement:
    tail = "\n".join(ev.console.splitlines()[-30:])
    how = f"; {ev.ended}" if ev.ended else ""
    if ev.timed_out:
        return Judgement(Verdict.TIMEOUT, f"the guest did not finish in time ({where}{how}); see console.log",
                         console_excerpt=tail)
    return Judgement(Verdict.INFRA, f"the guest ended without reporting a result ({where}{how}); see console.log",
                     console_excerpt=tail)

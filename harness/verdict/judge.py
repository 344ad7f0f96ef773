"""From what the guest reported (or failed to report) to a verdict. Pure: no I/O.

Order of judgement, worst first:

1. a splat in a kernel record of the run (after the runner's marker); when the
   guest died before its runner could send records, a splat in the console lines
   of the run that are not the text of a record already streamed from userspace, nor
   a line of a record's own text (a payload's escaped newline);
2. a guest that did not finish: ``timeout`` when the harness ended it at its
   limit, ``infra`` otherwise, each naming how it ended and what was running;
3. a step that timed out; 4. a step that exited other than the plan expected
   (steps are told apart by their place in the plan and their kind, never by name);
5. a KUnit case that failed (or never finished), read from its test module's KTAP;
6. a trail that does not match: only records the kernel logged (facility 0) count;
7. a kernel complaint about the module that is not a crash (``complaints``), unless
   the trail expects or allows it;
8. and last, a run that would pass but whose kernel switched its own checks off
   while booting (see ``checks_lost``): that run cannot vouch for the module.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Optional, Sequence

from harness.guest import contract
from harness.guest.contract import GuestReport, PlanStep, StepReport
from harness.model import KmsgRecord, Verdict
from harness.verdict import complaints, kmsg, ktap, output, splat, trail


@dataclass(frozen=True)
class Evidence:
    """What a guest run left: the runner's report (None: not one event arrived) and the console."""

    report: Optional[GuestReport]
    console: str = ""
    timed_out: bool = False  # the harness ended the guest at its time limit
    ended: str = ""  # how the guest ended, in a few words ("virtme-ng exited 255")
    running: Optional[str] = None  # the step that had started and not ended
    marker: Optional[str] = None  # the text of the runner's marker record: console lines after it are the run's
    overflow: str = ""  # the guest wrote more to the host than it may, and was stopped for it


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
    complaints: tuple[complaints.Complaint, ...] = ()  # allowed ones too: the report lists them


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
    """Records a trail is matched against: those the kernel logged (facility 0). What userspace
    writes into /dev/kmsg (facility LOG_USER or more, devkmsg_write() in kernel/printk/printk.c),
    the runner's own marks among it, can never stand in for the module's printk."""
    return [r for r in records if r.facility == splat.KERNEL_FACILITY]


# The kernel prints this when a report taints it: lockdep is off from then on (kernel/locking/lockdep.c
# debug_locks_off() via add_taint() in kernel/panic.c).
LOCKDEP_OFF = "Disabling lock debugging due to kernel taint"


def checks_lost(before: Sequence[KmsgRecord], boot_splats: Sequence[splat.Splat],
                rules: Sequence[splat.SplatRule]) -> Optional[str]:
    """What a splat logged before the first guest step cost the run's checks, if anything.

    A boot-time splat is not the module's doing (so it is no crash verdict), but it
    can blind the kernel: a report that taints it turns lock debugging off, and a rule
    with ``once_unless`` (KASAN without ``kasan_multi_shot``) reports only its first
    error (recorded: tests/data/kasan_boot_report).
    """
    if not boot_splats:
        return None
    lost = []
    if any(r.text.startswith(LOCKDEP_OFF) for r in before):
        lost.append("lock debugging (lockdep) was switched off")
    cmdline = next((r.text for r in before if r.text.startswith("Command line:")), "")
    for rule in {r.name: r for r in rules if r.once_unless}.values():
        if any(s.rule == rule.name for s in boot_splats) and rule.once_unless not in cmdline.split():
            lost.append(f"the kernel, booted without {rule.once_unless}, reports no further {rule.reason}")
    return " and ".join(lost) or None


def plan_step(plan: Sequence[PlanStep], st: StepReport, position: int) -> Optional[PlanStep]:
    """The plan's step a report's step is: by the index the runner reported (by position in
    reports older than contract version 3, which list every step of the plan in order)."""
    i = st.index if st.index is not None else position
    return plan[i] if 0 <= i < len(plan) else None


def kunit_cases(report: GuestReport, records: Sequence[KmsgRecord], plan: Sequence[PlanStep],
                console: str = "") -> tuple[ktap.Case, ...]:
    """The KUnit cases of each KUnit step (a test module's insmod): the KTAP in the kernel records
    of its window. A step that ran and printed none is one crashed case saying so; the step the
    guest died in reads up to the last record that got out, and then on in ``console``: the
    runner's stream lags behind the console, and a panic can stop it a few records short."""
    out: list[ktap.Case] = []
    after: Optional[int] = None  # the end of the last step that ended
    for pos, st in enumerate(report.steps):
        start = st.kmsg_seq_before if st.kmsg_seq_before is not None else after
        ps = plan_step(plan, st, pos)
        if ps is not None and ps.kind == contract.KUNIT and (st.ran or not report.complete):
            texts = [r.text for r in records if r.facility == splat.KERNEL_FACILITY
                     and (start is None or r.seq > start)
                     and (st.kmsg_seq_after is None or r.seq <= st.kmsg_seq_after)]
            if st.kmsg_seq_after is None and not report.complete and records and console:
                texts += splat.console_after(console, max(records, key=lambda r: r.seq).usec)
            found = ktap.cases(ktap.parse(texts))
            module = ps.name.split(" ", 1)[-1]
            out += found or [ktap.Case(module, "(no KTAP)", ktap.CRASHED,
                                       "loaded, but its suites printed no KTAP: is it a KUnit test module "
                                       "(kunit_test_suite), and KUnit enabled (kunit.enable=1)?")]
        after = st.kmsg_seq_after if st.kmsg_seq_after is not None else after
    return tuple(out)


def loaded_span(report: GuestReport, plan: Sequence[PlanStep]) -> tuple[Optional[int], Optional[int]]:
    """The sequence numbers between which the project's modules were loaded: from the first load
    step's start to the last unload step's end (open-ended when a guest died before it)."""
    start = end = None
    for pos, st in enumerate(report.steps):
        ps = plan_step(plan, st, pos)
        if ps is None:
            continue
        if ps.kind == contract.LOAD and start is None and st.ran:
            start = st.kmsg_seq_before
        if ps.kind == contract.UNLOAD and st.ran:
            end = st.kmsg_seq_after
    return start, end


def judge(ev: Evidence, expected: Optional[trail.Trail], rules: Sequence[splat.SplatRule],
          plan: Sequence[PlanStep], modules: Sequence[str] = (), allow: Sequence[trail.Allowance] = ()) -> Judgement:
    """``expected`` None: the trail is not checked (``--record-trail`` writes it from this run).
    ``plan``: the steps the guest was given (what each expects, what kind it is); ``modules``:
    the project's modules by every name they go by (complaints name them); ``allow``: the
    project's own [[allow]] entries, added to the trail's."""
    if expected is not None and allow:
        expected = replace(expected, allow=expected.allow + tuple(allow))
    if ev.report is None:
        j = _no_report(ev, rules)
        return replace(j, verdict=Verdict.FAIL, reason=ev.overflow) if ev.overflow and not j.splats else j
    report = ev.report
    records = tuple(kmsg.parse_records(report.kmsg))
    win = window(report, records, ev.marker)
    before = boot_records(report, records, ev.marker)
    base = Judgement(Verdict.PASS, "", records=records, steps=report.steps,
                     boot_splats=tuple(splat.find(rules, before)), marker_seq=run_start(report, records, ev.marker),
                     kunit=kunit_cases(report, records, plan, ev.console))
    found = tuple(splat.find(rules, win, modules))
    if found and report.complete:
        return _with(base, Verdict.CRASH, f"kernel splat: {found[0].text}", splats=found)
    if found:  # the guest died: its console's lines of the run show how (a panic is often only there)
        excerpt = splat.find_in_console(rules, ev.console, ev.marker, records)[1]
        during = f" while guest step {ev.running!r} ran" if ev.running else ""
        return _with(base, Verdict.CRASH, f"kernel splat: {found[0].text} (the guest died{during})", splats=found,
                     console_excerpt=excerpt)
    if ev.overflow:
        return _with(base, Verdict.FAIL, ev.overflow + (f" (guest step {ev.running!r} was running)" if ev.running
                                                        else ""))
    if not report.complete:
        return _died(ev, base, rules, records)
    failed = _step_failure(report.steps, plan) or _kunit_failure(base.kunit)
    if failed is not None:
        return _with(base, *failed)
    kernel = the_modules(win)
    said = tuple(complaints.find(kernel, modules, loaded_span(report, plan), expected, allow))
    base = replace(base, complaints=said)
    if expected is None:
        return _recording(base, said)
    match = trail.match(expected, kernel)
    if report.kmsg_lost:
        match.problems.append(f"{report.kmsg_lost} kernel log records were lost (buffer overrun)")
        match.ok = False
    if not match.ok:
        return _with(base, Verdict.FAIL, "printk trail mismatch:\n" + match.diff(), trail=match)
    bad = [c for c in said if c.allowed_by is None]
    if bad:
        return _with(base, Verdict.FAIL, _complaint_reason(bad), trail=match)
    lost = checks_lost(before, base.boot_splats, rules)
    if lost:
        return _with(base, Verdict.INFRA,
                     f"the kernel reported a bug while booting, before any guest step ({base.boot_splats[0].text}),"
                     f" and {lost}: this run cannot vouch for the module (its trail matched);"
                     " see console.log, and report it against the kernel if it recurs", trail=match)
    return _with(base, Verdict.PASS, f"{len(match.matched)} trail records matched", trail=match)


def _recording(base: Judgement, said: Sequence[complaints.Complaint]) -> Judgement:
    """A run recording its trail: a complaint the kernel makes about the module is never recorded
    as expected; the run fails, saying what to allow if it is intended."""
    bad = [c for c in said if c.allowed_by is None and c.the_kernels]
    if bad:
        return _with(base, Verdict.FAIL, _complaint_reason(bad) + "\nnothing was recorded as expected of it: "
                     "if it is intended, add to harness.toml (where a re-recorded trail keeps it):\n"
                     + "\n".join(complaints.allow_entry(c) for c in bad))
    return _with(base, Verdict.PASS, "the trail was not checked (it is being recorded from this run)")


def _complaint_reason(bad: Sequence[complaints.Complaint]) -> str:
    first = bad[0]
    lines = [f"the kernel complained about the module: seq {first.record.seq} <{first.record.level}> "
             f"{first.record.text} ({first.why})"]
    lines += [f"  and seq {c.record.seq} <{c.record.level}> {c.record.text} ({c.why})" for c in bad[1:5]]
    if len(bad) > 5:
        lines.append(f"  and {len(bad) - 5} more (result.json's complaints)")
    lines.append("expect it in the trail ([[expect]]) or allow it ([[allow]] with a reason) if it is intended")
    return "\n".join(lines)


def _with(base: Judgement, verdict: Verdict, reason: str, **changes: Any) -> Judgement:
    return replace(base, verdict=verdict, reason=reason, **changes)


def _step_failure(steps: Sequence[StepReport], plan: Sequence[PlanStep]) -> Optional[tuple[Verdict, str]]:
    for s in steps:
        if s.timed_out:
            return Verdict.TIMEOUT, f"guest step {s.name!r} timed out" + output.excerpt(s)
    for pos, s in enumerate(steps):
        if s.returncode is None:
            continue
        ps = plan_step(plan, s, pos)
        want = ps.expect_rc if ps is not None else s.expect_rc
        if s.returncode != want:
            return Verdict.FAIL, f"guest step {s.name!r} exited {s.returncode} (expected {want})" + output.excerpt(s)
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


def _died(ev: Evidence, base: Judgement, rules: Sequence[splat.SplatRule],
          records: Sequence[KmsgRecord]) -> Judgement:
    """The runner started and the guest stopped before it finished, with no splat in the records it
    sent: the console's lines of the run are the last resort (a panic is often only there), but
    only lines that are no streamed userspace record and no line inside a record's own text."""
    found, excerpt = splat.find_in_console(rules, ev.console, ev.marker, records)
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

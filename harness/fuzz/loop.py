"""``harness fuzz``: fuzz guests one after the other until the time is up, each crash confirmed.

    prepare (kernel, root, instrumented module) ->
      fuzz guest (the corpus, then mutations, until the time is up or the kernel dies) ->
      on a crash: confirm in a fresh guest, minimize, write repro/NAME.py -> next fuzz guest
    -> fuzz.json, index.html

The corpus grows on disk as the guests find inputs (a guest that dies loses none of
it), and every new guest starts from it. The command's ``--duration`` covers it all:
boots, fuzzing and confirmations; a confirmation under way is finished past it.
"""

from __future__ import annotations

import json
import random
import secrets
import shutil
import tempfile
import time
import traceback
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import IO, Any, Optional

from harness import procs
from harness.errors import HarnessError, InfraError
from harness.events import Note, Printer, Progress, Sink, fanout, phase
from harness.fuzz import boot, report
from harness.fuzz.confirm import Confirmer, Finding
from harness.fuzz.prepare import FuzzPrep, plan, prepare
from harness.fuzz.request import FuzzRequest
from harness.fuzz.tally import Guest, Tally
from harness.guest import fuzzer
from harness.model import Phase, Verdict
from harness.phases import load_rules, vm_config
from harness.run import results_id, writable_dir

MIN_GUEST = 30.0  # seconds of fuzzing below which no new guest is booted
FUZZ_CONSOLE_LEVEL = 5  # the module's per-message info records stay off the (slow, emulated) console


class FuzzFailed(HarnessError):
    """The module could not be fuzzed (its insmod failed in the guest): the project's failure."""

    verdict = Verdict.FAIL


@dataclass
class FuzzRun:
    """Everything one ``harness fuzz`` gathered, read once by the reporters."""

    freq: FuzzRequest
    started_at: str
    work: Path  # results/fuzz-<kernel>/
    phases: list[Phase] = field(default_factory=list)
    prep: Optional[FuzzPrep] = None
    tally: Optional[Tally] = None
    findings: list[Finding] = field(default_factory=list)
    guests: int = 0
    corpus_added: int = 0
    seconds: float = 0.0
    failure: Optional[tuple[Verdict, str]] = None

    @property
    def verdict(self) -> Verdict:
        if self.failure is not None:
            return self.failure[0]
        return Verdict.CRASH if any(f.confirmed for f in self.findings) else Verdict.PASS


def fuzz(freq: FuzzRequest, sink: Sink) -> FuzzRun:
    results = freq.run.results
    writable_dir(results)
    work = results / f"fuzz-{results_id(freq.run.kernel)}"
    shutil.rmtree(work, ignore_errors=True)  # a previous run's evidence must not pass for this one's
    work.mkdir(parents=True)
    fr = FuzzRun(freq, datetime.now(timezone.utc).isoformat(), work)
    t0 = time.monotonic()
    with procs.SignalGuard(), open(work / "harness.log", "w") as log, \
            tempfile.TemporaryDirectory(prefix="kmod-harness-fuzz-") as tmp:
        events = fanout(sink, Printer(log, verbose=True, console=False))
        try:
            _fuzz(fr, events, Path(tmp), lambda: time.monotonic() - t0)
        except HarnessError as e:
            fr.failure = (e.verdict, str(e))
        except KeyboardInterrupt:
            fr.failure = (Verdict.INTERRUPTED, "interrupted by SIGINT (Ctrl-C)")
        except Exception as e:  # a bug of the harness: still a report, the traceback in harness.log
            log.write(traceback.format_exc())
            fr.failure = (Verdict.INFRA, f"internal error of kmod-harness: {type(e).__name__}: {e} (traceback in "
                          "harness.log; please report it)")
        fr.seconds = time.monotonic() - t0
        report.write(fr, events)
    return fr


def _fuzz(fr: FuzzRun, sink: Sink, run_dir: Path, clock: Any) -> None:
    freq = fr.freq
    prep = fr.prep = prepare(freq, sink, run_dir, fr.phases)
    if not prep.declared:
        sink(Note("    no [fuzz] in the project: fuzzing what the sources make obvious (add it to harness.toml):\n"
                  + "\n".join(f"      {n}" for n in prep.notes) + "\n" + _indent(prep.decl.toml(), 6)))
    sink(Note(f"    corpus: {prep.corpus.path} ({prep.corpus.size()} inputs); "
              f"coverage feedback {'on (kcov)' if freq.coverage else 'off'}"))

    def added(key: str, inp: dict[str, Any]) -> None:
        if prep.corpus.add(key, inp):
            fr.corpus_added += 1

    fr.tally = Tally(clock=clock, targets=prep.targets, on_new=added)
    confirmer = Confirmer(prep, freq, fr.work / "findings", sink, fr.phases)
    guests = _Guests(fr, prep, sink, run_dir, clock)
    while freq.duration - clock() >= MIN_GUEST + guests.boot_estimate or fr.guests == 0:
        if freq.max_findings and sum(f.confirmed for f in fr.findings) >= freq.max_findings:
            break
        g = guests.fuzz()
        confirmer.boot_estimate = guests.boot_estimate
        if g.ended_alone() or not g.recent:
            break
        _finding(fr, confirmer, g.suspects, clock, sink)


class _Guests:
    """Fuzz guests, one after the other; each one's events go to the tally and to its events file."""

    def __init__(self, fr: FuzzRun, prep: FuzzPrep, sink: Sink, run_dir: Path, clock: Any):
        self.fr, self.prep, self.sink, self.run_dir, self.clock = fr, prep, sink, run_dir, clock
        self.patterns = [r.regex.pattern for r in load_rules(fr.freq.run.splats)]
        self.seed = fr.freq.seed if fr.freq.seed is not None else random.SystemRandom().getrandbits(32)
        self.boot_estimate = 120.0

    def fuzz(self) -> Guest:
        fr, prep, sink = self.fr, self.prep, self.sink
        assert fr.tally is not None
        tally = fr.tally
        fr.guests += 1
        g = tally.start_guest()
        remaining = fr.freq.duration - self.clock()
        p = plan(prep, fr.freq, secrets.token_hex(8), max(MIN_GUEST, remaining - self.boot_estimate),
                 self.seed + fr.guests, self.patterns)
        cfg = vm_config(prep.setup, prep.root, self.run_dir, replace(fr.freq.run, console_level=FUZZ_CONSOLE_LEVEL),
                        sink)
        started = self.clock()
        what = f"guest {fr.guests}, {p['duration']:.0f}s after its boot, from {len(p['corpus'])} corpus inputs"
        with open(fr.work / f"guest-{fr.guests}.events.jsonl", "w") as kept, phase(sink, fr.phases, "fuzz", what):
            end = boot.fuzz_guest(boot.FuzzGuest(prep.setup.vng, cfg, p, fr.work / f"guest-{fr.guests}.console.log",
                                                 remaining + 300), lambda ev: self.heard(ev, kept), sink)
            for n, inp in g.recent:  # the last inputs announced: a crash is blamed on the last
                kept.write(json.dumps({"event": fuzzer.EXEC, "n": n, "input": inp}) + "\n")
        if g.t_hello is not None:
            self.boot_estimate = g.t_hello - started
        executions = g.n
        tally.end_guest()
        if g.error is not None:
            raise FuzzFailed(f"the fuzzer could not load the module: {g.error}")
        if g.hello is None:
            raise InfraError(f"fuzz guest {fr.guests} ended before its fuzzer started ({_ended(end)})",
                             hint=f"see {fr.work / f'guest-{fr.guests}.console.log'}")
        sink(Note(f"    fuzz guest {fr.guests}: {executions} executions, {len(tally.first_seen)} module PCs so far; "
                  + _why(g, end)))
        return g

    def heard(self, ev: dict[str, Any], kept: IO[str]) -> None:
        tally = self.fr.tally
        assert tally is not None
        tally.feed(ev)
        if ev["event"] != fuzzer.EXEC:  # every input's announcement would be megabytes; the last ones are kept
            kept.write(json.dumps(ev) + "\n")
            kept.flush()
        if ev["event"] == fuzzer.STATS:
            self.sink(Progress(f"{tally.live_execs()} executions, {len(tally.first_seen)} module PCs, "
                               f"{self.fr.corpus_added} inputs added to the corpus"))


def _finding(fr: FuzzRun, confirmer: Confirmer, suspects: list[dict[str, Any]], clock: Any, sink: Sink) -> None:
    found_at = clock()
    case = [fuzzer.decode_input(i) for i in suspects]
    f = confirmer.finding(case, found_at, clock, fr.findings)
    fr.findings.append(f)
    for line in report.finding_lines(f):
        sink(Note(line))


def _why(g: Guest, end: boot.GuestEnd) -> str:
    if g.splat is not None:
        return f"the kernel reported a splat after input {g.splat.get('n')}"
    if g.hang is not None:
        return f"the child of input {g.hang} could not be ended"
    if g.done is not None:
        return str(g.done.get("reason"))
    n = g.last[0] if g.last else "?"
    return f"the guest died while input {n} ran ({_ended(end)})"


def _ended(end: boot.GuestEnd) -> str:
    if end.wedged:
        return (f"its console showed {end.wedged[:120]!r} and it said nothing for {boot.WEDGE_GRACE:.0f}s: "
                "the harness ended it")
    return "the harness ended it at its time limit" if end.timed_out else f"virtme-ng exited {end.exit_status}"


def _indent(text: str, n: int) -> str:
    return "\n".join(" " * n + line if line else "" for line in text.splitlines())

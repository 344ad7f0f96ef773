"""fuzz.json and index.html in the results directory, and a finding's lines for the terminal.

fuzz.json (``kmod-harness/fuzz/v1``): the verdict (crash when a finding was confirmed),
``findings`` (each with its consequence, the module's file:line, the decoded frames, the
repro's path and the ``[[step]]`` that adds it), executions and executions per second
(time in the guests' fuzzing loops; boots and confirmations left out), the corpus, and
the module's line coverage (kcov's PCs resolved through the .ko's DWARF) overall, per
file and over time.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, Optional

from harness import __version__
from harness.events import Note, Sink
from harness.fuzz import html, lines
from harness.fuzz.confirm import Finding
from harness.locks import write_atomic
from harness.symbolize import Binutils

if TYPE_CHECKING:
    from harness.fuzz.loop import FuzzRun

SCHEMA = "kmod-harness/fuzz/v1"


def finding_lines(f: Finding) -> list[str]:
    if not f.confirmed:
        return [f"  finding {f.name}: {f.consequence}"]
    out = [f"  finding {f.name}" + (f" (the same crash as {f.duplicate_of})" if f.duplicate_of else "") + ":",
           f"    {f.consequence}"]
    if f.where:
        out.append(f"    in the module at {f.where}")
    out += [f"      {t}" for t in f.trace[:6]]
    if f.repro:
        out += [f"    repro: {f.repro} ({f.input_bytes} -> {f.minimized_bytes} bytes); add it as a step:"]
        out += [f"      {line}" for line in (f.step or "").splitlines()]
    return out


def line_map(fr: "FuzzRun") -> Optional[lines.LineMap]:
    prep = fr.prep
    if prep is None or not fr.freq.coverage or not prep.ko_info.instrumented:
        return None
    build = prep.run_dir / "build"
    return lines.line_map(Binutils.for_root(prep.root, build), prep.ko, prep.ko_info,
                          lines.own_files(prep.project.source))


def fuzz_json(fr: "FuzzRun", lm: Optional[lines.LineMap]) -> dict[str, Any]:
    prep, t = fr.prep, fr.tally
    confirmed = [f for f in fr.findings if f.confirmed]
    d: dict[str, Any] = {
        "schema": SCHEMA, "harness_version": __version__, "kernel": fr.freq.run.kernel,
        "verdict": fr.verdict.value, "exit_code": fr.verdict.exit_code,
        "reason": fr.failure[1] if fr.failure else _reason(fr),
        "started_at": fr.started_at, "seconds": round(fr.seconds, 3), "duration": fr.freq.duration,
        "coverage_feedback": fr.freq.coverage, "guests": fr.guests,
        "phases": [{"name": p.name, "seconds": p.seconds, "ok": p.ok} for p in fr.phases],
        "findings": [f.to_json() for f in fr.findings],
        "first_finding_at": confirmed[0].found_at if confirmed else None,
        "first_finding_confirmed_at": confirmed[0].confirmed_at if confirmed else None,
    }
    if prep is not None:
        d.update(kernel_release=prep.root.kernel.release, module=prep.project.module, project=prep.project.where,
                 declared=prep.declared, declarations=prep.decl.toml(), targets=[x["key"] for x in prep.targets],
                 corpus={"path": str(prep.corpus.path), "size": prep.corpus.size(), "added": fr.corpus_added},
                 blocks=prep.ko_info.blocks)
    if t is not None:
        secs = t.fuzz_seconds
        reached = list(t.first_seen)
        d.update(execs=t.execs, fuzz_seconds=round(secs, 3),
                 execs_per_second=round(t.execs / secs, 2) if secs > 0 else None,
                 coverage={"pcs": len(reached), "lines": lines.figures(lm, reached) if lm is not None else None,
                           "over_time": lines.over_time(lm, t.first_seen, t.samples)})
    return d


def _reason(fr: "FuzzRun") -> str:
    confirmed = [f for f in fr.findings if f.confirmed]
    if confirmed:
        return f"{len(confirmed)} crash(es) found and confirmed: " + "; ".join(f.consequence for f in confirmed[:3])
    unconfirmed = len(fr.findings) - len(confirmed)
    return "no finding" + (f" ({unconfirmed} crash(es) a fresh guest did not reproduce)" if unconfirmed else "")


def write(fr: "FuzzRun", sink: Sink) -> dict[str, Any]:
    """fuzz.json and index.html into the results directory; returns fuzz.json's content."""
    try:
        lm = line_map(fr)
    except Exception as e:  # the figures without lines are still worth writing
        sink(Note(f"    the module's lines could not be resolved: {e}"))
        lm = None
    d = fuzz_json(fr, lm)
    results = fr.freq.run.results
    write_atomic(results / "fuzz.json", json.dumps(d, indent=1) + "\n")
    write_atomic(results / "index.html", html.page(d, fr.work.name))
    return d

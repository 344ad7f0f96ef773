"""``harness run``: the phases composed, the result assembled once, the evidence kept.

Whatever happens (an error, a timeout, Ctrl-C, SIGTERM), every process the run
started is ended, the evidence gathered so far stays in the results directory,
and ``result.json`` is written.
"""

from __future__ import annotations

import re
import shutil
import tempfile
import time
import traceback
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Optional, Sequence

from harness import __version__, coverage, procs
from harness.errors import HarnessError, UsageError
from harness.events import Note, Printer, Sink, fanout
from harness.guest import contract, transport, vng
from harness.guest.transport import GuestRequest, GuestRun
from harness.kernel.modbuild import BuildResult
from harness.locks import write_atomic
from harness.model import KmsgRecord, Phase, ResolvedKernel, RunResult, Verdict
from harness.phases import (
    RunRequest,
    Setup,
    boot_and_run,
    build,
    guest_plan,
    judge_run,
    resolve,
    root,
    setup,
    symbolize_splats,
    vm_config,
)
from harness.verdict import compare, html, judge, record, report

__all__ = ["RunRequest", "run", "results_id", "RESULT_FILES", "index_html", "Gathered", "assemble", "keep_channel"]

# What a run leaves in results/<kernel>/, and what each file holds.
EVIDENCE = {
    "result.json": "the verdict, the phases, every kernel record of the run, the trail matched, the splats",
    "console.log": "the kernel console of the whole boot, first line the virtme-ng command",
    "exec.log": "the guest runner's channel, as it came (exec channel or SSH)",
    "guest-result.json": "the guest runner's report (rebuilt from its events when the guest died)",
    "build.log": "the module build's output",
    "modules": "the .ko files that were loaded (a splat's trace is decoded with them)",
    "coverage": "the module's line and branch coverage (kernels with gcov): index.html, coverage.xml (Cobertura)",
    "harness.log": "this run's progress, as the terminal showed it",
}
RESULT_FILES = tuple(EVIDENCE)


def results_id(spec_text: str) -> str:
    """Directory name for a kernel's results: the spec, filesystem-safe."""
    return re.sub(r"[^A-Za-z0-9._+-]+", "-", spec_text.strip()).strip("-") or "kernel"


@dataclass
class Gathered:
    """What the phases returned before the run ended, however it ended; read once by ``assemble``."""

    setup: Optional[Setup] = None
    kernel: Optional[ResolvedKernel] = None
    built: Optional[BuildResult] = None
    kernel_params: tuple[str, ...] = ()
    guest: Optional[GuestRun] = None
    judgement: Optional[judge.Judgement] = None
    traces: tuple[Optional[dict[str, Any]], ...] = ()  # per splat: its symbolized trace (phases.symbolize_splats)
    note: str = ""  # a line to add to the reason (what --record-trail did)
    coverage: Optional[dict[str, Any]] = None  # coverage.report's figures (a kernel with gcov)


def writable_dir(path: Path) -> None:
    """Make ``path`` (and its parents) or say, as a usage error, why results cannot go there."""
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / ".kmod-harness-write-test"
        probe.write_text("")
        probe.unlink()
    except OSError as e:
        raise UsageError(f"cannot write results to {path}: {e.strerror or e}",
                         hint="give --results a directory you can write to") from None


def prepare_results(out_dir: Path) -> None:
    """Make the kernel's results directory and clear a previous run's evidence from it."""
    writable_dir(out_dir)
    for stale in RESULT_FILES:  # a previous run's evidence must not pass for this one's
        path = out_dir / stale
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)


def run(req: RunRequest, sink: Sink) -> RunResult:
    out_dir = req.results / results_id(req.kernel)
    prepare_results(out_dir)
    started, t0 = datetime.now(timezone.utc).isoformat(), time.monotonic()
    phases: list[Phase] = []
    got = Gathered()
    failure: Optional[tuple[Verdict, str]] = None
    with procs.SignalGuard(), open(out_dir / "harness.log", "w") as log:
        events = fanout(sink, Printer(log, verbose=True, console=False))
        try:
            _pipeline(req, events, phases, got, out_dir)
        except HarnessError as e:
            failure = (e.verdict, str(e))
        except contract.ContractError as e:
            failure = (Verdict.INFRA, str(e))
        except KeyboardInterrupt:
            failure = (Verdict.INTERRUPTED, "interrupted by SIGINT (Ctrl-C)")
        except Exception as e:  # a bug of the harness: still a report, with the traceback in harness.log
            log.write(traceback.format_exc())
            failure = (Verdict.INFRA, f"internal error of kmod-harness: {type(e).__name__}: {e} (traceback in "
                       "harness.log; please report it)")
        result = assemble(req, got, phases, failure, started, time.monotonic() - t0, out_dir)
        Printer(log).verdict(result.verdict, result.reason)
        write_atomic(out_dir / "result.json", report.result_json(result))
    return result


def _pipeline(req: RunRequest, sink: Sink, phases: list[Phase], got: Gathered, out_dir: Path) -> None:
    s = got.setup = setup(req)
    sink(Note(f"kernel {s.spec}; {s.accel_why}; module built in the {s.build_in.value}"))
    got.kernel = resolve(s, req, sink, phases)
    r = root(s, got.kernel, req, sink, phases)
    with tempfile.TemporaryDirectory(prefix="kmod-harness-run-") as tmp:
        run_dir = Path(tmp)
        got.built = build(s, r, run_dir, req, sink, phases)
        if got.built is not None:
            write_atomic(out_dir / "build.log", got.built.log)
            if not got.built.ok:
                return
        plan = guest_plan(s, r, got.built, req)
        cfg = vm_config(s, r, run_dir, req, sink)
        got.kernel_params = vng.appended(cfg)
        greq = GuestRequest(s.vng, cfg, plan, out_dir / "console.log", req.timeouts.guest, req.timeouts.shutdown)
        try:
            got.guest = boot_and_run(greq, transport.transport(req.transport, s.cache), sink, phases)
        finally:
            keep_channel(out_dir, got.guest)
        console = (out_dir / "console.log").read_text(errors="replace")
        got.judgement = judge_run(s, plan, got.guest, console)
        keep_modules(run_dir / "build", got.built, out_dir)
        if got.judgement.splats:
            got.traces = symbolize_splats(s, r, got.judgement, run_dir / "build",
                                          got.built.kos if got.built else None, console)
        if any(st.name == "coverage" for st in plan.steps):
            got.coverage = coverage.report(run_dir, run_dir / "build", out_dir, r.kernel.compiler,
                                           exclude=[f"{m}.c" for m in s.project.kunit.modules])
            sink(Note("    " + report.coverage_line(got.coverage)))
    if req.record_trail:
        got.note = _record_trail(s, got.guest, got.judgement)


def keep_channel(out_dir: Path, g: Optional[GuestRun]) -> None:
    if g is None:
        return
    (out_dir / "exec.log").write_text("".join(line + "\n" for line in g.transcript))
    if g.report is not None:
        write_atomic(out_dir / "guest-result.json", g.report.to_json())


def keep_modules(build: Path, built: Optional[BuildResult], out_dir: Path) -> None:
    """The .ko files that were loaded, beside the results: a trace is decoded with them, later too."""
    kos = built.kos.values() if built is not None else [p.name for p in build.glob("*.ko")]
    for rel in kos:
        if (build / rel).is_file():
            (out_dir / "modules").mkdir(exist_ok=True)
            shutil.copy(build / rel, out_dir / "modules" / Path(rel).name)


def _record_trail(s: Setup, g: GuestRun, j: judge.Judgement) -> str:
    if j.verdict is not Verdict.PASS or g.report is None:
        return "--record-trail: nothing written, the run did not pass"
    win = judge.the_modules(judge.window(g.report, j.records))
    existed = s.project.trail.exists()
    write_atomic(s.project.trail, record.trail_toml(win, f"a run on {s.spec}"))
    return f"--record-trail: {'replaced' if existed else 'wrote'} {s.project.trail} ({len(win)} records)"


def assemble(req: RunRequest, got: Gathered, phases: Sequence[Phase], failure: Optional[tuple[Verdict, str]],
             started: str, seconds: float, out_dir: Path) -> RunResult:
    verdict, reason = _outcome(got, failure)
    j, g, s = got.judgement, got.guest, got.setup
    fields: dict[str, Any] = {}
    if j is not None:
        traces = got.traces + (None,) * (len(j.splats) - len(got.traces))
        fields.update(kmsg=j.records, steps=j.steps, marker_seq=j.marker_seq,
                      kunit=tuple(c.to_json() for c in j.kunit),
                      splats=tuple(dict(x.to_json(), **(t or {})) for x, t in zip(j.splats, traces, strict=True)),
                      boot_splats=tuple(x.to_json() for x in j.boot_splats))
        if j.trail is not None:
            fields.update(trail=tuple({"seq": r.seq, "level": r.level, "usec": r.usec, "text": r.text}
                                      for r in j.trail.matched), trail_diff=j.trail.diff())
    if g is not None:
        fields.update(boot=boot_breakdown(g, j.records if j else ()),
                      vm={"argv": list(g.argv), "exit_status": g.exit_status, "timed_out": g.timed_out,
                          "ended": g.how_it_ended, "running": g.running})
    if got.built is not None:
        fields.update(build_log=got.built.log, build_warnings=got.built.warnings)
    if got.coverage is not None:
        fields.update(coverage=got.coverage)
    if s is not None and s.expected is not None:
        fields.update(expected_trail=tuple(e.describe() for e in s.expected.expect for _ in range(e.count)))
    evidence = {name: what for name, what in EVIDENCE.items() if name == "result.json" or (out_dir / name).exists()}
    return RunResult(
        kernel=req.kernel, verdict=verdict, reason=reason, harness_version=__version__, started_at=started,
        seconds=round(seconds, 3), kernel_release=got.kernel.release if got.kernel else None,
        package_version=got.kernel.package_version if got.kernel else None,
        accel=s.accel.value if s else None, build_in=s.build_in.value if s else None, transport=req.transport,
        phases=tuple(phases), kernel_params=got.kernel_params, evidence=evidence,
        read_first=read_first(verdict, got, evidence), **fields)


def _outcome(got: Gathered, failure: Optional[tuple[Verdict, str]]) -> tuple[Verdict, str]:
    if failure is not None:
        return failure
    if got.built is not None and not got.built.ok:
        return Verdict.FAIL, "the module does not build:\n" + "\n".join(got.built.errors[-20:])
    j = got.judgement
    if j is None:
        return Verdict.INFRA, "the run ended before a verdict (see harness.log)"
    reason = j.reason + (f"\n{j.console_excerpt}" if j.console_excerpt else "")
    return j.verdict, reason + (f"\n{got.note}" if got.note else "")


def read_first(verdict: Verdict, got: Gathered, evidence: dict[str, str]) -> Optional[str]:
    """The file that best explains a verdict other than pass."""
    if verdict is Verdict.PASS:
        return None
    if got.built is not None and not got.built.ok:
        choice = "build.log"
    elif got.judgement is not None and verdict is Verdict.FAIL:
        choice = "result.json"  # the step's output, or the trail diff
    elif got.guest is not None:
        choice = "console.log"
    else:
        choice = "harness.log"
    return choice if choice in evidence else "result.json"


def boot_breakdown(g: GuestRun, records: Sequence[KmsgRecord]) -> dict[str, float]:
    """Split the vm phase: host start to kernel start (vng, initramfs, QEMU, firmware), kernel to
    its init, init to the guest runner (virtme-ng-init, udev), guest steps, and shutdown."""
    marks, rep = g.marks, g.report
    out: dict[str, float] = {}
    if "kernel" in marks:
        out["qemu_to_kernel"] = marks["kernel"] - marks["start"]
    init = next((r.seconds for r in records if r.text.startswith("Run /init as init process")), None)
    if init is not None:
        out["kernel_to_init"] = init
        if rep is not None and rep.uptime_at_start is not None:
            out["init_to_runner"] = rep.uptime_at_start - init
    if rep is not None and rep.complete:
        out["guest_steps"] = rep.seconds
    if "result" in marks and "end" in marks:
        out["shutdown"] = marks["end"] - marks["result"]
    return {k: round(v, 3) for k, v in out.items()}


def index_html(results: Sequence[RunResult], rows: Sequence[compare.Row], title: str, wall: float = 0.0) -> str:
    """results/index.html: every kernel's results, linking into its directory."""
    return html.page(results, rows, title, lambda r, name: f"{results_id(r.kernel)}/{name}", wall)

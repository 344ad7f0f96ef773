"""``harness run``: the phases composed, the result assembled once, the evidence kept.

Whatever happens (an error, a timeout, Ctrl-C, SIGTERM), every process the run
started is ended, the evidence gathered so far stays in the results directory,
and ``result.json`` is written.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import re
import secrets
import shutil
import tempfile
import time
import traceback
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterator, Optional, Sequence

from harness import __version__, coverage, procs
from harness.errors import HarnessError, Interrupted, UsageError
from harness.events import Note, Printer, Sink, fanout
from harness.guest import contract, transport, vng
from harness.guest.transport import GuestRequest, GuestRun, Transport
from harness.kernel.modbuild import BuildResult
from harness.kernel.roots import Root
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

# What a run leaves in results/<kernel>/, and what each file holds.
EVIDENCE = {
    "result.json": "the verdict, the phases, every kernel record of the run, the trail matched, the splats",
    "console.log": "the kernel console of the whole boot, first line the virtme-ng command",
    "console-2.log": "--record-trail's second boot: its kernel console",
    "exec.log": "the guest runner's channel, as it came (exec channel or SSH)",
    "guest-result.json": "the guest runner's report (rebuilt from its events when the guest died)",
    "build.log": "the module build's output",
    "modules": "the .ko files that were loaded (a splat's trace is decoded with them)",
    "coverage": "the module's line and branch coverage (kernels with gcov): index.html, coverage.xml (Cobertura)",
    "harness.log": "this run's progress, as the terminal showed it",
}
RESULT_FILES = tuple(EVIDENCE)


def results_id(spec_text: str) -> str:
    """Directory name for a kernel's results: the spec as a slug, one safe path component whatever
    the text (no separator, no "..", no leading dot, at most 100 characters)."""
    slug = re.sub(r"\.{2,}", "-", re.sub(r"[^A-Za-z0-9._+-]+", "-", spec_text.strip())).strip("-.") or "kernel"
    if len(slug) > 100:
        slug = slug[:80].rstrip("-.") + "-" + hashlib.sha256(spec_text.encode()).hexdigest()[:12]
    return slug


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
    """Make ``path`` (and its parents) or say, as a usage error, why results cannot go there (a
    probe of a few KiB: a full disk shows now, not when the report is written)."""
    probe = path / f".kmod-harness-write-test-{os.getpid()}"
    try:
        path.mkdir(parents=True, exist_ok=True)
        with open(probe, "w") as f:
            f.write("x" * 16384)
            f.flush()
            os.fsync(f.fileno())
    except OSError as e:
        raise UsageError(f"cannot write results to {path}: {e.strerror or e}",
                         hint="give --results a directory you can write to, on a disk with room") from None
    finally:
        try:
            probe.unlink()
        except OSError:
            pass


def prepare_results(out_dir: Path) -> None:
    """Make the kernel's results directory and clear a previous run's evidence from it: only the
    files a run writes, inside it; a symbolic link is removed, never followed."""
    writable_dir(out_dir)
    for stale in RESULT_FILES:  # a previous run's evidence must not pass for this one's
        path = out_dir / stale
        try:
            if path.is_symlink() or not path.is_dir():
                path.unlink(missing_ok=True)
            else:
                shutil.rmtree(path)
        except OSError as e:
            raise UsageError(f"cannot clear the previous run's {path}: {e.strerror or e}",
                             hint="remove it by hand, or give --results another directory") from None


@contextmanager
def results_lock(out_dir: Path) -> Iterator[None]:
    """One run at a time in a results directory: a second one refuses (exit 2), naming the first."""
    lock = out_dir / ".lock"
    try:
        f = open(lock, "a+")
    except OSError as e:
        raise UsageError(f"cannot lock {out_dir}: {e.strerror or e}") from None
    with f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            other = f.read().strip() or "another harness run"
            raise UsageError(f"{out_dir} is in use by {other}",
                             hint="wait for it to end, or give this run another --results directory") from None
        f.seek(0)
        f.truncate()
        f.write(f"harness run pid {os.getpid()} (started {datetime.now(timezone.utc):%Y-%m-%d %H:%M:%S} UTC)\n")
        f.flush()
        try:
            yield
        finally:
            f.seek(0)
            f.truncate()


def run(req: RunRequest, sink: Sink) -> RunResult:
    """One kernel's run, its evidence in ``results/<the spec as a slug>/``. Results that cannot be
    written, or a results directory another run holds, are a UsageError before anything is written;
    every other failure (an invalid spec among them) is a result.json with its verdict."""
    out_dir = req.results / results_id(req.kernel)
    writable_dir(out_dir)
    with results_lock(out_dir):
        prepare_results(out_dir)
        return _run(req, sink, out_dir)


def _run(req: RunRequest, sink: Sink, out_dir: Path) -> RunResult:
    return reported(req, sink, out_dir, lambda events, phases, got: _pipeline(req, events, phases, got, out_dir))


Body = Callable[[Sink, list[Phase], "Gathered"], None]


def reported(req: RunRequest, sink: Sink, out_dir: Path, body: Body) -> RunResult:
    """``body`` (the phases of a run, filling ``got``) run so that, however it ends (an error, a
    timeout, Ctrl-C, SIGTERM, a bug), the result is assembled from what it gathered and result.json
    and harness.log are written. Every front end's runs end here (run, watch, the matrix)."""
    started, t0 = datetime.now(timezone.utc).isoformat(), time.monotonic()
    phases: list[Phase] = []
    got = Gathered()
    failure: Optional[tuple[Verdict, str]] = None
    with procs.SignalGuard(), open(out_dir / "harness.log", "w") as log:
        events = fanout(sink, Printer(log, verbose=True, console=False))
        try:
            body(events, phases, got)
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
        if not built_ok(s, r, Path(tmp), out_dir, req, sink, phases, got):
            return
        tr = transport.transport(req.transport, s.cache)
        greq = execute(s, r, Path(tmp), out_dir, req, tr, sink, phases, got)
        if req.record_trail:
            got.note = _record_trail(s, greq, tr, got, sink, phases)


def built_ok(s: Setup, r: Root, run_dir: Path, out_dir: Path, req: RunRequest, sink: Sink, phases: list[Phase],
             got: Gathered) -> bool:
    """The build phase into ``run_dir``, its log kept; whether there is a module to run."""
    got.built = build(s, r, run_dir, req, sink, phases)
    if got.built is not None:
        write_atomic(out_dir / "build.log", got.built.log)
        return got.built.ok
    return True


def execute(s: Setup, r: Root, run_dir: Path, out_dir: Path, req: RunRequest, source: Transport, sink: Sink,
            phases: list[Phase], got: Gathered) -> GuestRequest:
    """The one way a built module is run and judged, whoever provides the guest (``source``: a fresh
    boot through a transport, or a spare booted ahead, ``spares.SpareSource``): the plan, the vm
    phase, the channel kept, the judgement, the modules kept, splats symbolized, coverage."""
    plan = guest_plan(s, r, got.built, req)
    cfg = vm_config(s, r, run_dir, req, sink)
    got.kernel_params = vng.appended(cfg)
    greq = GuestRequest(s.vng, cfg, plan, out_dir / "console.log", req.timeouts.guest, req.timeouts.shutdown)
    try:
        got.guest = boot_and_run(greq, source, sink, phases)
    finally:
        keep_channel(out_dir, got.guest)
    console = (out_dir / "console.log").read_text(errors="replace")
    got.judgement = judge_run(s, plan, got.guest, console)
    if got.guest.interrupted:  # what the guest sent is kept and judged; the verdict is the interrupt's
        raise Interrupted(got.guest.interrupted)
    keep_modules(run_dir / "build", got.built, out_dir)
    if got.judgement.splats:
        got.traces = symbolize_splats(s, r, got.judgement, run_dir / "build",
                                      got.built.kos if got.built else None, console)
    if any(st.kind == contract.COVERAGE for st in plan.steps):
        got.coverage = coverage.report(run_dir, run_dir / "build", out_dir, r.kernel.compiler,
                                       exclude=[f"{m}.c" for m in s.project.kunit.modules])
        sink(Note("    " + report.coverage_line(got.coverage)))
    return greq


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


def _record_trail(s: Setup, greq: GuestRequest, tr: transport.Transport, got: Gathered, sink: Sink,
                  phases: list[Phase]) -> str:
    """The trail from this run and the same run on a second boot: what changed between the two is
    generalized, so that the trail passes on the next boot too. A trail edited by hand is kept."""
    g, j = got.guest, got.judgement
    if g is None or j is None or j.verdict is not Verdict.PASS or g.report is None:
        return "--record-trail: nothing written, the run did not pass"
    sink(Note("--record-trail: the same steps on a second boot, to tell what changes from boot to boot"))
    plan2 = replace(greq.plan, run_id=secrets.token_hex(8))
    console2 = greq.console.with_name("console-2.log")
    g2 = boot_and_run(replace(greq, plan=plan2, console=console2), tr, sink, phases, name="vm-2")
    j2 = judge_run(s, plan2, g2, console2.read_text(errors="replace"))
    if g2.interrupted:
        raise Interrupted(g2.interrupted)
    if j2.verdict is not Verdict.PASS or g2.report is None:
        got.judgement, got.guest = j2, g2
        return ("--record-trail: nothing written: the second boot did not pass (the first did), "
                "see console-2.log")
    said: list[str] = []
    first = judge.the_modules(judge.window(g.report, j.records))
    second = judge.the_modules(judge.window(g2.report, j2.records))
    text = record.trail_toml(first, f"two runs on {s.spec}", second=second, said=said)
    path, notes = s.project.trail, []
    if path.exists():
        old = path.read_text(errors="replace")
        if record.edited_by_hand(old):
            backup = _free_name(path)
            write_atomic(backup, old)
            notes.append(f"the trail had been edited by hand (or not recorded): kept as {backup}")
    write_atomic(path, text)
    entries = text.count("[[expect]]")
    notes.insert(0, f"--record-trail: wrote {path} ({entries} expectations, from two boots)")
    return "\n".join(notes + [f"  {x}" for x in said])


def _free_name(path: Path) -> Path:
    for i in range(1000):
        cand = path.with_name(f"{path.name}.bak" + (f".{i}" if i else ""))
        if not cand.exists():
            return cand
    raise UsageError(f"{path}: a thousand backups exist already", hint="remove old *.bak files")


def assemble(req: RunRequest, got: Gathered, phases: Sequence[Phase], failure: Optional[tuple[Verdict, str]],
             started: str, seconds: float, out_dir: Path) -> RunResult:
    verdict, reason = _outcome(got, failure)
    j, g, s = got.judgement, got.guest, got.setup
    fields: dict[str, Any] = {}
    if j is not None:
        traces = got.traces + (None,) * (len(j.splats) - len(got.traces))
        fields.update(kmsg=j.records, steps=j.steps, marker_seq=j.marker_seq,
                      kunit=tuple(c.to_json() for c in j.kunit), complaints=tuple(c.to_json() for c in j.complaints),
                      splats=tuple(dict(x.to_json(), **(t or {})) for x, t in zip(j.splats, traces, strict=True)),
                      boot_splats=tuple(x.to_json() for x in j.boot_splats))
        if j.trail is not None:
            fields.update(trail=tuple({"seq": r.seq, "level": r.level, "usec": r.usec, "text": r.text}
                                      for r in j.trail.matched), trail_diff=j.trail.diff())
    if g is not None:
        if g.report is not None:
            fields.update(kmsg_dropped=g.report.kmsg_dropped)
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

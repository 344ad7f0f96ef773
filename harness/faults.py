"""``harness faults``: walk every error path of the module, one injected failure at a time, and judge each.

For each phase (the module's init, then each step the project runs with the module
loaded) and each point n = 1, 2, ... until a pass makes fewer calls than n, the n-th
fault-injectable call made with the module's code on the stack fails (see
``guest/faultwalk.py`` for how, ``verdict/faultpoint.py`` for how a point is judged).
One guest walks as many points as it can; a point that crashed, hung or tainted the
kernel ends it, and the walk goes on from the next point on a fresh one
(``faultguests``). Findings are deduplicated by call site and consequence
(``verdict/faultfind.py``), each with the command that walks its point again.

Results: RESULTS/<kernel>/faults.json, faults.log, faults/ (each guest's console and
channel, the .ko that was loaded), RESULTS/index.html, RESULTS/junit.xml.
"""

from __future__ import annotations

import secrets
import shlex
import shutil
import tempfile
import time
import traceback
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Optional

from harness import __version__, arches, contract, faultplan, phases, plan, procs
from harness.errors import HarnessError, InfraError, UsageError
from harness.events import Note, Printer, Sink, fanout
from harness.faultdecode import Decoder
from harness.faultfold import PhaseState, Progress, Walk, fold, judging
from harness.faultguests import GuestSource, install, walk_on
from harness.faultplan import WalkPlan, WalkStep
from harness.faults_cli import DEFAULT_KERNEL
from harness.kernel import registry, spec
from harness.locks import write_atomic
from harness.model import Timeouts, Verdict
from harness.phases import Prepared, RunRequest, Setup, prepare
from harness.project import Project, load_project
from harness.run import results_id
from harness.verdict import faultfind, faulthtml, faultpoint
from harness.verdict.faultfind import Decoded, Finding

NEEDS = ("FAULT_INJECTION", "FAILSLAB", "FAIL_PAGE_ALLOC", "FAULT_INJECTION_DEBUG_FS",
         "FAULT_INJECTION_STACKTRACE_FILTER", "DEBUG_KMEMLEAK", "KASAN")
FILES = ("faults.json", "faults.log", "faults")  # what a walk leaves in RESULTS/<kernel>/


@dataclass(frozen=True)
class FaultRequest:
    run: RunRequest
    only: Optional[int] = None  # walk point N only
    step: Optional[str] = None  # ... of this phase only ("init" or a step's name)
    max_points: int = 500  # per phase


def check_kernel(prep: Prepared) -> None:
    missing = [o for o in NEEDS if not prep.root.has(o)]
    if prep.root.kernel.tree is None or missing:
        raise UsageError(f"{prep.setup.spec} has no fault injection (missing: CONFIG_{', CONFIG_'.join(missing)})"
                         if missing else f"{prep.setup.spec}: fault injection needs a kernel built from source",
                         hint=f"use --kernel {DEFAULT_KERNEL} (vm/configs/debug.config: built once, ~30 min)")
    arch = arches.get(prep.root.kernel.spec.arch or arches.host().name)
    if arch.module_area(prep.root.has) is None:
        walked = ", ".join(a.name for a in arches.ARCHES.values() if a.start_kernel_map is not None)
        raise UsageError(f"harness faults does not know where {arch.name} kernels load modules; it walks {walked}")


def phases_of(project: Project, step: Optional[str]) -> list[str]:
    """The phases to walk: init and the steps run with the module loaded (``step``: that one only)."""
    names = [faultplan.INIT] + [s.name for s in project.steps if s.when == "loaded"]
    if step is not None and step not in names:
        raise UsageError(f"--step {step!r}: {project.where} has no such step run with the module loaded; "
                         f"choose from {', '.join(names)}")
    return [step] if step is not None else names


def walk_plan(prep: Prepared, req: FaultRequest, w: Walk, area: tuple[int, int]) -> WalkPlan:
    p = prep.setup.project
    m = p.modules[0]
    kos = plan.ko_paths(p, prep.built.kos if prep.built is not None else None)

    def steps(when: str) -> tuple[WalkStep, ...]:
        return tuple(WalkStep(s.name, s.argv, s.timeout, s.expect_rc, kind=contract.STEP, env=s.env, cwd=s.cwd)
                     for s in p.steps if s.when == when)

    todo = [s for s in w.states if not s.complete]
    return WalkPlan(run_id=secrets.token_hex(8), module=m.module, ko=kos[m.name], params=m.params,
                    requires=p.requires, before=steps("before"), loaded=steps("loaded"),
                    phases=tuple((s.name, req.only if req.only is not None else s.next_n) for s in todo),
                    counted=tuple(s.name for s in todo if s.counted), only=req.only is not None, require=area,
                    redo=tuple(w.redo),
                    module_timeout=req.run.timeouts.module_step, max_points=req.max_points,
                    env=(("PYTHONDONTWRITEBYTECODE", "1"),))


def check_request(req: FaultRequest) -> None:
    """What is wrong with the request before anything is fetched, built or written: what every run
    checks (``phases.check_request``), then what a walk needs of the kernel and the project."""
    phases.check_request(req.run)
    kspec = spec.parse_spec(req.run.kernel)
    if not registry.of(kspec).tree:  # packaged kernels: their configuration has no fault injection
        raise UsageError(f"{kspec}: Debian's packaged kernels have no fault injection",
                         hint=f"use --kernel {DEFAULT_KERNEL} (vm/configs/debug.config: built once, ~30 min)")
    if req.only is not None and req.only < 1 or req.max_points < 1:
        raise UsageError("--only and --max-points take a point number from 1")
    project = load_project(req.run.project)
    if project.trail.is_file():  # a walk checks no trail, but takes what it allows (faultfold.judging)
        phases.load_trail(project)
    if len(project.modules) > 1:
        raise UsageError(f"{project.where}: harness faults walks a project with one module ([module] name)")
    phases_of(project, req.step)


def faults(req: FaultRequest, sink: Sink) -> tuple[int, dict[str, Any]]:
    """Walk, judge, write the results; (exit code, faults.json's content)."""
    check_request(req)
    out_dir = req.run.results / results_id(req.run.kernel)
    _prepare_results(out_dir)
    started, t0 = datetime.now(timezone.utc).isoformat(), time.monotonic()
    w = Walk()
    failure: Optional[tuple[Verdict, str]] = None
    with procs.SignalGuard(), open(out_dir / "faults.log", "w") as log:
        events = fanout(sink, Printer(log, verbose=True, console=False))
        try:
            _walk(req, events, w, out_dir)
        except HarnessError as e:
            failure = (e.verdict, str(e) + (f"\n  hint: {e.hint}" if e.hint else ""))
        except contract.ContractError as e:
            failure = (Verdict.INFRA, str(e))
        except KeyboardInterrupt:
            failure = (Verdict.INTERRUPTED, "interrupted by SIGINT (Ctrl-C)")
        except Exception as e:  # a bug of the harness: still a report
            log.write(traceback.format_exc())
            failure = (Verdict.INFRA, f"internal error of kmod-harness: {type(e).__name__}: {e} (traceback in "
                       "faults.log; please report it)")
        code, doc = _report(req, w, failure, started, time.monotonic() - t0, out_dir, events)
    return code, doc


def _prepare_results(out_dir: Path) -> None:
    from harness.run import writable_dir

    writable_dir(out_dir)
    for name in FILES:
        path = out_dir / name
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)
    (out_dir / "faults").mkdir()


DEBUG_INFO = "CFLAGS_MODULE=-g"  # the debug kernel has no DWARF of its own; a call site needs the module's


def _with_debug_info(s: Setup) -> Setup:
    p = s.project
    return replace(s, project=replace(p, build=replace(p.build, args=p.build.args + (DEBUG_INFO,))))


def _walk(req: FaultRequest, sink: Sink, w: Walk, out_dir: Path) -> None:
    with tempfile.TemporaryDirectory(prefix="kmod-harness-faults-") as tmp:
        run_dir = Path(tmp)
        w.prep = prep = prepare(req.run, sink, run_dir, [], adjust=_with_debug_info)
        check_kernel(prep)
        w.states = [PhaseState(n) for n in phases_of(prep.setup.project, req.step)]
        w.how = judging(prep)
        w.build = str(run_dir / "build")
        area = arches.get(prep.root.kernel.spec.arch or arches.host().name).module_area(prep.root.has)
        assert area is not None  # check_kernel refused the others
        for ko in (run_dir / "build").glob("*.ko"):
            shutil.copy(ko, out_dir / "faults" / ko.name)
        sink(Note(f"fault walk of {prep.setup.project.module}: {', '.join(s.name for s in w.states)}; "
                  f"injection filtered to the module area [{area[0]:#x}, {area[1]:#x})"))
        source = GuestSource(prep, req.run, sink, req.run.timeouts.guest)
        try:
            stalled = 0
            while w.redo or not all(s.complete for s in w.states):
                judged = _one_guest(req, source, area, run_dir / "build", w, out_dir, sink)
                stalled = 0 if judged else stalled + 1
                if stalled >= 2:
                    raise InfraError("two guests in a row walked no point: " + "; ".join(w.guests[-2:]))
        finally:
            source.close()


def _one_guest(req: FaultRequest, source: GuestSource, area: tuple[int, int], build: Path, w: Walk,
               out_dir: Path, sink: Sink) -> int:
    """One guest walks as far as it can; returns how many points it judged."""
    assert w.prep is not None and w.how is not None
    prep, how, spare, k = w.prep, w.how, source.take(), len(w.guests)
    fresh = True
    try:
        p = walk_plan(prep, req, w, area)
        log = faultpoint.FaultLog(run_id=p.run_id)
        install(spare, build, p)
        lines = contract.HeadTail(faultpoint.KEEP, faultpoint.KEEP)  # the channel, capped as a run's is
        progress = Progress(how, w, sink, log, k)

        def on_line(line: str) -> None:
            lines.append(line)
            progress(log.feed_line(line))

        todo = [f"{ph} {n} (again)" for ph, n in p.redo] + [f"{ph} {n}" for ph, n in p.phases]
        sink(Note(f"guest {k + 1}: walking from " + ", ".join(todo)))
        end = walk_on(spare, on_line, idle_limit=_idle_limit(p), limit=10 ** 6)
        cut = [f"[kmod-harness: {lines.dropped} channel lines left out here]"] if lines.dropped else []
        kept = list(lines.head) + cut + list(lines.tail)
        (out_dir / "faults" / f"guest-{k + 1}.exec.log").write_text("".join(x + "\n" for x in kept))
        (out_dir / "faults" / f"guest-{k + 1}.console.log").write_text(end.console)
        judged, fresh = fold(how, log, end, w, k, req.only, req.max_points)
        if log.done is not None and log.done[1]:
            raise InfraError(f"the fault walk could not start in the guest: {log.done[0]}")
        return judged
    finally:
        source.retire(spare, fresh)


def _idle_limit(p: WalkPlan) -> float:
    """The longest a healthy walker goes without a word: its longest process's limit, SIGKILL's
    wait, kmemleak's age and two scans."""
    longest = max([p.module_timeout] + [s.timeout for s in p.loaded])
    return 3 * longest + 240


def _report(req: FaultRequest, w: Walk, failure: Optional[tuple[Verdict, str]], started: str, seconds: float,
            out_dir: Path, sink: Sink) -> tuple[int, dict[str, Any]]:
    prep = w.prep
    decoded: dict[tuple[str, int], Decoded] = {}
    found: list[Finding] = []
    if prep is not None and w.outcomes:
        m = prep.setup.project.modules[0]
        ko = prep.built.kos[m.name] if prep.built is not None else f"{m.name}.ko"
        dec = Decoder.for_root(prep.root, out_dir / "faults", Path(ko).name, m.module, prep.setup.project.source,
                               w.build)
        decoded = {(o.phase, o.n): dec.point(o) for o in w.outcomes if o.injected or o.consequences}
        found = faultfind.findings(w.outcomes, decoded, lambda ph, n: reproduce(req, ph, n))
    verdict, reason = failure or ((Verdict.FAIL, f"{len(found)} findings") if found else
                                  (Verdict.PASS, "no finding"))
    phases = [s.name for s in w.states]
    head = {"kernel": req.run.kernel, "kernel_release": prep.root.kernel.release if prep else None,
            "module": prep.setup.project.module if prep else None, "project": str(req.run.project),
            "harness_version": __version__, "started_at": started, "seconds": round(seconds, 3),
            "verdict": verdict.value, "exit_code": verdict.exit_code, "reason": reason, "guests": len(w.guests),
            "guest_ends": w.guests, "only": req.only, "step": req.step}
    doc = faultfind.faults_json(head, w.outcomes, found, decoded,
                                faultfind.phase_rows(w.outcomes, phases, req.max_points))
    write_atomic(out_dir / "faults.json", _dumps(doc))
    write_atomic(req.run.results / "junit.xml", faultfind.junit_xml(req.run.kernel, w.outcomes, decoded, seconds))
    write_atomic(req.run.results / "index.html", faulthtml.page(doc, f"{results_id(req.run.kernel)}/"))
    for f in found:
        for line in faultfind.finding_lines(f):
            sink(Note(line))
    sink(Note(f"{faultfind.walked(w.outcomes)} points walked on {len(w.guests)} guests in {seconds:.0f}s; "
              f"{len(found)} findings; {verdict.value}: {reason}"))
    return verdict.exit_code, doc


def reproduce(req: FaultRequest, phase: str, n: int) -> str:
    words = ["harness", "faults", "--kernel", req.run.kernel, "--project", str(req.run.project), "--step", phase,
             "--only", str(n)]
    return " ".join(shlex.quote(w) for w in words)


def _dumps(doc: dict[str, Any]) -> str:
    import json

    return json.dumps(doc, indent=1) + "\n"


def request(kernel: str, project: Path, results: Path, **run: Any) -> RunRequest:
    """The RunRequest a walk prepares with: the module built on the host, guests over SSH, the
    trail not read (a walk checks no trail)."""
    run.setdefault("timeouts", Timeouts())
    return RunRequest(kernel=kernel, project=project, results=results, build_in="host", transport="ssh",
                      record_trail=True, **run)

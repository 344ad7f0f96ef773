"""A suspected crash, confirmed in a fresh guest, minimized, and written down as a repro.

Every test of a candidate is ``harness run`` of a throwaway project: the module as the
project builds it (without kcov: a repro must crash what users load), and one step
per candidate, each a repro script (``repro.script``). The run's verdict, its splats
with their decoded traces and the step that was running when the guest died say which
candidate crashed the kernel and how. Steps run in order; a crash ends the guest, so
the candidates of a round go smallest first.

    confirm (the suspect alone; then the last inputs in order) -> minimize rounds -> repro
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Iterator, Optional, Sequence

from harness import resultjson
from harness.events import Note, Sink, discard, phase
from harness.fuzz import boot, lines, minimize, repro
from harness.fuzz.prepare import FuzzPrep, with_debug_info
from harness.fuzz.request import FuzzRequest
from harness.locks import write_atomic
from harness.model import Phase, RunResult, Verdict

Case = minimize.Case


@dataclass(frozen=True)
class Crash:
    """What one candidate did to the kernel."""

    index: int  # the candidate's position in the round
    rule: str  # the splat rule ("bug", "kasan"...), or "hang"
    text: str  # the splat's line
    function: Optional[str]  # the first frame in the module
    splat: dict[str, Any]  # the splat as result.json has it (trace, module_frames, source)
    results: Path

    def same(self, other: "Crash") -> bool:
        """The same bug, as far as can be told: the same function of the module on top of both
        traces. A crash whose trace does not show the module (the blog's stack overflow, seen by
        KASAN in a timer interrupt first on the debug kernel) cannot be told apart: it counts."""
        return self.function is None or other.function is None or self.function == other.function


@dataclass
class Finding:
    name: str
    confirmed: bool
    consequence: str
    kernel: str
    found_at: float  # seconds after the command started, when the fuzz guest died (or reported)
    confirmed_at: float = 0.0
    rule: Optional[str] = None
    where: Optional[str] = None  # the module's file:line
    trace: list[str] = field(default_factory=list)
    source: Optional[dict[str, Any]] = None
    repro: Optional[str] = None  # relative to the project's directory
    step: Optional[str] = None
    input_bytes: int = 0
    minimized_bytes: int = 0
    runs: list[str] = field(default_factory=list)  # the confirmation runs' results
    duplicate_of: Optional[str] = None
    function: Optional[str] = None  # the module's function on top of the trace
    consequences: list[str] = field(default_factory=list)  # every splat the confirmation runs saw first

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


CONFIRM_PREFIX = ".kmod-harness-confirm-"  # the throwaway projects, beside the project's description


def toml_project(prep: FuzzPrep, case_dir: str, steps: Sequence[str]) -> str:
    """A project of the module as ``prep``'s builds and loads it, with ``steps`` (scripts in ``case_dir``,
    relative to the project's directory) to run. It lies in the project's directory, so that its source
    is the project's own, relative as every project's is."""
    p = prep.project
    q = json.dumps
    out = ["[module]", f"source = {q(os.path.relpath(p.source, p.root))}", f"trail = {q(case_dir + '/trail.toml')}",
           f"requires = {q(list(p.requires))}"]
    for m in p.modules:
        out += ["[[module.load]]", f"name = {q(m.name)}", f"params = {q(list(m.params))}"]
    args = list(with_debug_info(prep.root, p.build.args))  # a crash's frames resolve to lines
    out += ["", "[build]", f"w1 = {q(p.build.w1)}", f"args = {q(args)}"]
    if p.build.command is not None:
        out.append(f"command = {q(list(p.build.command))}")
    out += ["", "[guest]", f"packages = {q(list(p.packages))}"]
    for s in steps:
        out += ["", "[[step]]", f"name = {q(s)}", f"run = {q(['python3', f'/project/{case_dir}/{s}.py'])}",
                f"timeout = {repro.STEP_TIMEOUT}"]
    return "\n".join(out) + "\n"


@contextmanager
def throwaway_project(prep: FuzzPrep, cases: Sequence[Case], what: str) -> Iterator[tuple[Path, list[str]]]:
    """The module and one step per case (``case-N.py``, a repro script), as a project file in the
    project's directory (``.kmod-harness-confirm-*.toml``, its scripts in the directory of that name):
    removed when done."""
    names = [f"case-{i + 1}" for i in range(len(cases))]
    d = Path(tempfile.mkdtemp(prefix=CONFIRM_PREFIX, dir=prep.project.root))
    toml = d.with_name(d.name + ".toml")
    try:
        for name, case in zip(names, cases, strict=True):
            (d / f"{name}.py").write_text(repro.script(name, prep.targets, case, [what]))
        toml.write_text(toml_project(prep, d.name, names))
        yield toml, names
    finally:
        toml.unlink(missing_ok=True)
        shutil.rmtree(d, ignore_errors=True)


def crash_of(result: RunResult, names: Sequence[str], modules: Sequence[str], results: Path) -> Optional[Crash]:
    """Which of the steps ``names`` crashed the kernel, from a finished run's result."""
    for sp in map(resultjson.plain, result.splats):  # as result.json has it: the finding keeps it so
        seq, index = sp.get("seq"), None
        if seq is not None:
            index = next((names.index(st.name) for st in result.steps if st.name in names
                          and st.kmsg_seq_before is not None and st.kmsg_seq_before < seq
                          and (st.kmsg_seq_after is None or seq <= st.kmsg_seq_after)), None)
        if index is None and result.vm.get("running") in names:
            index = names.index(result.vm["running"])
        if index is not None:
            frames = sorted((f for f in sp.get("trace") or [] if f.get("module") in modules),
                            key=lambda f: not f.get("reliable", True))
            return Crash(index, sp["rule"], sp["text"], frames[0]["function"] if frames else None, sp, results)
    hung = next((names.index(st.name) for st in result.steps if st.name in names and st.timed_out), None)
    if hung is not None:
        return Crash(hung, "hang", f"step {names[hung]} did not end within {repro.STEP_TIMEOUT}s", None, {}, results)
    return None


class Confirmer:
    def __init__(self, prep: FuzzPrep, freq: FuzzRequest, out_dir: Path, sink: Sink, phases: list[Phase]):
        self.prep, self.freq, self.out_dir, self.sink, self.phases = prep, freq, out_dir, sink, phases
        self.runs = 0
        self.boot_estimate = 120.0  # seconds to boot and load the module: the fuzz guests' own, once measured
        self.first_run = 0  # the current finding's first run
        self.seen: list[Crash] = []  # the current finding's crashes, in the order they came

    def try_cases(self, cases: Sequence[Case], what: str) -> Optional[Crash]:
        """One fresh guest runs the cases in order: the first that crashed the kernel, or None."""
        self.runs += 1
        results = self.out_dir / f"run-{self.runs}"
        with throwaway_project(self.prep, cases, what) as (toml, names):
            # A guest the crash wedged (an Oops storm) runs to this limit: what a boot took, thrice, and the steps.
            guest = max(300.0, 3 * self.boot_estimate + 120 + (repro.STEP_TIMEOUT + 10) * len(cases))
            req = replace(self.freq.run, project=toml, results=results, record_trail=True,
                          console_level=7, timeouts=replace(self.freq.run.timeouts, guest=guest))
            # Each run keeps its progress in its own harness.log; here, a phase per run.
            with phase(self.sink, self.phases, "confirm", f"{what}: {len(cases)} case(s) in a fresh guest"):
                result = boot.run_steps(req, discard)
        crash = crash_of(result, names, [m.module for m in self.prep.project.modules], results)
        if crash is not None:
            self.seen.append(crash)
        self.sink(Note(f"    {what}: " + (f"case {crash.index + 1} crashed the kernel: {crash.text}" if crash
                                          else _no_crash(result))))
        return crash

    def confirm(self, suspects: Case) -> tuple[Optional[Case], Optional[Crash]]:
        crash = self.try_cases([suspects[-1:]], "confirm: the last input alone")
        if crash is not None:
            return suspects[-1:], crash
        if len(suspects) > 1:
            crash = self.try_cases([suspects], f"confirm: the last {len(suspects)} inputs in order")
            if crash is not None:
                return list(suspects), crash
        return None, None

    def finding(self, suspects: Case, found_at: float, clock: Any, known: Sequence[Finding]) -> Finding:
        """Confirm, minimize, write the repro: the finding (unconfirmed when a fresh guest survived)."""
        kernel = self.freq.run.kernel
        self.first_run, self.seen = self.runs, []
        case, crash = self.confirm(suspects)
        if case is None or crash is None:
            name = f"unconfirmed-{len(known) + 1}"
            return Finding(name, False, "the fuzz guest died (or reported a splat) on this input, but a fresh "
                           "guest survived it: not reproduced", kernel, found_at, clock(),
                           input_bytes=sum(len(i["data"]) for i in suspects), runs=self._runs())
        same = next((f for f in known if f.confirmed and f.function is not None and f.function == crash.function),
                    None)
        size = sum(len(i["data"]) for i in case)
        if same is None:
            case, crash = self.minimize(case, crash)
        # What the finding says comes from the crash whose trace showed the module best.
        best = next((c for c in self.seen if source_of(self.prep, c.splat)), None) or \
            next((c for c in self.seen if c.function), crash)
        name = finding_name(self.prep, best, case)
        about = [f"consequence: {best.text}", f"kernel: {kernel}",
                 f"minimized from {size} to {sum(len(i['data']) for i in case)} bytes"]
        d = describe(self.prep, best)
        return Finding(name, True, d["consequence"], kernel, found_at, clock(), rule=d["rule"], where=d["where"],
                       trace=d["trace"], source=d["source"], repro=write_repro(self.prep, name, case, about),
                       step=repro.step_toml(name), input_bytes=size,
                       minimized_bytes=sum(len(i["data"]) for i in case), runs=self._runs(),
                       duplicate_of=same.name if same is not None else None, function=best.function,
                       consequences=sorted({c.text for c in self.seen}))

    def _runs(self) -> list[str]:
        return [str(self.out_dir / f"run-{i + 1}") for i in range(self.first_run, self.runs)]

    def minimize(self, case: Case, crash: Crash) -> tuple[Case, Crash]:
        for r in range(self.freq.minimize_rounds):
            cands = minimize.candidates(case, self.prep.targets)
            if not cands:
                break
            found = self.try_cases(cands, f"minimize, round {r + 1}")
            if found is None or not found.same(crash):
                break
            case, crash = cands[found.index], replace(found, index=0)
        return case, crash


def _no_crash(result: RunResult) -> str:
    if result.verdict is Verdict.PASS:
        return "no crash: every case ran, and the kernel reported nothing"
    return f"no crash ({result.verdict.value}: {result.reason.splitlines()[0] if result.reason else ''})"


def finding_name(prep: FuzzPrep, crash: Crash, case: Case) -> str:
    target = prep.targets[int(case[-1]["t"])]
    where = f"netlink{target['protocol']}" if target["kind"] == "netlink" else repro.slug(target["path"], 20)
    tag = hashlib.sha256(repr(minimize.case_key(case)).encode()).hexdigest()[:6]
    return f"{where}-{repro.slug(crash.function or crash.rule, 24)}-{tag}"


def describe(prep: FuzzPrep, crash: Crash) -> dict[str, Any]:
    """The finding's consequence and where in the module, from the decoded splat."""
    sp = crash.splat
    src = source_of(prep, sp)
    where = f"{src['file']}:{src['line']}" if src else None
    return {"consequence": crash.text, "rule": crash.rule, "where": where,
            "trace": list(sp.get("module_frames") or []), "source": src}


def source_of(prep: FuzzPrep, sp: dict[str, Any], context: int = 3) -> Optional[dict[str, Any]]:
    """The source lines of the splat's first reliable frame in the module: the run's own excerpt, else
    from the frame's file named relative to the module's source. (A .ko the build cache reused names
    the directory of the run that built it, which the run's symbolizer does not know as a build's.)"""
    if sp.get("source"):
        return dict(sp["source"])
    mods = {m.module for m in prep.project.modules}
    own = lines.own_files(prep.project.source)
    for f in sp.get("trace") or []:
        if f.get("module") in mods and f.get("reliable", True) and f.get("file") and f.get("line"):
            rel = lines.relative(str(f["file"]), own)
            if rel in own:
                text = (prep.project.source / rel).read_text(errors="replace").splitlines()
                line = int(f["line"])
                first = max(1, line - context)
                return {"file": rel, "line": line, "first": first, "lines": text[first - 1:line + context]}
    return None


def write_repro(prep: FuzzPrep, name: str, case: Case, about: list[str]) -> str:
    rel = f"{repro.REPRO_DIR}/{name}.py"
    write_atomic(prep.project.root / rel, repro.script(name, prep.targets, case, about))
    return rel

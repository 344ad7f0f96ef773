"""``harness matrix``: ``harness run`` for many kernels at once.

Kernels run in a thread pool (each run's processes are its own groups); one
kernel's crash, timeout or failed download never stops the others. Each run
logs to ``results/<kernel>/harness.log``; the terminal gets a live table, fed
by the runs' progress events.
"""

from __future__ import annotations

import dataclasses
import json
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from html import escape
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

from harness import procs, resources, schema, tomlload
from harness.errors import UsageError
from harness.events import Event, Finished, PhaseStarted, Printer, Sink
from harness.kernel import apt
from harness.kernel.spec import parse_spec, with_arch
from harness.locks import write_atomic
from harness.model import RunResult, Verdict
from harness.phases import RunRequest
from harness.project import load_project
from harness.run import index_html, results_id, run, writable_dir
from harness.verdict import compare, fanin, html, junit, report

GUEST_MEMORY_MB = 1024 + 512  # guest RAM plus QEMU's own overhead


@dataclass(frozen=True)
class MatrixEntry:
    spec: str
    apt_options: tuple[str, ...] = ()
    note: str = ""
    expect: Optional[compare.Expected] = None  # a known failure on this kernel


def load_matrix(path: Optional[Path] = None) -> list[MatrixEntry]:
    """The kernels of a matrix file (default: the packaged ``vm/kernels.toml``), checked against
    ``schema.MatrixFile``: each spec valid, each apt option one apt accepts, no kernel twice."""
    doc = tomlload.load_document(path or resources.data("kernels.toml"))
    m = schema.check(schema.MatrixFile, doc)
    out: list[MatrixEntry] = []
    for i, k in enumerate(m.kernel):
        where = f"{doc.where}:{schema.locate(doc.text, ('kernel', i)) or '?'}: kernel[{i + 1}]"
        try:
            text = with_arch(k.spec, k.arch)  # folded into the spec's written form: debian:SUITE:ARCH
            options = tuple(apt.check_option(o, "apt_options") for o in k.apt_options)
        except UsageError as e:
            raise UsageError(f"{where}: {e.message}", hint=e.hint) from None
        if any(o.spec == text for o in out):
            raise UsageError(f"{where}: kernel {text!r} is listed twice",
                             hint="each kernel's results go to one directory: list it once")
        expect = compare.Expected(text, k.expect.verdict, k.expect.why, k.expect.match) if k.expect else None
        out.append(MatrixEntry(text, options, k.note, expect))
    return out


def select(entries: Sequence[MatrixEntry], specs: Optional[Sequence[str]]) -> list[MatrixEntry]:
    """Entries for the kernels asked for; a spec not in the matrix runs with no extra options."""
    if not specs:
        return list(entries)
    by_spec = {e.spec: e for e in entries}
    out: list[MatrixEntry] = []
    for s in specs:
        parse_spec(s)
        if any(e.spec == s for e in out):
            raise UsageError(f"kernel {s!r} is named twice", hint="each kernel's results go to one directory")
        out.append(by_spec.get(s, MatrixEntry(s)))
    return out


def for_arch(entries: Sequence[MatrixEntry], arch: str) -> list[MatrixEntry]:
    """``--arch``: the entries' kernels for that architecture (an entry naming another one is an error)."""
    out: list[MatrixEntry] = []
    for e in entries:
        e = dataclasses.replace(e, spec=with_arch(e.spec, arch))
        if all(o.spec != e.spec for o in out):
            out.append(e)
    return out


def parse_shard(text: str) -> tuple[int, int]:
    try:
        i, n = (int(x) for x in text.split("/"))
    except ValueError:
        raise UsageError(f"--shard {text!r}: expected I/N, e.g. 2/5") from None
    if not 1 <= i <= n:
        raise UsageError(f"--shard {text!r}: I must be between 1 and N")
    return i, n


def shard(entries: Sequence[MatrixEntry], i: int, n: int) -> list[MatrixEntry]:
    """The I-th (1-based) of N slices: every N-th kernel starting at I."""
    return list(entries[i - 1::n])


def default_jobs(cpus: Optional[int] = None, mem_available_mb: Optional[int] = None,
                 guest_cpus: int = 1) -> int:
    """As many VMs as there are cores for their vCPUs (TCG is CPU-bound) and memory for them."""
    cpus = cpus or os.cpu_count() or 1
    if mem_available_mb is None:
        mem_available_mb = _mem_available_mb()
    by_cpu = max(1, cpus // max(1, guest_cpus))
    by_mem = max(1, mem_available_mb // GUEST_MEMORY_MB)
    return max(1, min(by_cpu, by_mem))


def _mem_available_mb() -> int:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) // 1024
    except OSError:
        pass
    return GUEST_MEMORY_MB


class LiveTable:
    """Each kernel's current phase, from its run's events; printed every ``every`` seconds."""

    def __init__(self, out: Printer, specs: Sequence[str], every: float = 15.0):
        self.out, self.every = out, every
        self.rows: dict[str, tuple[str, float]] = {spec: ("queued", time.monotonic()) for spec in specs}
        self.done: dict[str, RunResult] = {}
        self._stop = threading.Event()
        self.t0 = time.monotonic()

    def tracker(self, spec: str) -> Callable[[Event], None]:
        """The sink that keeps ``spec``'s row current."""
        def track(event: Event) -> None:
            if isinstance(event, PhaseStarted):
                self.rows[spec] = (event.name, time.monotonic())
            elif isinstance(event, Finished):
                self.rows[spec] = (event.verdict.value, self.rows[spec][1])
        return track

    def render(self) -> str:
        rows = [f"  {'kernel':<24} {'phase':<10} {'elapsed':>8}"]
        for spec, (current, since) in self.rows.items():
            if spec in self.done:
                r = self.done[spec]
                rows.append(f"  {spec:<24} {r.verdict.value:<10} {r.seconds:7.0f}s")
            else:
                rows.append(f"  {spec:<24} {current:<10} {time.monotonic() - since:7.0f}s")
        return f"[{time.monotonic() - self.t0:.0f}s]\n" + "\n".join(rows)

    def loop(self) -> None:
        while not self._stop.wait(self.every):
            self.out.line(self.render())

    def stop(self) -> None:
        self._stop.set()


def run_matrix(entries: Sequence[MatrixEntry], base: RunRequest, jobs: int, printer: Printer,
               runner: Optional[Callable[[RunRequest, Sink], RunResult]] = None) -> list[RunResult]:
    """Every entry's run, ``jobs`` at a time. An interrupt stops them all; once they have all
    returned, the interrupt is cleared (a long-lived caller such as pytest can run again).
    ``runner`` runs one entry (default ``run``; ``repeat.runner``: its attempts)."""
    one_run = runner or run
    writable_dir(base.results)
    table = LiveTable(printer, [e.spec for e in entries])
    printer.line(f"matrix: {len(entries)} kernels, {jobs} at a time; per-kernel logs in {base.results}/*/harness.log")

    def one(e: MatrixEntry) -> RunResult:
        req = dataclasses.replace(base, kernel=e.spec, apt_options=base.apt_options + e.apt_options)
        track = table.tracker(e.spec)
        r = one_run(req, track)
        track(Finished(r.verdict, r.reason))
        table.done[e.spec] = r
        printer.line(f"    {e.spec}: {r.verdict.value} in {r.seconds:.0f}s")
        return r

    ticker = threading.Thread(target=table.loop, daemon=True)
    ticker.start()
    try:
        with procs.SignalGuard(), ThreadPoolExecutor(max_workers=jobs) as pool:
            futures = []
            try:
                futures += [pool.submit(one, e) for e in entries]
                return [f.result() for f in futures]
            except BaseException as e:  # Ctrl-C or SIGTERM: every run stops, ends its processes and reports
                procs.interrupt(str(e) or "interrupted")
                return [f.result() for f in futures]
    finally:
        table.stop()
        procs.clear_interrupt()


def load_baseline(path: Path) -> list[compare.Outcome]:
    """The kernels of an earlier matrix.json."""
    try:
        doc = json.loads(path.read_text())
        return [compare.Outcome.from_json(k) for k in doc["kernels"]]
    except OSError as e:
        raise UsageError(f"--baseline {path}: {e.strerror}", hint="give the matrix.json of an earlier run") from None
    except (ValueError, KeyError, TypeError) as e:
        raise UsageError(f"--baseline {path}: not a kmod-harness matrix.json ({e})") from None


def expectations(entries: Sequence[MatrixEntry], project: Optional[Path] = None) -> dict[str, compare.Expected]:
    """The failures known: the matrix file's, then the project's (harness.toml [[known_failure]]), which win."""
    out = {e.spec: e.expect for e in entries if e.expect is not None}
    if project is not None:
        try:
            out.update({k.kernel: k for k in load_project(project).known_failures})
        except UsageError:
            pass  # the runs report a broken project themselves
    return out


def matrix_exit_code(rows: Sequence[compare.Row]) -> int:
    return compare.exit_code(rows) if rows else Verdict.ERROR.exit_code


def merge_coverage(results: Sequence[RunResult], results_dir: Path, project: Path) -> Optional[dict[str, Any]]:
    """One coverage report over every kernel that had one (kernels with gcov), in results/coverage/:
    a line counts as covered when a run on any kernel ran it. None when fewer than two had one."""
    from harness import coverage

    traces = [results_dir / results_id(r.kernel) / coverage.OUT_DIR / "coverage.json" for r in results
              if r.coverage and "error" not in r.coverage]
    traces = [t for t in traces if t.is_file()]
    if len(traces) < 2:
        return None
    try:
        source = load_project(project).source
    except UsageError:
        return None
    return coverage.merge(traces, source, results_dir / coverage.OUT_DIR)


def write_reports(results: Sequence[RunResult], rows: Sequence[compare.Row], results_dir: Path, wall: float) -> None:
    write_atomic(results_dir / "matrix.json", report.matrix_json(results, wall, rows))
    write_atomic(results_dir / "summary.md", report.summary_markdown(results, wall, rows))
    write_atomic(results_dir / "junit.xml", junit.junit_xml(results))
    if any(len(r.attempts) > 1 for r in results):  # --repeat: each kernel's attempts, linked to their evidence
        notes = {r.kernel: escape(fanin.attempts_column(r)) for r in results}
        sections = {r.kernel: fanin.attempts_html(r, results_id(r.kernel)) for r in results}
        page = html.page(results, rows, "kmod-harness matrix", lambda r, name: f"{results_id(r.kernel)}/{name}",
                         wall, notes=notes, sections=sections)
    else:
        page = index_html(results, rows, "kmod-harness matrix", wall)
    write_atomic(results_dir / "index.html", page)

"""``harness matrix``: ``harness run`` for many kernels at once.

Kernels run in a thread pool (each run's processes are its own groups); one
kernel's crash, timeout or failed download never stops the others. Each run
logs to ``results/<kernel>/harness.log``; the terminal gets a live table.
"""

from __future__ import annotations

import dataclasses
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Optional, Sequence

from harness import kernels, procs, report, tomlload
from harness.errors import UsageError
from harness.model import RunResult, Verdict, worst
from harness.progress import Printer
from harness.run import RunRequest, results_id, run

DEFAULT_MATRIX = Path(__file__).resolve().parent.parent / "vm" / "kernels.toml"
GUEST_MEMORY_MB = 1024 + 512  # guest RAM plus QEMU's own overhead


@dataclass(frozen=True)
class MatrixEntry:
    spec: str
    apt_options: tuple[str, ...] = ()
    note: str = ""


def load_matrix(path: Path = DEFAULT_MATRIX) -> list[MatrixEntry]:
    data = tomlload.load(path)
    out = []
    for i, k in enumerate(data.get("kernel", [])):
        if not isinstance(k.get("spec"), str):
            raise UsageError(f"{path}: [[kernel]] #{i + 1} needs a 'spec' string")
        kernels.parse_spec(k["spec"])  # fail early, naming the spec
        out.append(MatrixEntry(k["spec"], tuple(k.get("apt_options", ())), k.get("note", "")))
    if not out:
        raise UsageError(f"{path}: no [[kernel]] entries")
    return out


def select(entries: Sequence[MatrixEntry], specs: Optional[Sequence[str]]) -> list[MatrixEntry]:
    """Entries for the kernels asked for; a spec not in the matrix runs with no extra options."""
    if not specs:
        return list(entries)
    by_spec = {e.spec: e for e in entries}
    out = []
    for s in specs:
        kernels.parse_spec(s)
        out.append(by_spec.get(s, MatrixEntry(s)))
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


class StatusPrinter(Printer):
    """A run's printer: full output to its log file, current phase to the live table."""

    def __init__(self, log: IO[str]):
        super().__init__(log)
        self.current = "queued"
        self.since = time.monotonic()

    def line(self, text: str) -> None:
        if text.startswith("==> "):
            self.current = text[4:].split(":", 1)[0]
            self.since = time.monotonic()
        super().line(text)


class LiveTable:
    def __init__(self, out: Printer, printers: dict[str, StatusPrinter], every: float = 15.0):
        self.out, self.printers, self.every = out, printers, every
        self.done: dict[str, RunResult] = {}
        self._stop = threading.Event()
        self.t0 = time.monotonic()

    def render(self) -> str:
        rows = [f"  {'kernel':<24} {'phase':<10} {'elapsed':>8}"]
        for spec, p in self.printers.items():
            if spec in self.done:
                r = self.done[spec]
                rows.append(f"  {spec:<24} {r.verdict.value:<10} {r.seconds:7.0f}s")
            else:
                rows.append(f"  {spec:<24} {p.current:<10} {time.monotonic() - p.since:7.0f}s")
        return f"[{time.monotonic() - self.t0:.0f}s]\n" + "\n".join(rows)

    def loop(self) -> None:
        while not self._stop.wait(self.every):
            self.out.line(self.render())

    def stop(self) -> None:
        self._stop.set()


def run_matrix(entries: Sequence[MatrixEntry], base: RunRequest, jobs: int, printer: Printer) -> list[RunResult]:
    base.results.mkdir(parents=True, exist_ok=True)
    printers: dict[str, StatusPrinter] = {}
    logs = []
    for e in entries:
        d = base.results / results_id(e.spec)
        d.mkdir(parents=True, exist_ok=True)
        log = open(d / "harness.log", "w")
        logs.append(log)
        printers[e.spec] = StatusPrinter(log)
    table = LiveTable(printer, printers)
    printer.line(f"matrix: {len(entries)} kernels, {jobs} at a time; per-kernel logs in {base.results}/*/harness.log")

    def one(e: MatrixEntry) -> RunResult:
        req = dataclasses.replace(base, kernel=e.spec, apt_options=base.apt_options + e.apt_options)
        r = run(req, printers[e.spec])
        printers[e.spec].verdict(r.verdict, r.reason)
        table.done[e.spec] = r
        printer.line(f"    {e.spec}: {r.verdict.value} in {r.seconds:.0f}s")
        return r

    ticker = threading.Thread(target=table.loop, daemon=True)
    ticker.start()
    try:
        with procs.SignalGuard(), ThreadPoolExecutor(max_workers=jobs) as pool:
            futures = [pool.submit(one, e) for e in entries]
            try:
                results = [f.result() for f in futures]
            except BaseException as e:
                procs.interrupt(str(e) or "interrupted")
                results = [f.result() for f in futures]
    finally:
        table.stop()
        for log in logs:
            log.close()
    return results


def matrix_exit_code(results: Sequence[RunResult]) -> int:
    return worst([r.verdict for r in results]).exit_code if results else Verdict.ERROR.exit_code


def write_reports(results: Sequence[RunResult], results_dir: Path, wall: float) -> None:
    report.write_atomic(results_dir / "matrix.json", report.matrix_json(results, wall))
    report.write_atomic(results_dir / "summary.md", report.summary_markdown(results, wall))
    report.write_atomic(results_dir / "junit.xml", report.junit_xml(results))

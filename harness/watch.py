"""``harness watch``: from an edit to a verdict in seconds, on a guest booted before it is needed.

A booted guest that has never loaded the module is as fresh as a new boot, so one is
booted ahead (a *spare*). On each change of the module's sources or the project, the
module is rebuilt on the host (a build error is shown at once, no spare spent), the
plan runs on the spare over SSH, the run is judged by the same rules as
``harness run`` and its results written the same way. The spare is then thrown away
(its kernel has loaded the module, maybe been tainted) and the next one boots.
Edits that come while a run is under way are folded into the next run: the newest
sources win.
"""

from __future__ import annotations

import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

from harness.events import Note, Sink
from harness.kernel.sources import BUILD_PRODUCT_RE
from harness.model import Phase, RunResult
from harness.phases import Prepared, RunRequest
from harness.run import Gathered, built_ok, execute, prepare_results, reported, results_id, results_lock, writable_dir
from harness.spares import SparePool, SpareSource


@dataclass
class Watcher:
    """The loop: sources watched, builds on the host, runs on spares, results written."""

    req: RunRequest
    prep: Prepared
    sink: Sink
    max_age: float = 600
    on_result: Callable[[RunResult], None] = lambda r: None
    pool: Optional[SparePool] = None

    def paths(self) -> list[Path]:
        """Everything that decides a run: the module's sources and the project's files (not build
        products, hidden directories, caches, or the results this writes)."""
        results = self.req.results.resolve()
        out: set[Path] = set()
        for root in {self.prep.setup.project.source, self.prep.setup.project.root}:
            for dirpath, dirnames, filenames in os.walk(root):
                here = Path(dirpath)
                dirnames[:] = [d for d in dirnames if not d.startswith(".") and d != "__pycache__"
                               and (here / d).resolve() != results]
                out.update(here / f for f in filenames if not BUILD_PRODUCT_RE.search(f))
        return sorted(out)

    def state(self) -> dict[Path, tuple[int, int]]:
        out = {}
        for p in self.paths():
            try:
                st = p.stat()
                out[p] = (st.st_mtime_ns, st.st_size)
            except OSError:
                continue
        return out

    def once(self, spare_timeout: float = 900) -> RunResult:
        """Build the sources as they are now and run them on the spare: the same pipeline as
        ``harness run`` (``run.execute``: judgement, symbolized traces, coverage, the result
        written however it ends), with a spare for a guest instead of a fresh boot."""
        assert self.pool is not None
        out_dir = self.req.results / results_id(self.req.kernel)
        writable_dir(out_dir)
        with results_lock(out_dir):
            prepare_results(out_dir)
            return reported(self.req, self.sink, out_dir,
                            lambda sink, phases, got: self._body(sink, phases, got, out_dir, spare_timeout))

    def _body(self, sink: Sink, phases: list[Phase], got: Gathered, out_dir: Path, spare_timeout: float) -> None:
        assert self.pool is not None
        s, r = self.prep.setup, self.prep.root
        got.setup, got.kernel = s, r.kernel
        with tempfile.TemporaryDirectory(prefix="kmod-harness-watch-") as tmp:
            if not built_ok(s, r, Path(tmp), out_dir, self.req, sink, phases, got):
                return
            source = SpareSource(self.pool, self.prep, spare_timeout)
            try:
                execute(s, r, Path(tmp), out_dir, self.req, source, sink, phases, got)
            finally:
                if source.age is not None:
                    got.note = f"ran on a spare guest that had been up for {source.age:.0f}s"

    def loop(self, runs: Optional[int] = None, now: bool = False, poll: float = 0.1) -> int:
        """Run on every change until interrupted (or ``runs`` verdicts); returns the last exit code.
        ``now``: a first run at once, on the sources as they are. The next spare boots once a
        verdict is out, never while a spare runs the steps."""
        self.pool = SparePool(self.prep, self.req, self.sink, self.max_age)
        self.pool.refill()
        seen, done, code = self.state(), 0, 0
        self.sink(Note(f"watching {len(seen)} files of {self.prep.setup.project.where}; Ctrl-C to stop"))
        if now:
            seen = {}
        try:
            while runs is None or done < runs:
                time.sleep(poll)
                if self.state() == seen:
                    continue
                t0 = time.monotonic()
                seen = self.settled(poll)
                result = self.once()
                code, done = result.verdict.exit_code, done + 1
                self.on_result(result)
                if runs is None or done < runs:
                    self.pool.refill()
                later = self.state()
                if later != seen:
                    self.sink(Note(f"    the sources changed while that ran ({len(_changed(seen, later))} files): "
                                   "running the newest next"))
                self.sink(Note(f"    {time.monotonic() - t0:.1f}s from the change to the verdict"))
        finally:
            self.pool.close()
        return code

    def settled(self, poll: float, limit: float = 2.0) -> dict[Path, tuple[int, int]]:
        """The files' state once it stops changing for ``poll`` seconds (an editor writes in
        several steps), or after ``limit`` seconds of changes."""
        deadline = time.monotonic() + limit
        state = self.state()
        while time.monotonic() < deadline:
            time.sleep(poll)
            now = self.state()
            if now == state:
                break
            state = now
        return state


def _changed(a: dict[Path, tuple[int, int]], b: dict[Path, tuple[int, int]]) -> set[Path]:
    return {p for p in set(a) | set(b) if a.get(p) != b.get(p)}

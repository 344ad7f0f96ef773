"""``--repeat N`` and ``--retry-infra N`` for ``harness run`` and ``harness matrix``: ``run.run`` called
once per attempt, every attempt kept.

The rules (which attempt counts, when to run another, what the cell adds up to) are pure, in
``verdict/flaky.py``. Here: the attempts run one after the other in the kernel's results
directory; when there is more than one, each one's evidence moves to ``attempts/N/`` as the
next starts, and at the end the evidence of the attempt that stands for the cell is copied
back to the top, with a ``result.json`` that lists every attempt under ``attempts``.
"""

from __future__ import annotations

import dataclasses
import shutil
import socket
from pathlib import Path
from typing import Callable

from harness.events import Note, Sink
from harness.locks import write_atomic
from harness.model import RunResult
from harness.phases import RunRequest
from harness.run import RESULT_FILES, results_id, run
from harness.verdict import flaky, report

ATTEMPTS_DIR = "attempts"
Runner = Callable[[RunRequest, Sink], RunResult]


def attempt_of(r: RunResult, n: int, machine: str) -> flaky.Attempt:
    return flaky.Attempt(n=n, verdict=r.verdict.value, reason=r.reason.split("\n")[0], seconds=r.seconds,
                         counted=flaky.counts(r.verdict), machine=machine, started_at=r.started_at)


def run_repeated(req: RunRequest, sink: Sink, repeat: int = 1, retry_infra: int = 1,
                 once: Runner = run) -> RunResult:
    """Attempts of ``req`` until ``repeat`` of them counted (see ``flaky.another``); the result of
    the one that stands for the cell, with every attempt and the classification."""
    out = req.results / results_id(req.kernel)
    shutil.rmtree(out / ATTEMPTS_DIR, ignore_errors=True)  # a previous run's attempts are not this one's
    machine = socket.gethostname()
    attempts: list[flaky.Attempt] = []
    results: list[RunResult] = []
    while flaky.another(attempts, repeat, retry_infra):
        if attempts:
            _stash(out, attempts[-1].n)
            why = "infra: retried" if not attempts[-1].counted else f"{sum(a.counted for a in attempts)} of {repeat}"
            sink(Note(f"attempt {len(attempts) + 1} on {req.kernel} ({why})"))
        r = once(req, sink)
        results.append(r)
        attempts.append(attempt_of(r, len(attempts) + 1, machine))
    pick = flaky.representative(attempts)
    if len(attempts) > 1:
        _stash(out, attempts[-1].n)
        attempts = [dataclasses.replace(a, dir=f"{ATTEMPTS_DIR}/{a.n}") for a in attempts]
        _restore(out, attempts[pick].n)
    final = dataclasses.replace(results[pick], attempts=tuple(a.to_json() for a in attempts),
                                classification=flaky.classify(attempts), machine=machine)
    if len(attempts) > 1:
        sink(Note(f"{req.kernel}: {flaky.describe(attempts)}"))
    write_atomic(out / "result.json", report.result_json(final))
    return final


def runner(repeat: int, retry_infra: int) -> Runner:
    """A runner for ``matrix.run_matrix``: each kernel's attempts, as ``harness run`` makes them."""
    def one(req: RunRequest, sink: Sink) -> RunResult:
        return run_repeated(req, sink, repeat, retry_infra)
    return one


def _stash(out: Path, n: int) -> None:
    """Move an attempt's evidence from the top of the kernel's directory to attempts/N/."""
    dest = out / ATTEMPTS_DIR / str(n)
    dest.mkdir(parents=True, exist_ok=True)
    for name in RESULT_FILES:
        if (out / name).exists():
            shutil.move(str(out / name), str(dest / name))


def _restore(out: Path, n: int) -> None:
    """Copy an attempt's evidence back to the top of the kernel's directory."""
    src = out / ATTEMPTS_DIR / str(n)
    for name in RESULT_FILES:
        if (src / name).is_dir():
            shutil.copytree(src / name, out / name, symlinks=True)
        elif (src / name).is_file():
            shutil.copy2(src / name, out / name)

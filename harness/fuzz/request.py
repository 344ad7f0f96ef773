"""What ``harness fuzz`` is asked to do: light (no run machinery), so that the command line's
defaults come from here without importing a run."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Optional

if TYPE_CHECKING:
    from harness.phases import RunRequest

DEBUG_KERNEL = "debian-src:trixie+debug"  # vm/configs/debug.config: kcov with only modules instrumented


@dataclass(frozen=True)
class FuzzRequest:
    run: "RunRequest"  # kernel, project, results, accel, cpus, timeouts: as for harness run
    duration: float = 600.0  # the whole command: boots, fuzzing, confirmations
    corpus: Optional[Path] = None  # default: PROJECT/fuzz/corpus/MODULE
    coverage: bool = True  # kcov feedback; off: inputs are mutations of the seeds only
    seed: Optional[int] = None
    max_findings: int = 0  # stop after this many findings (0: fuzz for the whole duration)
    exec_timeout: float = 5.0  # one execution in the guest (under TCG)
    execs_per_child: int = 1  # inputs a forked child executes before the next is forked
    minimize_rounds: int = 3  # boots spent shrinking a crash's input, at most

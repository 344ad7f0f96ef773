"""Attempts of one cell (one kernel's run, repeated or retried) and what they add up to. Pure.

A cell is run ``--repeat N`` times; an attempt whose verdict is ``infra`` (the harness could
not do its job: a download, a root, QEMU, the boot) is run again, up to ``--retry-infra``
times, and does not count. A module's failure (fail, crash, timeout) is never retried: a
crash that goes away on the next attempt is a flaky module, and that is a finding.

Over the attempts that count, a cell is ``pass`` (all passed), ``fail`` (none passed) or
``flaky`` (some passed, some failed). The attempt that stands for the cell (its verdict,
reason and evidence) is the first one that counted and failed; else the attempt that
stopped the series (infra with no retry left, an error, an interrupt); else the first.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from typing import Any, Mapping, Optional, Sequence

from harness.model import Verdict

CLASSIFICATIONS = ("pass", "fail", "flaky")
STOPPING = (Verdict.ERROR, Verdict.INTERRUPTED)  # nothing more runs after these
_SAFE_DIR = re.compile(r"[A-Za-z0-9._+-]+(/[A-Za-z0-9._+-]+)*")


@dataclass(frozen=True)
class Attempt:
    n: int  # 1-based, in the order they ran on their machine
    verdict: str
    reason: str = ""  # its first line
    seconds: float = 0.0
    counted: bool = True  # False: an infra attempt (retried, or the last one when no retry was left)
    machine: Optional[str] = None
    source: Optional[str] = None  # which results directory it came from (harness report)
    dir: Optional[str] = None  # its evidence, relative to the cell's results directory
    started_at: str = ""

    def to_json(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None}

    @property
    def passed(self) -> bool:
        return self.verdict == Verdict.PASS.value


def counts(verdict: Verdict) -> bool:
    """Whether an attempt with this verdict says something about the module."""
    return verdict is not Verdict.INFRA and verdict not in STOPPING


def another(attempts: Sequence[Attempt], repeat: int, retry_infra: int) -> bool:
    """Whether to run one more attempt: fewer than ``repeat`` counted so far, the last one did
    not stop the series, and when it was infra, a retry is left."""
    if not attempts:
        return True
    last = Verdict(attempts[-1].verdict)
    if last in STOPPING:
        return False
    if last is Verdict.INFRA:
        retried = sum(1 for a in attempts if a.verdict == Verdict.INFRA.value)
        return retried <= retry_infra and sum(a.counted for a in attempts) < repeat
    return sum(a.counted for a in attempts) < repeat


def classify(attempts: Sequence[Attempt]) -> str:
    """pass, fail or flaky over the attempts that count; fail when none counted."""
    counted = [a for a in attempts if a.counted]
    if counted and all(a.passed for a in counted):
        return "pass"
    if any(a.passed for a in counted):
        return "flaky"
    return "fail"


def representative(attempts: Sequence[Attempt]) -> int:
    """The index of the attempt that stands for the cell (see the module's docstring)."""
    if not attempts:
        raise ValueError("no attempts")
    for i, a in enumerate(attempts):
        if a.counted and not a.passed:
            return i
    if not attempts[-1].counted:
        return len(attempts) - 1
    return next(i for i, a in enumerate(attempts) if a.counted)


def describe(attempts: Sequence[Attempt]) -> str:
    """``flaky: 2 of 5 attempts failed (crash, crash); 1 not counted (infra)``, ``pass in 5 attempts``."""
    counted = [a for a in attempts if a.counted]
    failed = [a for a in counted if not a.passed]
    if not counted:
        text = "no attempt that counts"
    elif not failed:
        text = f"pass in {len(counted)} attempt{'s' * (len(counted) != 1)}"
    else:
        text = f"{classify(attempts)}: {len(failed)} of {len(counted)} attempts failed"
    if failed:
        text += " (" + ", ".join(a.verdict for a in failed) + ")"
    machines = sorted({a.machine or a.source or "?" for a in attempts})
    if len(machines) > 1:
        text += f" on {len(machines)} machines"
    others = len(attempts) - len(counted)
    if others:
        text += f"; {others} not counted ({', '.join(a.verdict for a in attempts if not a.counted)})"
    return text


def from_json(d: Any) -> Attempt:
    """An attempt read back from result.json; ValueError names what is wrong."""
    if not isinstance(d, Mapping):
        raise ValueError(f"an attempt must be an object, got {type(d).__name__}")
    n, verdict, seconds = d.get("n"), d.get("verdict"), d.get("seconds", 0.0)
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise ValueError(f"attempt n must be a positive integer, got {n!r}")
    if verdict not in {v.value for v in Verdict}:
        raise ValueError(f"attempt {n}: unknown verdict {verdict!r}")
    if not isinstance(seconds, (int, float)) or isinstance(seconds, bool):
        raise ValueError(f"attempt {n}: seconds must be a number, got {seconds!r}")
    text = {k: d.get(k) for k in ("reason", "machine", "source", "dir", "started_at")}
    for k, v in text.items():
        if v is not None and not isinstance(v, str):
            raise ValueError(f"attempt {n}: {k} must be a string, got {v!r}")
    where = text["dir"]
    if where is not None and (not _SAFE_DIR.fullmatch(where) or ".." in where.split("/")):
        raise ValueError(f"attempt {n}: dir must be a relative path inside the cell's directory, got {where!r}")
    counted = d.get("counted", True)
    if not isinstance(counted, bool):
        raise ValueError(f"attempt {n}: counted must be true or false, got {counted!r}")
    return Attempt(n=n, verdict=verdict, seconds=float(seconds), counted=counted, reason=text["reason"] or "",
                   machine=text["machine"], source=text["source"], dir=text["dir"],
                   started_at=text["started_at"] or "")

"""Typed failures. Each carries the verdict it maps to; ``cli`` turns it into an exit code."""

from __future__ import annotations

from harness.model import Verdict


class HarnessError(Exception):
    verdict = Verdict.INFRA

    def __init__(self, message: str, hint: str = ""):
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message + (f"\n  hint: {self.hint}" if self.hint else "")


class UsageError(HarnessError):
    """Bad command line or configuration: exit 2."""

    verdict = Verdict.ERROR


class InfraError(HarnessError):
    """Missing tool, unreachable mirror, broken root, QEMU failure: exit 3."""

    verdict = Verdict.INFRA


class PhaseTimeout(HarnessError):
    """A phase ran past its limit: exit 5."""

    verdict = Verdict.TIMEOUT


class Interrupted(HarnessError):
    """SIGINT or SIGTERM arrived: the run was stopped and cleaned up."""

    verdict = Verdict.INTERRUPTED

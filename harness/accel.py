"""Choose KVM or TCG. Pure decision over facts gathered by ``probe``.

A /dev/kvm that exists and opens is not enough: on a host that is itself a
guest with a paravirtual KVM, stock kernels hang at boot under it. KVM is used
only when /dev/kvm is read-writable and the CPU advertises vmx or svm.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Optional

from harness.errors import UsageError
from harness.model import Accel


@dataclass(frozen=True)
class AccelFacts:
    kvm_rw: bool
    cpu_flags: frozenset[str]


def probe(dev: str = "/dev/kvm", cpuinfo: str = "/proc/cpuinfo") -> AccelFacts:
    flags: set[str] = set()
    try:
        with open(cpuinfo) as f:
            for line in f:
                if line.startswith("flags"):
                    flags.update(line.split(":", 1)[1].split())
                    break
    except OSError:
        pass
    return AccelFacts(kvm_rw=os.access(dev, os.R_OK | os.W_OK), cpu_flags=frozenset(flags))


def choose(requested: str, facts: AccelFacts, foreign: Optional[str] = None) -> tuple[Accel, str]:
    """Return the accelerator and a sentence saying why. ``foreign``: the guest's architecture,
    when it is not the host's (then only TCG can run it)."""
    if foreign is not None:
        if requested == "kvm":
            raise UsageError(f"--accel kvm, but the guest is {foreign} and KVM runs only the host's architecture",
                             hint="leave --accel at auto (TCG)")
        if requested not in ("auto", "tcg"):
            raise UsageError(f"unknown accelerator {requested!r}; use auto, kvm or tcg")
        return Accel.TCG, f"TCG emulation (slow): the guest is {foreign}, not this host's architecture"
    hw = facts.cpu_flags & {"vmx", "svm"}
    usable = facts.kvm_rw and bool(hw)
    if requested == "tcg":
        return Accel.TCG, "TCG requested"
    if requested == "kvm":
        if not usable:
            raise UsageError(
                "--accel kvm, but KVM is not usable here: " + _why_not(facts),
                hint="use --accel tcg or auto",
            )
        return Accel.KVM, "KVM requested"
    if requested != "auto":
        raise UsageError(f"unknown accelerator {requested!r}; use auto, kvm or tcg")
    if usable:
        return Accel.KVM, f"KVM: /dev/kvm is read-writable and the CPU has {sorted(hw)[0]}"
    return Accel.TCG, "TCG emulation (slow): " + _why_not(facts)


def _why_not(facts: AccelFacts) -> str:
    reasons: list[Optional[str]] = [
        None if facts.kvm_rw else "/dev/kvm is missing or not read-writable",
        None if facts.cpu_flags & {"vmx", "svm"}
        else "the CPU advertises neither vmx nor svm (nested or paravirtual KVM)",
    ]
    return "; ".join(r for r in reasons if r)

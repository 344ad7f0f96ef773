"""The plan a run hands the guest runner: what to load, in which order, and the project's steps."""

from __future__ import annotations

import secrets
from typing import Mapping, Optional

from harness.guest.contract import GUEST_RUN_DIR, Plan, PlanStep
from harness.project import Project

BUILD_DIR = f"{GUEST_RUN_DIR}/build"  # the module's build directory, as the guest sees it


def ko_paths(project: Project, built: Optional[Mapping[str, str]]) -> dict[str, str]:
    """Where each module's .ko is in the guest: as the host build found it, or (built in the
    guest, where nothing is known yet) at the top of the build directory, as kbuild puts it."""
    built = built or {}
    return {m.name: f"{BUILD_DIR}/{built.get(m.name, m.name + '.ko')}" for m in project.modules}


def build_plan(project: Project, kos: Mapping[str, str], module_timeout: float,
               guest_build: Optional[tuple[list[str], float]] = None, run_id: str = "") -> Plan:
    """Steps in order: the guest build (``--build-in guest``), the project's "before" steps,
    modprobe of the kernel modules it requires, insmod of each of its modules (with their
    parameters), its "loaded" steps, rmmod in reverse order, its "after" steps.

    A failing build, modprobe or insmod skips what follows but the unloads, which always run.
    """
    one = len(project.modules) == 1
    steps: list[PlanStep] = []
    if guest_build is not None:
        argv, timeout = guest_build
        steps.append(PlanStep("build", tuple(argv), timeout, required=True))
    steps += _project_steps(project, "before")
    steps += [PlanStep(f"modprobe {dep}", ("modprobe", dep), module_timeout, required=True)
              for dep in project.requires]
    steps += [PlanStep("insmod" if one else f"insmod {m.name}", ("insmod", kos[m.name], *m.params),
                       module_timeout, required=True) for m in project.modules]
    steps += _project_steps(project, "loaded")
    steps += [PlanStep("rmmod" if one else f"rmmod {m.name}", ("rmmod", m.module), module_timeout, always=True)
              for m in reversed(project.modules)]
    steps += _project_steps(project, "after")
    return Plan(steps=tuple(steps), run_id=run_id or secrets.token_hex(8),
                env=(("PYTHONDONTWRITEBYTECODE", "1"),))


def _project_steps(project: Project, when: str) -> list[PlanStep]:
    return [PlanStep(s.name, s.argv, s.timeout, s.expect_rc) for s in project.steps if s.when == when]

"""The plan a run hands the guest runner: what to load, in which order, and the project's steps."""

from __future__ import annotations

import secrets
from typing import Mapping, Optional, Sequence

from harness.guest import contract
from harness.guest.contract import GUEST_RUN_DIR, Plan, PlanStep
from harness.project import Project

BUILD_DIR = f"{GUEST_RUN_DIR}/build"  # the module's build directory, as the guest sees it


KUNIT_STEP = "kunit "  # a step loading a KUnit test module: "kunit NAME"; its records are KTAP
GCOV_DIR = "gcov"  # where the coverage step copies /sys/kernel/debug/gcov, under the run directory
# Copies the counters of every profiled object (only the module's: the kernel itself is not
# profiled) after the last unload: gcov_persist keeps an unloaded module's data.
COVERAGE_SCRIPT = (
    'd=/sys/kernel/debug/gcov; [ -d "$d" ] || mount -t debugfs none /sys/kernel/debug || exit 1; '
    f'cd "$d" && find . -name "*.gcda" | while read -r f; do o="{GUEST_RUN_DIR}/{GCOV_DIR}/$f"; '
    'mkdir -p "$(dirname "$o")" && cat "$f" > "$o" || exit 1; done'
)


def ko_paths(project: Project, built: Optional[Mapping[str, str]], extra: Sequence[str] = ()) -> dict[str, str]:
    """Where each module's .ko is in the guest: as the host build found it, or (built in the
    guest, where nothing is known yet) at the top of the build directory, as kbuild puts it.
    ``extra``: more modules by name (the KUnit test modules)."""
    built = built or {}
    names = [m.name for m in project.modules] + list(extra)
    return {n: f"{BUILD_DIR}/{built.get(n, n + '.ko')}" for n in names}


def build_plan(project: Project, kos: Mapping[str, str], module_timeout: float,
               guest_build: Optional[tuple[list[str], float]] = None, run_id: str = "",
               kunit: Sequence[str] = (), coverage: bool = False) -> Plan:
    """Steps in order: the guest build (``--build-in guest``), the project's "before" steps,
    modprobe of the kernel modules it requires, insmod of each of its modules (with their
    parameters), its "loaded" steps, each KUnit test module of ``kunit`` loaded (its suites
    run) and unloaded, rmmod in reverse order, its "after" steps, and with ``coverage`` the
    copy of the gcov counters.

    A failing build, modprobe or insmod skips what follows but the unloads, which always run.
    """
    one = len(project.modules) == 1
    steps: list[PlanStep] = []
    if guest_build is not None:
        argv, timeout = guest_build
        steps.append(PlanStep("build", tuple(argv), timeout, required=True, kind=contract.BUILD))
    steps += _project_steps(project, "before")
    steps += [PlanStep(f"modprobe {dep}", ("modprobe", dep), module_timeout, required=True, kind=contract.MODPROBE)
              for dep in project.requires]
    steps += [PlanStep("insmod" if one else f"insmod {m.name}", ("insmod", kos[m.name], *m.params),
                       module_timeout, required=True, kind=contract.LOAD) for m in project.modules]
    steps += _project_steps(project, "loaded")
    for name in kunit:
        steps += [PlanStep(f"{KUNIT_STEP}{name}", ("insmod", kos[name]), project.kunit.timeout, kind=contract.KUNIT),
                  PlanStep(f"rmmod {name}", ("rmmod", name.replace("-", "_")), module_timeout, always=True,
                           kind=contract.UNLOAD)]
    steps += [PlanStep("rmmod" if one else f"rmmod {m.name}", ("rmmod", m.module), module_timeout, always=True,
                       kind=contract.UNLOAD) for m in reversed(project.modules)]
    steps += _project_steps(project, "after")
    if coverage:
        steps.append(PlanStep("coverage", ("sh", "-c", COVERAGE_SCRIPT), module_timeout, always=True,
                              kind=contract.COVERAGE))
    return Plan(steps=tuple(steps), run_id=run_id or secrets.token_hex(8),
                env=(("PYTHONDONTWRITEBYTECODE", "1"),))


def _project_steps(project: Project, when: str) -> list[PlanStep]:
    return [PlanStep(s.name, s.argv, s.timeout, s.expect_rc, kind=contract.STEP, env=s.env, cwd=s.cwd)
            for s in project.steps if s.when == when]


def kunit_steps(plan: Plan) -> tuple[int, ...]:
    """The steps (by index) whose kernel records are a KUnit test module's KTAP."""
    return tuple(i for i, s in enumerate(plan.steps) if s.kind == contract.KUNIT)

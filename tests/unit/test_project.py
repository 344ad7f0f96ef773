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
    assert p.kunit.modules == ("netlink_kernel_test",) and p.kunit.timeout == 300


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
    ({"module": {"name": "bad name", "source": "src", "trail": "t.toml"}}, "'bad name' is not a module name"),
    ({"module": {"name": "m", "source": "nope", "trail": "t.toml"}}, "source: directory .* does not exist"),
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


M = {"source": "src", "trail": "t.toml"}


@pytest.mark.parametrize("data, words", [
    ({"module": {**M, "name": "m", "params": "devices=2"}}, r"\[module\] params must be a list of strings"),
    ({"module": {**M, "name": "m", "params": ["=2"]}}, r"\[module\] params must be a list"),
    ({"module": {**M, "name": "m", "requires": ["nf conntrack"]}}, r"\[module\] requires must be a list of module"),
    ({"module": {**M}}, r"exactly one of 'name' \(one module\) or \[\[module.load\]\]"),
    ({"module": {**M, "name": "m", "load": [{"name": "n"}]}}, "exactly one of 'name'"),
    ({"module": {**M, "load": []}}, r"\[\[module.load\]\] is empty"),
    ({"module": {**M, "load": [{"name": "a"}, {"name": "a"}]}}, "names a module twice"),
    ({"module": {**M, "load": [{"name": "a", "parms": []}]}}, r"\[\[module.load\]\] #1 has unknown keys \['parms'\]"),
    ({"module": {**M, "load": [{"name": "a"}], "params": ["x=1"]}}, "params goes inside each"),
    ({"module": {**M, "name": "m", "trial": "x"}}, r"\[module\] has unknown keys \['trial'\]"),
    ({"module": {**M, "name": "m"}, "build": {"w1": "no"}}, r"\[build\] w1 must be true or false"),
    ({"module": {**M, "name": "m"}, "build": {"command": "make"}}, r"\[build\] command must be a non-empty list"),
    ({"module": {**M, "name": "m"}, "build": {"flags": []}}, r"\[build\] has unknown keys \['flags'\]"),
    ({"module": {**M, "name": "m"}, "step": [{"name": "s", "run": ["ls"], "timeout": -1}]},
     "timeout must be a positive number"),
    ({"module": {**M, "name": "m"}, "step": [{"name": "s", "run": ["ls"], "expect_rc": 300}]},
     "expect_rc must be an exit status 0-255"),
    ({"module": {**M, "name": "m"}, "kunit": ["m_test"]}, r"\[kunit\] must be a table"),
    ({"module": {**M, "name": "m"}, "kunit": {"modules": "m_test"}}, r"\[kunit\] modules must be a list of .ko names"),
    ({"module": {**M, "name": "m"}, "kunit": {"modules": ["m"]}}, r"\[kunit\] modules names \['m'\] twice"),
    ({"module": {**M, "name": "m"}, "kunit": {"modules": ["t"], "suites": []}}, r"\[kunit\] has unknown keys"),
    ({"module": {**M, "name": "m"}, "kunit": {"modules": ["t"], "timeout": 0}}, r"\[kunit\] timeout must be"),
    ({"module": {**M, "name": "m"}, "step": [{"name": "kunit t", "run": ["ls"]}]}, "are the harness's own steps"),
])
def test_bad_new_keys_name_the_file_and_the_key(tmp_path: Path, data, words):
    (tmp_path / "src").mkdir()
    with pytest.raises(UsageError, match=words) as e:
        parse_project(data, tmp_path, "/x/harness.toml")
    assert str(e.value).startswith("/x/harness.toml: ")


def test_several_modules_with_parameters_and_requirements(tmp_path: Path):
    (tmp_path / "src").mkdir()
    p = parse_project({"module": {**M, "requires": ["videodev"], "load": [
        {"name": "vinput"}, {"name": "hello-5", "params": ["myint=7", "mystring=hi there"]}]},
        "build": {"w1": False, "args": ["KCFLAGS=-DX"], "command": ["make", "KDIR={headers}"]}},
        tmp_path, "h.toml")
    assert [m.name for m in p.modules] == ["vinput", "hello-5"]
    assert [m.module for m in p.modules] == ["vinput", "hello_5"]  # how the kernel names hello-5.ko
    assert p.modules[1].params == ("myint=7", "mystring=hi there") and p.requires == ("videodev",)
    assert p.module == "vinput"
    assert not p.build.w1 and p.build.args == ("KCFLAGS=-DX",) and p.build.command == ("make", "KDIR={headers}")


def test_a_missing_project_directory_is_a_usage_error(tmp_path: Path):
    with pytest.raises(UsageError, match="does not exist"):
        load_project(tmp_path / "nope")


def test_known_failures_are_data_of_the_project(tmp_path: Path):
    (tmp_path / "src").mkdir()
    p = parse_project({"module": {**M, "name": "m"}, "known_failure": [
        {"kernel": "debian:sid", "verdict": "fail", "why": "strncpy is gone in 7.x", "match": "strncpy"}]},
        tmp_path, "h.toml")
    (k,) = p.known_failures
    assert (k.kernel, k.verdict, k.why, k.match) == ("debian:sid", "fail", "strncpy is gone in 7.x", "strncpy")
    for bad, words in (({"verdict": "fail", "why": "x"}, "needs a kernel spec"),
                       ({"kernel": "debian:sidd", "verdict": "fail", "why": "x"}, "unknown Debian suite"),
                       ({"kernel": "debian:sid", "verdict": "broken", "why": "x"}, "needs verdict")):
        with pytest.raises(UsageError, match=words):
            parse_project({"module": {**M, "name": "m"}, "known_failure": [bad]}, tmp_path, "h.toml")

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
    ({}, "module: required, and missing"),
    ({"module": {"name": "m", "source": "src"}}, "module.trail: required, and missing"),
    ({"module": {"name": "bad name", "source": "src", "trail": "t.toml"}},
     "module.name: must be a module name: letters, digits, _ and - \\(got 'bad name'\\)"),
    ({"module": {"name": "m", "source": "nope", "trail": "t.toml"}}, "source: directory .* does not exist"),
    ({"module": {"name": "m", "source": "src", "trail": "t.toml"}, "step": [{"name": "s", "run": "ls"}]},
     "step\\[1\\].run: must be an array \\(got 'ls'\\)"),
    ({"module": {"name": "m", "source": "src", "trail": "t.toml"},
      "step": [{"name": "s", "run": ["ls"], "when": "later"}]}, "step\\[1\\].when: .*'before', 'loaded' or 'after'"),
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
    ({"module": {**M, "name": "m", "params": "devices=2"}}, r"module.params: must be an array \(got 'devices=2'\)"),
    ({"module": {**M, "name": "m", "params": ["=2"]}}, r"module.params\[1\]: must be an insmod parameter"),
    ({"module": {**M, "name": "m", "requires": ["nf conntrack"]}}, r"module.requires\[1\]: must be a module name"),
    ({"module": {**M}}, r"exactly one of 'name' \(one module\) or \[\[module.load\]\]"),
    ({"module": {**M, "name": "m", "load": [{"name": "n"}]}}, "exactly one of 'name'"),
    ({"module": {**M, "load": []}}, r"module.load: must not be empty"),
    ({"module": {**M, "load": [{"name": "a"}, {"name": "a"}]}}, "names a module twice"),
    ({"module": {**M, "load": [{"name": "a", "parms": []}]}}, r"module.load\[1\].parms: unknown key; did you mean "
                                                            r"'params'\?"),
    ({"module": {**M, "load": [{"name": "a"}], "params": ["x=1"]}}, "params go inside each"),
    ({"module": {**M, "name": "m", "trial": "x"}}, r"module.trial: unknown key; did you mean 'trail'\?"),
    ({"module": {**M, "name": "m"}, "build": {"w1": "no"}}, r"build.w1: must be true or false \(got 'no'\)"),
    ({"module": {**M, "name": "m"}, "build": {"command": "make"}}, r"build.command: must be an array"),
    ({"module": {**M, "name": "m"}, "build": {"flags": []}}, r"build.flags: unknown key; did you mean 'args'\?"),
    ({"module": {**M, "name": "m"}, "step": [{"name": "s", "run": ["ls"], "timeout": -1}]},
     r"step\[1\].timeout: Input should be greater than 0 \(got -1\)"),
    ({"module": {**M, "name": "m"}, "step": [{"name": "s", "run": ["ls"], "expect_rc": 300}]},
     r"step\[1\].expect_rc: Input should be less than or equal to 255 \(got 300\)"),
    ({"module": {**M, "name": "m"}, "kunit": ["m_test"]}, r"kunit: must be a table"),
    ({"module": {**M, "name": "m"}, "kunit": {"modules": "m_test"}}, r"kunit.modules: must be an array"),
    ({"module": {**M, "name": "m"}, "kunit": {"modules": ["m"]}}, r"\[kunit\] modules names \['m'\] twice"),
    ({"module": {**M, "name": "m"}, "kunit": {"modules": ["t"], "suites": []}}, r"kunit.suites: unknown key; known "
                                                                                 r"keys here: modules, timeout"),
    ({"module": {**M, "name": "m"}, "kunit": {"modules": ["t"], "timeout": 0}}, r"kunit.timeout: .*greater than 0"),
    ({"module": {**M, "name": "m"}, "step": [{"name": "kunit t", "run": ["ls"]}]}, "one of the harness's own steps"),
    ({"module": {**M, "name": "m"}, "step": [{"name": "insmod", "run": ["ls"]}]}, "one of the harness's own steps"),
    ({"module": {**M, "name": "m"}, "step": [{"name": "rmmod m", "run": ["ls"]}]}, "one of the harness's own steps"),
    ({"module": {**M, "name": "m"}, "step": [{"name": "build", "run": ["ls"]}]}, "one of the harness's own steps"),
    ({"module": {**M, "name": "m"}, "step": [{"name": "a", "run": ["ls"]}, {"name": "a", "run": ["ls"]}]},
     r"\[\[step\]\] names must be unique: \['a'\] named twice"),
    ({"module": {**M, "name": "m"}, "steps": [{"name": "a", "run": ["ls"]}]},
     r"steps: unknown table; did you mean 'step'\?"),
    ({"module": {**M, "name": "m"}, "bulid": {}}, r"bulid: unknown table; did you mean 'build'\?"),
    ({"module": {**M, "name": "m"}, "kunitt": {}}, r"kunitt: unknown table; did you mean 'kunit'\?"),
    ({"module": {**M, "name": "m"}, "step": [{"name": "a", "run": ["ls"], "timout": 5}]},
     r"step\[1\].timout: unknown key; did you mean 'timeout'\?"),
    ({"module": {**M, "name": "m"}, "step": [{"name": "a", "run": ["ls"], "expect-rc": 5}]},
     r"step\[1\].expect-rc: unknown key; did you mean 'expect_rc'\?"),
    ({"module": {**M, "name": "m"}, "step": [{"name": "a", "run": ["ls"], "timeout": float("nan")}]},
     r"step\[1\].timeout: must be a finite number"),
    ({"module": {**M, "name": "m"}, "step": [{"name": "a", "run": ["ls"], "timeout": float("inf")}]},
     r"step\[1\].timeout: must be a finite number"),
    ({"module": {**M, "name": "m"}, "step": [{"name": "a", "run": ["ls"], "timeout": 1e7}]},
     r"step\[1\].timeout: Input should be less than or equal to 86400"),
    ({"module": {**M, "name": "m"}, "kunit": {"timeout": float("nan")}}, r"kunit.timeout: must be a finite number"),
    ({"module": {**M, "name": "m"}, "step": [{"name": "a", "run": ["ls"], "env": {"A B": "1"}}]},
     r"step\[1\].env: key 'A B' must be an environment variable's name"),
    ({"module": {**M, "name": "m"}, "step": [{"name": "a", "run": ["ls"], "cwd": "work"}]},
     r"step\[1\].cwd: must be an absolute guest path"),
    ({"module": {**M, "name": "m"}, "guest": {"packages": "libssl-dev"}}, r"guest.packages: must be an array"),
    ({"module": {"source": "../..", "trail": "t.toml", "name": "m"}}, r"module\] source: '../..' leaves the project"),
    ({"module": {"source": "/etc", "trail": "t.toml", "name": "m"}}, r"module\] source: '/etc' is an absolute path"),
    ({"module": {"source": "src", "trail": "../t.toml", "name": "m"}}, r"module\] trail: '../t.toml' leaves"),
])
def test_bad_new_keys_name_the_file_and_the_key(tmp_path: Path, data, words):
    project = tmp_path / "a" / "b"  # no git work tree around it: the project is this directory
    (project / "src").mkdir(parents=True)
    with pytest.raises(UsageError, match=words) as e:
        parse_project(data, project, "/x/harness.toml")
    assert str(e.value).startswith("/x/harness.toml: ")
    assert "\n" not in e.value.message  # one line (and the hint)


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
    for bad, words in (({"verdict": "fail", "why": "x"}, r"known_failure\[1\].kernel: required, and missing"),
                       ({"kernel": "debian:sidd", "verdict": "fail", "why": "x"}, "unknown Debian suite"),
                       ({"kernel": "debian:sid", "verdict": "broken", "why": "x"},
                        r"known_failure\[1\].verdict: .*'fail', 'error'")):
        with pytest.raises(UsageError, match=words):
            parse_project({"module": {**M, "name": "m"}, "known_failure": [bad]}, tmp_path, "h.toml")


def test_the_reference_is_what_the_schema_says():
    """docs/REFERENCE.md is generated from harness/schema.py: it cannot drift from what is checked."""
    from harness.schema import reference_markdown

    assert (REPO / "docs" / "REFERENCE.md").read_text() == reference_markdown(), (
        "regenerate it: .venv/bin/python -m harness.schema_doc > docs/REFERENCE.md")

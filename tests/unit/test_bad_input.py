"""Every bad input a user can give, through every subcommand that reads it, as a user would run it
(a separate process): exit 2, one line on stderr saying what was wrong (plus the hint), no
traceback, and nothing written outside --results and the cache.

The corpus is tests/hostile/bad_input/, one file per case, its first line `# expect: TEXT` (a part
of the error line). The file's name says what it is: project-* (a harness.toml), pyproject-* (a
pyproject.toml), trail-* (the project's trail file), matrix-* (a matrix file).
"""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on older hosts only
    import tomli as tomllib

CORPUS = REPO / "tests" / "hostile" / "bad_input"
CASES = sorted(p.name for p in CORPUS.iterdir())
GOOD_TRAIL = '[[expect]]\ntext = "m: loaded"\n'
GOOD_PROJECT = '[module]\nname = "m"\nsource = "module"\ntrail = "trail.toml"\n'
SUBCOMMANDS = {
    "project": ("run", "watch", "shell", "matrix", "faults", "fuzz"),
    "pyproject": ("run", "watch", "shell", "matrix", "faults", "fuzz"),
    "trail": ("run", "watch", "matrix", "faults"),  # harness fuzz reads no trail
    "matrix": ("matrix", "kernels resolve"),
}


def expectation(case: str) -> str:
    first = (CORPUS / case).read_bytes().split(b"\n", 1)[0].decode()
    assert first.startswith("# expect: "), case
    return first[len("# expect: "):]


def make_project(tmp: Path, case: str) -> Path:
    project = tmp / "proj" / "a" / "b"  # a project in no git work tree: its directory is all it may read
    (project / "module").mkdir(parents=True)
    (project / "module" / "Kbuild").write_text("obj-m += m.o\n")
    (project / "module" / "m.c").write_text("#include <linux/module.h>\nMODULE_LICENSE(\"GPL\");\n")
    kind = case.split("-", 1)[0]
    text = (CORPUS / case).read_bytes() if case else b""
    (project / "harness.toml").write_text(GOOD_PROJECT)
    (project / "trail.toml").write_text(GOOD_TRAIL)
    if not case:
        pass  # a good project: the bad input is elsewhere
    elif kind == "project":
        (project / "harness.toml").write_bytes(text)
    elif kind == "pyproject":
        (project / "harness.toml").unlink()
        (project / "pyproject.toml").write_bytes(text)
    elif kind == "trail":
        (project / "trail.toml").write_bytes(text)
    elif kind == "matrix":
        (tmp / "kernels.toml").write_bytes(text)
    return project


def argv_for(sub: str, tmp: Path, project: Path, case: str) -> list[str]:
    results = ["--results", str(tmp / "results")]
    if sub == "matrix":
        files = ["--matrix-file", str(tmp / "kernels.toml")] if case.startswith("matrix-") else [
            "--kernels", "debian:bookworm"]
        return ["matrix", "--project", str(project), *files, *results]
    if sub == "kernels resolve":
        return ["kernels", "resolve", "--matrix-options", "--matrix-file", str(tmp / "kernels.toml")]
    return [sub, "--project", str(project), *(results if sub in ("run", "watch", "faults", "fuzz") else [])]


def snapshot(*roots: Path) -> dict[str, tuple[int, int]]:
    out = {}
    for root in roots:
        for dirpath, _dirs, files in os.walk(root):
            for name in files:
                p = Path(dirpath) / name
                st = p.lstat()
                out[str(p)] = (st.st_size, st.st_mtime_ns)
    return out


def harness(argv: list[str], tmp: Path, **env: str) -> subprocess.CompletedProcess:
    environ = {k: v for k, v in os.environ.items() if k != "HARNESS_DEBUG"}
    environ.update({"HARNESS_CACHE": str(tmp / "cache"), **env})
    (tmp / "cwd").mkdir(exist_ok=True)
    return subprocess.run([sys.executable, "-m", "harness", *argv], cwd=tmp / "cwd", env=environ,
                          capture_output=True, text=True, timeout=120)


def one_line_and_a_hint(p: subprocess.CompletedProcess, words: str) -> None:
    assert "Traceback" not in p.stderr, p.stderr
    lines = p.stderr.splitlines()
    assert lines and lines[0].startswith("harness: error: "), p.stderr
    assert words in lines[0], (words, p.stderr)
    assert len(lines) == 1 or lines[1].startswith("  hint: "), p.stderr  # what follows the line is the hint


@pytest.mark.parametrize("case,sub", [(c, s) for c in CASES for s in SUBCOMMANDS[c.split("-", 1)[0]]])
def test_each_bad_file_through_each_subcommand(tmp_path, case, sub):
    project = make_project(tmp_path, case)
    argv = argv_for(sub, tmp_path, project, case)
    before = snapshot(tmp_path / "proj", tmp_path / "cwd") if (tmp_path / "cwd").exists() else snapshot(
        tmp_path / "proj")
    p = harness(argv, tmp_path)
    assert p.returncode == 2, (p.returncode, p.stderr)
    one_line_and_a_hint(p, expectation(case))
    assert snapshot(tmp_path / "proj") == before, "the project was written"
    assert not any((tmp_path / "cwd").iterdir()), "something was written in the working directory"
    assert not (tmp_path / "results").exists() or not any((tmp_path / "results").rglob("result.json"))


GOOD = ["run", "--project", "PROJECT", "--results", "RESULTS"]
HOSTILE = [
    # the environment
    ({"HARNESS_INDEX_TTL": "abc"}, GOOD, "HARNESS_INDEX_TTL='abc': give a number of seconds"),
    ({"HARNESS_INDEX_TTL": "nan"}, GOOD, "HARNESS_INDEX_TTL='nan'"),
    ({"HARNESS_CACHE": "FILE"}, GOOD, "is not a directory"),
    ({"HARNESS_CACHE": "FILE/under"}, GOOD, "cannot be written"),
    ({"HARNESS_MIRROR": "http://x/\n[trusted=yes] http://evil/"}, GOOD, "HARNESS_MIRROR"),
    ({"HARNESS_APT_OPTIONS": 'Acquire::Check-Valid-Until="false";APT::Get::AllowUnauthenticated="1"'}, GOOD,
     "may not hold quotes"),
    ({"HARNESS_CPUS": "abc"}, GOOD, "HARNESS_CPUS='abc'"),
    # the command line
    ({}, GOOD + ["--mirror", "http://x/\n[trusted=yes] http://evil/"], "is not a mirror URL"),
    ({}, GOOD + ["--mirror", "ftp://deb.debian.org/debian"], "is not a mirror URL"),
    ({}, GOOD + ["--apt-option", "Acquire::Check-Valid-Until"], "give KEY=VALUE"),
    ({}, GOOD + ["--apt-option", 'A::B=1";Dir::Etc::Trusted "/tmp/k'], "may not hold quotes"),
    ({}, GOOD + ["--apt-option", "Acquire::AllowInsecureRepositories=true"], "refused: it lets apt use"),
    ({}, GOOD + ["--apt-option", "APT::Get::AllowUnauthenticated=true"], "refused"),
    ({}, GOOD + ["--timeout", "nan"], "give a number of seconds"),
    ({}, GOOD + ["--timeout", "1e300"], "at most"),
    ({}, GOOD + ["--cpus", "0"], "guest vCPUs from 1 to 64"),
    ({}, GOOD + ["--kernel", "x" * 5000], "a spec is one short line"),
    ({}, GOOD + ["--kernel", ".."], "invalid kernel spec '..'"),
    ({}, GOOD + ["--kernel", "../"], "invalid kernel spec '../'"),
    ({}, ["run", "--project", "PROJECT", "--results", "FILE"], "cannot write results to"),
    ({}, ["kernels", "resolve", "--kernel", "debian:bookworm", "--mirror", "http://a b/"], "is not a mirror URL"),
    ({}, ["matrix", "--project", "PROJECT", "--kernels", "debian:bookworm", "-j", "0"], "give at least 1"),
    ({}, ["fuzz", "--project", "PROJECT", "--results", "RESULTS"],
     "no [fuzz] declarations, and none could be inferred"),
    ({}, ["fuzz", "--project", "PROJECT", "--results", "RESULTS", "--duration", "nan"], "give a number of seconds"),
    ({}, ["fuzz", "--project", "PROJECT", "--results", "RESULTS", "--corpus", "FILE"], "is not a directory"),
    ({}, ["fuzz", "--project", "PROJECT", "--results", "RESULTS", "--max-findings", "-1"], "give 0 or more"),
]


@pytest.mark.parametrize("env,argv,words", HOSTILE)
def test_hostile_environments_and_options(tmp_path, env, argv, words):
    project = make_project(tmp_path, "")
    (tmp_path / "FILE").write_text("a plain file\n")
    (tmp_path / "results").mkdir()
    (tmp_path / "results" / "keep.txt").write_text("a previous run's\n")
    subst = {"PROJECT": str(project), "RESULTS": str(tmp_path / "results"), "FILE": str(tmp_path / "FILE")}
    argv = [subst.get(a, a) for a in argv]
    env = {k: v.replace("FILE", str(tmp_path / "FILE")) for k, v in env.items()}
    before = snapshot(tmp_path / "proj", tmp_path / "results")
    p = harness(argv, tmp_path, **env)
    assert p.returncode == 2, (p.returncode, p.stderr)
    one_line_and_a_hint(p, words)
    assert snapshot(tmp_path / "proj", tmp_path / "results") == before
    assert (tmp_path / "FILE").read_text() == "a plain file\n"


def test_a_parent_directory_spec_deletes_nothing_beside_the_results(tmp_path):
    """`harness run -k ..` once cleared modules/, coverage/ and build.log in the results directory's
    parent; now the spec is refused before anything is touched."""
    project = make_project(tmp_path, "")
    for name in ("modules", "coverage"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "x").write_text("keep")
    (tmp_path / "build.log").write_text("keep")
    p = harness(["run", "-k", "..", "--project", str(project), "--results", str(tmp_path / "results")], tmp_path)
    assert p.returncode == 2
    assert (tmp_path / "modules" / "x").read_text() == (tmp_path / "build.log").read_text() == "keep"
    assert (tmp_path / "coverage" / "x").exists()


def test_init_never_writes_invalid_toml(tmp_path):
    (tmp_path / "Kbuild").write_text('obj-m := foo".o good.o\n')
    p = harness(["init", str(tmp_path)], tmp_path)
    assert p.returncode == 0, p.stderr
    doc = tomllib.loads((tmp_path / "harness.toml").read_text())
    assert doc["module"]["name"] == "good"  # the name that is no module name is left out
    shutil.rmtree(tmp_path / "cwd", ignore_errors=True)

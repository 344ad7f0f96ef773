"""`harness fuzz` on the command line: its options, and the errors it stops at before any boot."""

import io

import pytest

from harness import cli

from conftest import REPO


def run_cli(argv, capsys):
    out = io.StringIO()
    code = cli.main(argv, out=out)
    return code, capsys.readouterr().err


def test_help_names_the_declarations_and_the_default_kernel(capsys):
    with pytest.raises(SystemExit):
        cli.main(["fuzz", "--help"])
    text = capsys.readouterr().out
    for word in ("[[fuzz.netlink]]", "debian-src:trixie+debug", "--duration", "--corpus", "--no-coverage",
                 "--execs-per-child", "repro/NAME.py"):
        assert word in text


def _project(tmp_path, fuzz: str):
    (tmp_path / "src").mkdir()
    (tmp_path / "trail.toml").write_text("")
    (tmp_path / "harness.toml").write_text(f'[module]\nname = "m"\nsource = "src"\ntrail = "trail.toml"\n\n{fuzz}')
    return tmp_path


@pytest.mark.parametrize("fuzz, words", [
    ("[[fuzz.netlink]]\nprotocol = \"30\"\n", ["harness.toml:7: fuzz.netlink[1].protocol: must be an integer"]),
    ("[[fuzz.file]]\npath = \"/tmp/x\"\n", ["fuzz.file[1].path"]),
    ("", ["no [fuzz] declarations, and none could be inferred"]),
])
def test_bad_or_missing_declarations_exit_2_before_anything_is_written(fuzz, words, tmp_path, capsys):
    project = _project(tmp_path, fuzz)
    code, err = run_cli(["fuzz", "--project", str(project), "--results", str(tmp_path / "r"), "--accel", "tcg"],
                        capsys)
    assert code == 2, err
    lines = err.splitlines()
    assert lines[0].startswith("harness: error: ") and all(w in lines[0] for w in words), err
    assert len(lines) == 1 or lines[1].startswith("  hint: "), err
    assert not (tmp_path / "r").exists() and not (tmp_path / "fuzz").exists()  # no results, no corpus


@pytest.mark.parametrize("argv, words", [
    (["--execs-per-child", "0"], "--execs-per-child 0: give 1 or more"),
    (["--max-findings", "-1"], "--max-findings -1: give 0 or more"),
    (["--minimize-rounds", "-2"], "--minimize-rounds -2: give 0 or more"),
    (["--duration", "0"], "--duration"),
    (["--duration", "nan"], "give a number of seconds"),
    (["--kernel", ".."], "invalid kernel spec"),
    (["--corpus", "FILE"], "is not a directory"),
    (["--corpus", "FILE/under"], "cannot be made"),
])
def test_bad_options_are_one_line_and_exit_2(argv, words, capsys, tmp_path):
    (tmp_path / "FILE").write_text("x")
    argv = [a.replace("FILE", str(tmp_path / "FILE")) for a in argv]
    code, err = run_cli(["fuzz", "--project", str(REPO), "--results", str(tmp_path / "r"), *argv], capsys)
    assert code == 2 and err.startswith("harness: error:") and words in err.splitlines()[0], err
    assert not (tmp_path / "r").exists()

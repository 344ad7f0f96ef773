"""`harness fuzz` on the command line: its options, and the errors it stops at before any boot."""

import io
import json

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
    ("[[fuzz.netlink]]\nprotocol = \"30\"\n", ["[fuzz] is not valid", "fuzz.netlink[0].protocol"]),
    ("[[fuzz.file]]\npath = \"/tmp/x\"\n", ["fuzz.file[0].path"]),
    ("", ["no [fuzz] declarations, and none could be inferred"]),
])
def test_bad_or_missing_declarations_exit_2_before_anything_boots(fuzz, words, tmp_path, capsys):
    project = _project(tmp_path, fuzz)
    code, err = run_cli(["fuzz", "--project", str(project), "--results", str(tmp_path / "r"), "--accel", "tcg"],
                        capsys)
    assert code == 2, err
    for w in words:
        assert w in err
    d = json.loads((tmp_path / "r" / "fuzz.json").read_text())  # the report says so too
    assert d["verdict"] == "error" and d["exit_code"] == 2 and d["findings"] == []


@pytest.mark.parametrize("argv", [["--execs-per-child", "0"], ["--max-findings", "-1"], ["--duration", "0"]])
def test_bad_numbers_are_usage_errors(argv, capsys, tmp_path):
    code, err = run_cli(["fuzz", "--project", str(REPO), "--results", str(tmp_path), *argv], capsys)
    assert code == 2 and "harness: error:" in err

import io
import os
import re
import subprocess
import sys

import pytest
from test_roots import _cached_root

import harness
from harness import cli
from harness.model import EXIT_CODES, Verdict

from conftest import REPO


def run_cli(argv, capsys):
    out = io.StringIO()
    code = cli.main(argv, out=out)
    return code, out.getvalue(), capsys.readouterr().err


def help_text(argv, capsys) -> str:
    with pytest.raises(SystemExit) as e:
        cli.main(argv)
    assert e.value.code == 0
    return capsys.readouterr().out


def test_help_answers_exit_codes_and_specs(capsys):
    text = help_text(["run", "--help"], capsys)
    for words in ("--kernel", "--accel", "--build-in", "--timeout", "--results", "--record-trail", "exit codes",
                  "debian:SUITE@ABI", "HARNESS_MIRROR"):
        assert words in text
    assert re.search(r"^  4 +kernel crash", text, re.M)
    for verdict, code in EXIT_CODES.items():  # every exit code, from the one table
        assert re.search(rf"^  {code} +{re.escape(verdict.meaning)}$", text, re.M), verdict


def test_matrix_takes_the_options_of_run(capsys):
    text = help_text(["matrix", "--help"], capsys)
    for words in ("--accel", "--project", "--build-in", "--timeout", "--results", "--transport", "--append",
                  "--console-level", "--mirror", "--apt-option", "--refresh", "--kernels", "--shard", "exit codes"):
        assert words in text


def test_version_prints_the_package_version(capsys):
    code, out, _ = run_cli(["--version"], capsys)
    assert code == 0 and out == f"kmod-harness {harness.__version__}\n"


@pytest.mark.parametrize("argv, words", [
    (["run", "--kernel", "debian:bookwurm"], "unknown Debian suite 'bookwurm'"),
    (["run", "--kernel", "bookworm"], "valid forms"),
    (["run", "--timeout", "-3"], "give a number of seconds more than 0"),
    (["run", "--timeout", "nan"], "give a number of seconds more than 0"),
    (["run", "--timeout", "inf"], "give a number of seconds more than 0"),
    (["run", "--timeout", "1e12"], "at most 604800"),
    (["run", "--accel", "xen"], "invalid choice: 'xen'"),
    (["frobnicate"], "invalid choice: 'frobnicate'"),
    (["run", "--project", "/nonexistent-project"], "project /nonexistent-project does not exist"),
    (["run", "--project", "EMPTY"], "no harness.toml"),  # a directory without a description
])
def test_usage_errors_exit_2_and_say_what_was_wrong(argv, words, capsys, tmp_path):
    (tmp_path / "empty").mkdir()
    argv = [str(tmp_path / "empty") if a == "EMPTY" else a for a in argv]
    extra = ["--results", str(tmp_path / "results")] if argv[0] == "run" else []
    code, _, err = run_cli(argv + extra, capsys)
    assert code == EXIT_CODES[Verdict.ERROR] == 2
    assert words in err


def test_a_usage_error_is_one_line_before_anything_is_written(capsys, tmp_path):
    code, _, err = run_cli(["run", "--kernel", "debian:bookwurm", "--results", str(tmp_path / "r")], capsys)
    assert code == 2
    assert err.splitlines()[0] == ("harness: error: unknown Debian suite 'bookwurm' in 'debian:bookwurm'; known "
                                   "suites: bullseye, bookworm, trixie, sid, experimental")
    assert not (tmp_path / "r").exists()


def test_missing_qemu_exits_3_naming_the_package(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # nothing on PATH
    monkeypatch.chdir(REPO)
    code, _, err = run_cli(["run", "--accel", "tcg", "--results", str(tmp_path / "r")], capsys)
    assert code == 3
    assert "qemu-system-x86_64 not found" in err and "qemu-system-x86" in err


def test_kernels_list_shows_suites(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("HARNESS_CACHE", str(tmp_path))
    code, out, _ = run_cli(["kernels", "list"], capsys)
    assert code == 0 and "bookworm" in out


def test_no_command_prints_help_and_exits_2(capsys):
    code, out, _ = run_cli([], capsys)
    assert code == 2 and "COMMAND" in out


@pytest.mark.parametrize("argv, words", [(["--help"], "exit codes"), (["--version"], harness.__version__)])
def test_python_dash_m_entry_point(argv, words):
    p = subprocess.run([sys.executable, "-m", "harness", *argv], capture_output=True, text=True,
                       env=dict(os.environ), cwd=REPO)
    assert p.returncode == 0 and words in p.stdout


def test_kernels_prune_stale_removes_only_what_will_not_be_used(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("HARNESS_CACHE", str(tmp_path))
    roots_dir = tmp_path / "roots"
    live = _cached_root(roots_dir, "base-bookworm-aaaaaaaaaa", used=2_000_000_000)
    older = _cached_root(roots_dir, "base-bookworm-bbbbbbbbbb", used=1_000_000_000)
    (tmp_path / "kernels" / "trixie-linux-source-6.12-x-kasan-y").mkdir(parents=True)
    code, out, _ = run_cli(["kernels", "prune", "--stale", "--dry-run"], capsys)
    assert code == 0 and f"would remove {older}" in out and older.is_dir()
    code, out, _ = run_cli(["kernels", "prune", "--stale"], capsys)
    assert code == 0
    assert f"removed {older}" in out and "superseded by base-bookworm-aaaaaaaaaa" in out and "freed" in out
    assert live.is_dir() and not older.exists() and not (roots_dir / f"{older.name}.log").exists()
    assert (tmp_path / "kernels" / "trixie-linux-source-6.12-x-kasan-y").is_dir()  # built kernels stay


def test_kernels_prune_stale_with_kernels_is_a_usage_error(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("HARNESS_CACHE", str(tmp_path))
    code, _, err = run_cli(["kernels", "prune", "--stale", "--kernels"], capsys)
    assert code == 2 and "--stale and --kernels" in err


@pytest.mark.parametrize("argv", [["run", "--results", "/proc/kmod-harness"],
                                  ["matrix", "--kernels", "debian:bookworm", "--results", "/proc/kmod-harness"]])
def test_results_that_cannot_be_written_are_a_usage_error_before_anything_runs(argv, capsys):
    code, _, err = run_cli(argv, capsys)
    assert code == EXIT_CODES[Verdict.ERROR]
    assert "cannot write results to /proc/kmod-harness" in err and "--results" in err and "Traceback" not in err


def test_guest_cpus_come_from_the_option_then_the_environment_then_the_default(monkeypatch):
    parser = cli.build_parser()
    monkeypatch.delenv("HARNESS_CPUS", raising=False)
    assert cli._request(parser.parse_args(["run"])).cpus == 2
    assert cli._request(parser.parse_args(["run", "--cpus", "3"])).cpus == 3
    assert cli._cpus_of(parser.parse_args(["matrix"]), fallback=1) == 1  # several guests at once
    monkeypatch.setenv("HARNESS_CPUS", "1")
    assert cli._request(parser.parse_args(["run"])).cpus == 1
    assert cli._request(parser.parse_args(["run", "--cpus", "4"])).cpus == 4
    from harness.phases import RunRequest
    assert RunRequest().cpus == 1  # the pytest plugin's and live sessions' requests too


@pytest.mark.parametrize("value", ["0", "two", "65", "-1"])
def test_a_bad_cpu_count_is_a_usage_error_naming_where_it_came_from(value, capsys, monkeypatch, tmp_path):
    code, _, err = run_cli(["run", "--cpus", value, "--results", str(tmp_path / "a")], capsys)
    assert code == 2 and f"--cpus={value!r}" in err and "from 1 to 64" in err
    monkeypatch.setenv("HARNESS_CPUS", value)
    code, _, err = run_cli(["run", "--results", str(tmp_path / "b")], capsys)
    assert code == 2 and f"$HARNESS_CPUS={value!r}" in err
    assert not (tmp_path / "a").exists()

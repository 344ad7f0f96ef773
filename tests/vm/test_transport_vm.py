"""SSH sessions: the same verdict and trail as the exec channel; harness shell; the example module."""

import json
import subprocess
import sys

import pytest

from harness import cli

from conftest import REPO

pytestmark = pytest.mark.vm


def run(tmp, *args):
    code = cli.main(["run", "--results", str(tmp), *args])
    return code, json.loads((tmp / "debian-bookworm" / "result.json").read_text())


def test_exec_and_ssh_give_the_same_verdict_and_trail(own_tmp, monkeypatch):
    monkeypatch.chdir(REPO)
    code_e, exec_res = run(own_tmp / "exec", "--transport", "exec")
    code_s, ssh_res = run(own_tmp / "ssh", "--transport", "ssh")
    assert code_e == code_s == 0, (exec_res["reason"], ssh_res["reason"])
    assert exec_res["verdict"] == ssh_res["verdict"] == "pass"
    texts = [[(t["level"], t["text"]) for t in r["trail"]] for r in (exec_res, ssh_res)]
    assert texts[0] == texts[1] and len(texts[0]) == 5
    vm = next(p for p in ssh_res["phases"] if p["name"] == "vm")
    assert vm["detail"].startswith("ssh: ") and ssh_res["vm"]["exit_status"] == 0 and ssh_res["transport"] == "ssh"


def test_example_chardev_module_passes(own_tmp):
    code, res = run(own_tmp, "--project", str(REPO / "examples" / "chardev"))
    assert code == 0, res["reason"]
    assert [t["text"] for t in res["trail"]] == [
        "kh_echo: registered /dev/kh_echo", "kh_echo: wrote 20 bytes", "kh_echo: read 20 bytes",
        "kh_echo: unregistered"]


def test_shell_runs_commands_with_the_module_loaded_and_powers_off(own_tmp):
    script = "grep -c netlink_kernel /proc/modules; test -d /project/kernel_src && echo project-shared; exit 3\n"
    p = subprocess.run([sys.executable, "-m", "harness", "shell"], input=script, capture_output=True, text=True,
                       cwd=REPO, timeout=600)
    assert p.returncode == 3, p.stderr[-2000:]
    lines = p.stdout.splitlines()
    assert lines[-2:] == ["1", "project-shared"], p.stdout

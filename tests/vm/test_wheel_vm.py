"""The package as another module project installs it: a wheel built from this checkout, installed into
a fresh virtualenv outside the checkout, run from a module project that lives elsewhere.

Nothing here imports the checkout: every command runs the installed `harness` (and pytest with the
installed plugin) in a directory that has no path to this repository.
"""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from harness import __version__
from harness.matrix import load_matrix

from conftest import REPO

pytestmark = pytest.mark.vm

SAMPLE = REPO / "examples" / "module-repo"
PLUGIN_TEST = '''
def test_greeter_loads_with_its_parameters(module_loaded, guest_run, kmsg):
    status, out, err = guest_run("cat /sys/module/kh_greeter/parameters/name")
    assert status == 0, err
    assert out.strip() == "harness"  # loaded with the parameters of harness.toml, as harness run loads it
    kmsg.expect("kh_greeter: hello, harness (2 of 2)", level=6, count=1)
'''


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """A venv (outside the checkout) with the wheel built from the checkout; returns its bin dir."""
    base = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(base / "dist"), str(REPO)],
                   check=True, capture_output=True)
    wheels = list((base / "dist").glob("kmod_harness-*.whl"))
    assert len(wheels) == 1 and __version__ in wheels[0].name
    subprocess.run([sys.executable, "-m", "venv", str(base / "venv")], check=True)
    pip = base / "venv" / "bin" / "pip"
    subprocess.run([str(pip), "install", "-q", str(wheels[0]), "pytest"], check=True, capture_output=True)
    return base / "venv" / "bin"


def outside(tmp_path: Path) -> Path:
    """A module project of its own, away from this checkout: the sample repository's files."""
    project = tmp_path / "my-module"
    shutil.copytree(SAMPLE, project, ignore=shutil.ignore_patterns(".github"))
    return project


def harness(bin_dir: Path, cwd: Path, *argv: str, timeout: float = 900) -> subprocess.CompletedProcess:
    return subprocess.run([str(bin_dir / "harness"), *argv], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout)


def test_the_installed_harness_finds_its_data_and_runs_a_project_elsewhere(installed, tmp_path, own_tmp):
    project = outside(tmp_path)
    assert REPO not in project.parents and not str(installed).startswith(str(REPO))
    p = harness(installed, project, "--help")
    # the configuration fragments came with the wheel: --help lists every one of vm/configs
    flavours = sorted(f.stem for f in (REPO / "vm" / "configs").glob("*.config"))
    assert flavours and p.returncode == 0 and f"debian-src flavours: {', '.join(flavours)}" in p.stdout
    assert harness(installed, project, "--version").stdout == f"kmod-harness {__version__}\n"
    p = harness(installed, project, "matrix", "--list")
    assert p.returncode == 0 and json.loads(p.stdout) == [e.spec for e in load_matrix()]
    p = harness(installed, project, "kernels", "resolve", "--kernel", "debian:bookworm")
    assert p.returncode == 0 and p.stdout.startswith("debian-bookworm-6.1."), p.stderr
    p = harness(installed, project, "run", "--results", str(tmp_path / "results"))
    res = json.loads((tmp_path / "results" / "debian-bookworm" / "result.json").read_text())
    assert p.returncode == 0, res["reason"]
    assert res["harness_version"] == __version__
    assert [t["text"] for t in res["trail"]] == [
        "kh_greeter: hello, harness (1 of 2)", "kh_greeter: hello, harness (2 of 2)", "kh_greeter: goodbye, harness"]


def test_the_installed_pytest_plugin_in_a_project_elsewhere(installed, tmp_path, own_tmp):
    project = outside(tmp_path)
    (project / "test_greeter.py").write_text(PLUGIN_TEST)
    p = subprocess.run([str(installed / "python"), "-m", "pytest", "-q", "-p", "no:cacheprovider",
                        "--harness-results", str(tmp_path / "results")],
                       cwd=project, capture_output=True, text=True, timeout=900)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-2000:]
    assert "1 passed" in p.stdout

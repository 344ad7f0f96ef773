import json
import subprocess
import tempfile
from pathlib import Path

import pytest

DATA = Path(__file__).parent / "data"
REPO = Path(__file__).resolve().parent.parent


def load_guest(name: str) -> dict:
    """A guest-result.json recorded from a real run (see tests/data/README.md)."""
    return json.loads((DATA / name / "guest-result.json").read_text())


@pytest.fixture
def pass_guest() -> dict:
    return load_guest("pass_bookworm")


def qemu_pids(tag: str) -> set[int]:
    """QEMU processes whose command line holds ``tag`` (a test's own temp dir)."""
    p = subprocess.run(["pgrep", "-f", f"qemu-system.*{tag}"], capture_output=True, text=True)
    return {int(x) for x in p.stdout.split()}


@pytest.fixture
def own_tmp(tmp_path, monkeypatch):
    """Run directories (shared into the guest, so on QEMU's command line) go under tmp_path:
    QEMU processes of this test are told apart from any other VM on the machine, and any
    left behind when the test ends fail it."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    yield tmp_path
    left = qemu_pids(str(tmp_path))
    assert not left, f"qemu processes outlived the run: {left}"

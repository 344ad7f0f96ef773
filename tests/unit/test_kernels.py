import os
import subprocess
from pathlib import Path

import pytest

from harness import kernels
from harness.errors import InfraError, UsageError
from harness.model import KernelSpec

from conftest import DATA


class RecordedIndex:
    """apt-cache show answers recorded from the real bookworm index (tests/data/apt)."""

    def __init__(self, suite: str):
        self.dir = DATA / "apt" / suite
        self.mirror = kernels.Mirror()

    def show(self, package: str):
        p = self.dir / f"{package}.txt"
        return kernels.parse_control(p.read_text()) if p.exists() else None


@pytest.mark.parametrize("text, spec", [
    ("debian:bookworm", KernelSpec("debian", "bookworm")),
    ("debian:bookworm@6.1.0-56", KernelSpec("debian", "bookworm", "6.1.0-56")),
    (" debian:trixie@6.12.57+deb13 ", KernelSpec("debian", "trixie", "6.12.57+deb13")),
])
def test_valid_specs(text, spec):
    assert kernels.parse_spec(text) == spec
    assert str(spec) == text.strip()


@pytest.mark.parametrize("text, words", [
    ("bookworm", "valid forms"),
    ("debian:bookwurm", "unknown Debian suite 'bookwurm'"),
    ("ubuntu:noble", "unknown kernel source 'ubuntu'"),
    ("debian:bookworm@", "valid forms"),
])
def test_invalid_specs_name_the_valid_forms(text, words):
    with pytest.raises(UsageError, match=words):
        kernels.parse_spec(text)


def test_resolve_current_kernel_from_recorded_index():
    k = kernels.resolve(KernelSpec("debian", "bookworm"), RecordedIndex("bookworm"))
    assert k.release == "6.1.0-56-amd64"
    assert k.package_version == "6.1.192-2"
    assert k.compiler == "gcc-12"
    assert k.packages == ("linux-image-6.1.0-56-amd64", "linux-headers-6.1.0-56-amd64")


def test_resolve_pinned_kernel():
    k = kernels.resolve(KernelSpec("debian", "bookworm", "6.1.0-56"), RecordedIndex("bookworm"))
    assert k.release == "6.1.0-56-amd64"


def test_unknown_pinned_version_names_package_and_mirror():
    with pytest.raises(InfraError, match=r"linux-image-6\.1\.0-1-amd64 .*deb\.debian\.org"):
        kernels.resolve(KernelSpec("debian", "bookworm", "6.1.0-1"), RecordedIndex("bookworm"))


@pytest.mark.parametrize("depends, gcc", [
    ("linux-headers-6.1.0-56-common (= 6.1.192-2), linux-kbuild-6.1 (>= 6.1.192-2), "
     "linux-compiler-gcc-12-x86", "gcc-12"),
    ("linux-kbuild-6.12.57+deb13, gcc-14", "gcc-14"),
    ("linux-kbuild-5.10", None),
])
def test_compiler_from_headers_depends(depends, gcc):
    assert kernels.compiler_from_depends(depends) == gcc


def test_sources_use_the_security_mirror_and_the_keyring():
    m = kernels.Mirror(debian="http://m/debian", security="http://m/sec")
    lines = m.sources("bookworm")
    assert lines[0] == f"deb [signed-by={kernels.KEYRING}] http://m/debian bookworm main"
    assert lines[2] == f"deb [signed-by={kernels.KEYRING}] http://m/sec bookworm-security main"


def test_mirror_and_apt_options_from_environment(monkeypatch):
    monkeypatch.setenv("HARNESS_MIRROR", "http://example.invalid/debian")
    monkeypatch.setenv("HARNESS_APT_OPTIONS", "Acquire::Check-Valid-Until=false")
    m = kernels.Mirror.from_env(None, ("A::B=1",))
    assert m.debian == "http://example.invalid/debian"
    assert m.apt_options == ("Acquire::Check-Valid-Until=false", "A::B=1")
    assert kernels.Mirror.from_env("http://cli/debian").debian == "http://cli/debian"


def test_missing_keyring_names_the_package(monkeypatch, tmp_path: Path):
    monkeypatch.setattr(kernels, "KEYRING", tmp_path / "none.gpg")
    with pytest.raises(InfraError) as e:
        kernels.check_keyring()
    assert "debian-archive-keyring" in str(e.value)


def test_show_answers_are_kept_until_the_index_is_updated(tmp_path, monkeypatch):
    idx = kernels.AptIndex(tmp_path, "bookworm", kernels.Mirror())
    idx.dir.mkdir(parents=True)
    (idx.dir / "updated").write_text("sources")
    calls = []
    recorded = (Path(__file__).parent.parent / "data/apt/bookworm/linux-image-amd64.txt").read_text()

    def fake_run(argv, **kw):
        calls.append(argv[-1])
        return subprocess.CompletedProcess(argv, 0, recorded, "")

    monkeypatch.setattr(kernels.subprocess, "run", fake_run)
    first = idx.show("linux-image-amd64")
    assert idx.show("linux-image-amd64") == first and len(calls) == 1
    os.utime(idx.dir / "updated", ns=(1, 1))  # a new download
    assert idx.show("linux-image-amd64") == first and len(calls) == 2

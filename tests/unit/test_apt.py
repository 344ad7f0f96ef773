"""The Debian archive: mirrors, the private apt index, specs resolved to packages (harness.kernel.apt)."""

import os
from pathlib import Path

import pytest

from harness import procs
from harness.errors import InfraError
from harness.kernel import apt
from harness.kernel.debian import DebianSpec
from harness.model import Timeouts

from conftest import DATA


class RecordedIndex:
    """apt-cache show answers recorded from the real bookworm index (tests/data/apt)."""

    def __init__(self, suite: str):
        self.dir = DATA / "apt" / suite
        self.mirror = apt.Mirror()

    def show(self, package: str):
        p = self.dir / f"{package}.txt"
        return apt.parse_control(p.read_text()) if p.exists() else None


def test_resolve_current_kernel_from_recorded_index():
    k = apt.resolve(DebianSpec("debian", "bookworm"), RecordedIndex("bookworm"))
    assert k.release == "6.1.0-56-amd64"
    assert k.package_version == "6.1.192-2"
    assert k.compiler == "gcc-12"
    assert k.packages == ("linux-image-6.1.0-56-amd64", "linux-headers-6.1.0-56-amd64")


def test_resolve_pinned_kernel():
    k = apt.resolve(DebianSpec("debian", "bookworm", "6.1.0-56"), RecordedIndex("bookworm"))
    assert k.release == "6.1.0-56-amd64"


def test_unknown_pinned_version_names_package_and_mirror():
    with pytest.raises(InfraError, match=r"linux-image-6\.1\.0-1-amd64 .*deb\.debian\.org"):
        apt.resolve(DebianSpec("debian", "bookworm", "6.1.0-1"), RecordedIndex("bookworm"))


@pytest.mark.parametrize("depends, gcc", [
    ("linux-headers-6.1.0-56-common (= 6.1.192-2), linux-kbuild-6.1 (>= 6.1.192-2), "
     "linux-compiler-gcc-12-x86", "gcc-12"),
    ("linux-kbuild-6.12.57+deb13, gcc-14", "gcc-14"),
    ("linux-kbuild-5.10", None),
])
def test_compiler_from_headers_depends(depends, gcc):
    assert apt.compiler_from_depends(depends) == gcc


def test_sources_use_the_security_mirror_and_the_keyring():
    m = apt.Mirror(debian="http://m/debian", security="http://m/sec")
    lines = m.sources("bookworm")
    assert lines[0] == f"deb [signed-by={apt.KEYRING}] http://m/debian bookworm main"
    assert lines[2] == f"deb [signed-by={apt.KEYRING}] http://m/sec bookworm-security main"


def test_mirror_and_apt_options_from_environment(monkeypatch):
    monkeypatch.setenv("HARNESS_MIRROR", "http://example.invalid/debian")
    monkeypatch.setenv("HARNESS_APT_OPTIONS", "Acquire::Check-Valid-Until=false")
    m = apt.Mirror.from_env(None, ("A::B=1",))
    assert m.debian == "http://example.invalid/debian"
    assert m.apt_options == ("Acquire::Check-Valid-Until=false", "A::B=1")
    assert apt.Mirror.from_env("http://cli/debian").debian == "http://cli/debian"


def test_missing_keyring_names_the_package(monkeypatch, tmp_path: Path):
    monkeypatch.setattr(apt, "KEYRING", tmp_path / "none.gpg")
    with pytest.raises(InfraError) as e:
        apt.check_keyring()
    assert "debian-archive-keyring" in str(e.value)


def test_index_ttl_is_read_when_asked_not_at_import(monkeypatch):
    monkeypatch.delenv("HARNESS_INDEX_TTL", raising=False)
    assert apt.index_ttl() == 3600
    monkeypatch.setenv("HARNESS_INDEX_TTL", "60")
    assert apt.index_ttl() == 60


def test_package_index_freshness(tmp_path):
    idx = apt.AptIndex(tmp_path, "bookworm", apt.Mirror())
    assert not idx.fresh(3600)
    idx.dir.mkdir(parents=True)
    (idx.dir / "updated").write_text("\n".join(apt.Mirror().sources("bookworm")))
    assert idx.fresh(3600) and not idx.fresh(0)
    other = apt.AptIndex(tmp_path, "bookworm", apt.Mirror(debian="http://elsewhere/debian"))
    assert not other.fresh(3600), "a different mirror needs its own update"


def test_show_answers_are_kept_until_the_index_is_updated(tmp_path, monkeypatch):
    idx = apt.AptIndex(tmp_path, "bookworm", apt.Mirror(), Timeouts(tool=7))
    idx.dir.mkdir(parents=True)
    (idx.dir / "updated").write_text("sources")
    calls = []
    recorded = (DATA / "apt/bookworm/linux-image-amd64.txt").read_text()

    def fake_run(argv, **kw):
        calls.append(argv[-1])
        assert kw["timeout"] == 7 and kw["env"]["APT_CONFIG"] == str(idx.conf)
        return procs.Completed(list(argv), 0, recorded, "", 0.0, recorded)

    monkeypatch.setattr(procs, "run", fake_run)
    first = idx.show("linux-image-amd64")
    assert first is not None and first["Package"] == "linux-image-amd64"
    assert idx.show("linux-image-amd64") == first and len(calls) == 1
    os.utime(idx.dir / "updated", ns=(1, 1))  # a new download
    assert idx.show("linux-image-amd64") == first and len(calls) == 2

"""harness watch without a VM: what it watches, and how spares are handed out (booting faked)."""

import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from harness import watch
from harness.errors import InfraError
from harness.phases import RunRequest
from harness.project import parse_project


def project(tmp_path: Path):
    (tmp_path / "module").mkdir()
    (tmp_path / "module" / "m.c").write_text("int x;\n")
    (tmp_path / "module" / "m.o").write_text("object")
    (tmp_path / "trail.toml").write_text("")
    for hidden in (".git", "results", "__pycache__"):
        (tmp_path / hidden).mkdir()
        (tmp_path / hidden / "f").write_text("x")
    return parse_project({"module": {"name": "m", "source": "module", "trail": "trail.toml"}}, tmp_path, "h.toml")


def watcher(tmp_path: Path) -> watch.Watcher:
    prep = SimpleNamespace(setup=SimpleNamespace(project=project(tmp_path)))
    return watch.Watcher(RunRequest(results=tmp_path / "results"), prep, lambda e: None)  # type: ignore[arg-type]


def test_it_watches_sources_and_project_files_not_products_results_or_hidden(tmp_path):
    w = watcher(tmp_path)
    assert [p.relative_to(tmp_path).as_posix() for p in w.paths()] == ["module/m.c", "trail.toml"]
    before = w.state()
    (tmp_path / "results" / "f").write_text("written by the watcher itself")
    (tmp_path / "module" / "m.o").write_text("rebuilt")
    assert w.state() == before
    (tmp_path / "module" / "m.c").write_text("int y;\n")
    assert watch._changed(before, w.state()) == {tmp_path / "module" / "m.c"}


class FakeSpare:
    def __init__(self, n):
        self.n, self.closed, self.booted_at = n, False, time.monotonic()
        self.live = SimpleNamespace(boot_seconds=0.1)

    @property
    def age(self):
        return time.monotonic() - self.booted_at

    def close(self):
        self.closed = True


@pytest.fixture
def pool(monkeypatch):
    booted = []

    def boot(prep, req, sink):
        booted.append(FakeSpare(len(booted)))
        return booted[-1]

    monkeypatch.setattr(watch, "boot_spare", boot)
    monkeypatch.setattr(watch, "honest", lambda spare, prep: None)
    p = watch.SparePool(SimpleNamespace(), RunRequest(), lambda e: None, max_age=600)  # type: ignore[arg-type]
    p.booted = booted
    return p


def test_each_spare_is_handed_out_once_and_the_next_boots_meanwhile(pool):
    pool.start()
    first = pool.take(10)
    second = pool.take(10)
    assert (first.n, second.n) == (0, 1)
    pool.take(10)
    pool.close()
    assert pool.booted[-1].closed  # the one booted ahead and never used is powered off


def test_a_spare_older_than_its_max_age_is_booted_again(pool):
    pool.max_age = 0.05
    pool.start()
    time.sleep(0.2)
    spare = pool.take(10)
    assert pool.booted[0].closed and spare.n >= 1


def test_a_spare_refused_as_dishonest_is_an_infra_error(pool, monkeypatch):
    monkeypatch.setattr(watch, "honest", lambda spare, prep: "it has loaded ['m'] already")
    pool.start()
    with pytest.raises(InfraError, match="a spare guest was refused: it has loaded"):
        pool.take(10)
    assert pool.booted[0].closed

"""harness watch without a VM: what it watches, and how spares are handed out (booting faked)."""

import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from harness import spares, watch
from harness.errors import InfraError
from harness.guest.transport import RUNNER_WAIT_COMMAND
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
        self.n, self.closed, self.discarded, self.booted_at = n, False, False, time.monotonic()
        self.dead = False
        self.started: list[str] = []  # the commands started on it
        self.live = SimpleNamespace(boot_seconds=0.1, alive=lambda: not self.dead,
                                    ssh=SimpleNamespace(start=self.started.append))

    @property
    def age(self):
        return time.monotonic() - self.booted_at

    def close(self):
        self.closed = True

    def discard(self):
        time.sleep(0.2)  # a VM takes a moment to end: close() must wait for it
        self.discarded = self.closed = True


class Pool(spares.SparePool):
    """A SparePool that also keeps the fakes it booted, for the tests to look at."""

    booted: list[FakeSpare]


@pytest.fixture
def pool(monkeypatch):
    booted: list[FakeSpare] = []

    def boot(prep, req, sink, cancel=None):
        booted.append(FakeSpare(len(booted)))
        return booted[-1]

    monkeypatch.setattr(spares, "boot_spare", boot)
    monkeypatch.setattr(spares, "honest", lambda spare, prep: None)
    p = Pool(SimpleNamespace(), RunRequest(), lambda e: None, max_age=600)  # type: ignore[arg-type]
    p.booted = booted
    return p


def test_each_spare_is_handed_out_once_and_the_next_boots_only_when_refilled(pool):
    pool.refill()
    first = pool.take(10)
    time.sleep(0.1)
    assert len(pool.booted) == 1, "no boot may compete with the spare that runs the steps"
    pool.refill()
    second = pool.take(10)
    assert (first.n, second.n) == (0, 1)
    pool.refill()
    pool.refill()  # one on its way already: no second boot
    pool.close()
    assert len(pool.booted) == 3
    assert pool.booted[-1].discarded  # the one booted ahead and never used is ended


def test_a_spare_that_passed_its_checks_has_the_runner_started_and_waiting(pool):
    spare = pool.take(10)
    assert spare.started == [RUNNER_WAIT_COMMAND]
    assert RUNNER_WAIT_COMMAND.startswith("python3 /harness/runner.py --wait /harness/")


def test_take_boots_a_spare_itself_when_none_is_ready_or_booting(pool):
    assert pool.take(10).n == 0


def test_a_spare_older_than_its_max_age_is_booted_again(pool):
    pool.max_age = 0.15
    pool.refill()
    time.sleep(0.3)
    spare = pool.take(10)
    pool.close()
    assert pool.booted[0].discarded and spare.n == 1


def test_a_spare_that_died_while_waiting_is_not_handed_out(pool):
    pool.refill()
    pool._ready.wait(10)
    pool.booted[0].dead = True
    spare = pool.take(10)
    pool.close()
    assert spare.n == 1 and pool.booted[0].discarded


def test_close_waits_for_used_spares_to_end(pool):
    spare = pool.take(10)
    pool.discard(spare)
    pool.close()
    assert spare.discarded


def test_close_ends_a_boot_under_way_instead_of_waiting_for_it(pool, monkeypatch):
    """A fault walk that ends while its next guest boots ahead: under TCG that boot has minutes to go
    (412 s in one walk of tests/vm/test_faultwalk_vm.py, waited for before the walk could report)."""
    called_off: list[bool] = []

    def slow_boot(prep, req, sink, cancel=None):
        called_off.append(cancel.wait(30))  # True: cancel was set, the guest is ended unbooted
        raise InfraError("the guest ended before its SSH server answered")

    monkeypatch.setattr(spares, "boot_spare", slow_boot)
    pool.refill()
    time.sleep(0.1)
    pool.close()
    assert called_off == [True]


def test_a_spare_refused_as_dishonest_is_an_infra_error(pool, monkeypatch):
    monkeypatch.setattr(spares, "honest", lambda spare, prep: "it has loaded ['m'] already")
    pool.refill()
    with pytest.raises(InfraError, match="a spare guest was refused: it has loaded"):
        pool.take(10)
    assert pool.booted[0].closed and pool.booted[0].started == []

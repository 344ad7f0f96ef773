"""Confirmation and minimization of a crash, with `harness run` replaced by recorded results:
which runs are made, in which order, what the finding says, and the repro written into the project."""

import json
import shutil
from dataclasses import replace
from types import SimpleNamespace
from typing import cast

from harness.fuzz import boot, confirm
from harness.fuzz.prepare import FuzzPrep
from harness.fuzz.request import FuzzRequest
from harness.guest import fuzzmut
from harness.model import Verdict
from harness.phases import RunRequest
from harness.project import load_project
from harness.resultjson import load as result_from_json

from conftest import DATA, REPO

CRASHED = result_from_json(json.loads((DATA / "fuzz_blog" / "confirm-result.json").read_text()))  # case-1 died


def _confirmer(tmp_path, monkeypatch, outcomes):
    project = tmp_path / "netlink"
    shutil.copytree(REPO / "tests/fixtures/netlink", project)
    targets = [{"kind": "netlink", "protocol": 30, "key": "netlink:30"}]
    prep = SimpleNamespace(project=load_project(project / "blog_fuzz.toml"), targets=targets,
                           root=SimpleNamespace(has=lambda option: False))
    freq = FuzzRequest(run=RunRequest(kernel="debian-src:trixie+debug", results=tmp_path / "r"), minimize_rounds=3)
    seen = []

    def fake_run(req, sink):
        p = load_project(req.project)  # a valid project, beside the fixture's description
        assert req.project.parent == project and req.project.name.startswith(confirm.CONFIRM_PREFIX)
        assert p.source == prep.project.source and [m.name for m in p.modules] == ["blog_unsafe"]
        seen.append([(project / s.argv[1].removeprefix("/project/")).read_text() for s in p.steps])
        return outcomes.pop(0)(p.steps)

    monkeypatch.setattr(boot, "run_steps", fake_run)
    return confirm.Confirmer(cast(FuzzPrep, prep), freq, tmp_path / "findings", lambda ev: None, []), project, seen


def _died_in(index):
    return lambda steps: replace(CRASHED, vm=dict(CRASHED.vm, running=steps[index].name))


def _survived(steps):
    return replace(CRASHED, verdict=Verdict.PASS, splats=(), vm=dict(CRASHED.vm, running=None))


def test_a_crash_is_confirmed_shrunk_and_written_as_a_repro(tmp_path, monkeypatch):
    big = fuzzmut.nl_message(b"x" * 30, seq=7, pid=0)
    c, project, seen = _confirmer(tmp_path, monkeypatch, [_died_in(0), _died_in(0), _survived])
    clock = iter(range(100, 200)).__next__
    f = c.finding([{"t": 0, "op": "send", "cmd": 0, "data": big}], 42.0, clock, [])
    assert len(seen) == 3  # confirm, round 1 (a crash), round 2 (none: the end)
    assert len(seen[0]) == 1 and seen[0][0].count("bytes.fromhex") == 1
    assert f.confirmed and f.found_at == 42.0 and f.rule == "kasan" and f.where is None
    assert f.input_bytes == len(big) and f.minimized_bytes == 16  # round 1's smallest: the header alone
    assert f.runs == [str(tmp_path / "findings" / f"run-{i}") for i in (1, 2, 3)]
    text = (project / f.repro).read_text()
    assert f.repro == f"repro/{f.name}.py" and big[:16].hex() in text
    assert f.step == f'[[step]]\nname = "{f.name}"\nrun = ["python3", "/project/repro/{f.name}.py"]\ntimeout = 60\n'
    assert not list(project.glob(confirm.CONFIRM_PREFIX + "*"))  # the throwaway projects are gone


def test_a_crash_a_fresh_guest_survives_is_unconfirmed(tmp_path, monkeypatch):
    c, project, seen = _confirmer(tmp_path, monkeypatch, [_survived, _survived])
    inputs = [{"t": 0, "op": "send", "cmd": 0, "data": b"a" * 20}, {"t": 0, "op": "send", "cmd": 0, "data": b"b"}]
    f = c.finding(inputs, 5.0, lambda: 9.0, [])
    assert len(seen) == 2 and len(seen[1]) == 1 and seen[1][0].count("bytes.fromhex") == 2  # then all in order
    assert not f.confirmed and f.repro is None and "not reproduced" in f.consequence
    assert not (project / "repro").exists()

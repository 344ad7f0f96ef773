"""tests/workflow/act_local.py without act: which actions the workflows pin, how local copies of
them are found (HARNESS_ACT_ACTIONS), and what a machine with neither copies nor GitHub is told.
(Unit tests: no workflow marker; test_workflow_act.py runs act for real.)"""

import pytest

import act_local
from conftest import allowed_skips


def test_the_pins_are_read_from_the_workflows_and_the_composite_action():
    pins = act_local.pinned_actions()
    names = {p.split("@")[0] for p in pins}
    assert {"actions/checkout", "actions/setup-python", "actions/upload-artifact", "actions/cache"} <= names
    assert all(len(p.split("@")[1]) == 40 for p in pins)


def copies_of(root, pins, skip=""):
    for p in pins:
        owner, rest = p.split("/", 1)
        if p.split("@")[0] != skip:
            (root / (rest if owner == "actions" else f"{owner}+{rest}")).mkdir(parents=True)


def test_local_copies_map_every_pin_and_upload_artifact_goes_to_the_standin(tmp_path, monkeypatch):
    pins = act_local.pinned_actions()
    copies_of(tmp_path, pins, skip="actions/upload-artifact")
    (tmp_path / f"someone+tool@{'a' * 40}").mkdir()
    monkeypatch.setenv("HARNESS_ACT_ACTIONS", str(tmp_path))
    maps = dict(m.split("=", 1) for m in act_local.action_maps())
    for name, standin in act_local.STANDINS.items():  # a local copy of a stand-in's action is not used
        pinned = next(p for p in pins if p.startswith(name + "@"))
        assert maps[pinned] == str(standin)
    assert maps[f"someone/tool@{'a' * 40}"] == str(tmp_path / f"someone+tool@{'a' * 40}")
    assert set(maps) == pins | {f"someone/tool@{'a' * 40}"}


def test_a_missing_copy_is_named(tmp_path, monkeypatch):
    copies_of(tmp_path, act_local.pinned_actions(), skip="actions/setup-python")
    monkeypatch.setenv("HARNESS_ACT_ACTIONS", str(tmp_path))
    with pytest.raises(act_local.Unavailable, match=r"has no copy of actions/setup-python@[0-9a-f]{40}: add"):
        act_local.action_maps()


def test_offline_without_copies_says_what_to_set_and_ci_accepts_it(monkeypatch):
    monkeypatch.delenv("HARNESS_ACT_ACTIONS", raising=False)
    monkeypatch.setattr(act_local, "github_reachable", lambda: "Could not resolve host: github.com")
    with pytest.raises(act_local.Unavailable) as e:
        act_local.action_maps()
    assert "set HARNESS_ACT_ACTIONS to a directory of local copies" in str(e.value)
    assert any(reason in str(e.value) for reason in allowed_skips())


def test_with_github_reachable_only_the_standin_is_mapped(monkeypatch):
    monkeypatch.delenv("HARNESS_ACT_ACTIONS", raising=False)
    monkeypatch.setattr(act_local, "github_reachable", lambda: "")
    assert [m.split("=")[0].split("@")[0] for m in act_local.action_maps()] == sorted(act_local.STANDINS)

"""The fan-out under act: a plan job, two cells through the action (each boots its kernel), and the
report job that downloads them and runs harness report against the last successful run on the
default branch. Runs act with test_workflow_act's helper; actions/download-artifact is a local
stand-in (tests/workflow/download-artifact) beside the upload one, and GitHub's API, which the
action asks for the last default-branch run that kept a history, is a `gh` stand-in the test puts
first on PATH, answering with a run whose history the test wrote.

Two runs, four boots: ci.yml against a history where bookworm had failed (the report records it
fixed, the job passes), and the sample module repository, in a copy of this repository where a
commit broke its module, against a history where both kernels passed (the report job fails)."""

import dataclasses
import json
import os
import re
import shutil
import socket
import subprocess
from pathlib import Path

import pytest
from test_workflow_act import act

from harness import history_store
from harness.verdict import compare, history

from conftest import REPO

pytestmark = pytest.mark.workflow

EARLIER_RUN = "4242"
CELLS = ("debian:bookworm", "debian:trixie")


def earlier_history(runs: Path, states: dict[str, str]) -> None:
    """The history artifact an earlier default-branch run left: one run, ok, with these verdicts."""
    store = runs / EARLIER_RUN / "kmod-harness-history"
    history_store.prepare(store)
    outcomes = [compare.Outcome(kernel=k, verdict=v, reason="recorded earlier" if v != "pass" else "",
                                classification="pass" if v == "pass" else "fail") for k, v in states.items()]
    e = history.Entry("e" * 40, "2026-12-01T10:00:00+00:00", "main", "", True, tuple(outcomes))
    text = json.dumps({"schema": "kmod-harness/matrix/v2", "kernels": [dataclasses.asdict(o) for o in outcomes],
                       "run": history.run_meta(e)})
    history_store.add(store, text, e)


def fake_gh(tmp: Path) -> tuple[dict[str, str], Path]:
    """A `gh` that logs its arguments and answers GitHub's list of artifacts with the earlier run's."""
    bin_ = tmp / "bin"
    bin_.mkdir()
    log = tmp / "gh.log"
    reply = tmp / "gh-reply.json"
    reply.write_text(json.dumps({"artifacts": [
        {"name": "kmod-harness-history", "expired": False, "created_at": "2026-12-01T10:00:00Z",
         "workflow_run": {"id": int(EARLIER_RUN), "head_branch": "main"}},
        {"name": "kmod-harness-history", "expired": False, "created_at": "2026-12-02T10:00:00Z",
         "workflow_run": {"id": 9999, "head_branch": "a-feature"}}]}))
    gh = bin_ / "gh"
    gh.write_text(f'#!/bin/sh\nprintf "%s\\n" "$*" >> {log}\ncat {reply}\n')
    gh.chmod(0o755)
    return {"PATH": f"{bin_}:{os.environ['PATH']}"}, log


def free_port() -> int:
    """A port for act's artifact server (unused here, but act starts it): its fixed default, 34567, is
    taken whenever another act runs on the machine."""
    with socket.socket() as s:
        s.bind(("", 0))
        return s.getsockname()[1]


def run_fanout(tmp: Path, job: str, *extra: str) -> tuple[subprocess.CompletedProcess, Path, Path]:
    artifacts = tmp / "artifacts"
    artifacts.mkdir()
    env, gh_log = fake_gh(tmp)
    event = tmp / "event.json"  # a push whose repository's default branch is main (act's own says master)
    event.write_text(json.dumps({"ref": "refs/heads/main", "repository": {"default_branch": "main"}}))
    old_path = os.environ["PATH"]
    os.environ["PATH"] = env["PATH"]  # act's host runner gives its steps its own PATH
    try:
        p = act(job, artifacts, "--env", f"KMOD_ARTIFACT_RUNS={tmp / 'runs'}", "--env", f"PATH={env['PATH']}",
                "--var", "KMOD_HARNESS_ROOTS_CACHE=false", "--eventpath", str(event),
                "--artifact-server-port", str(free_port()), *extra, timeout=2400)
    finally:
        os.environ["PATH"] = old_path
    return p, artifacts, gh_log


def step_summary(log: str, job: str) -> str:
    """What a job's steps appended to $GITHUB_STEP_SUMMARY, as act prints it (the last one)."""
    blocks = re.findall(rf"\[[^\]]*/{re.escape(job)} *\] +⚙  Summary - (.*?)(?=\n\[)", log, re.S)
    assert blocks, f"no step summary from {job}"
    return blocks[-1]


def check_both_cells_reported(artifacts: Path, cells_pattern: str) -> dict:
    cells = sorted(artifacts.glob(cells_pattern))
    assert len(cells) == 2, sorted(p.name for p in artifacts.iterdir())
    rep = artifacts / "kmod-harness-report"
    doc = json.loads((rep / "matrix.json").read_text())
    assert [k["kernel"] for k in doc["kernels"]] == list(CELLS), doc["kernels"]
    page, md = (rep / "index.html").read_text(), (rep / "summary.md").read_text()
    for kernel in CELLS:
        assert f"`{kernel}`" in md and f'href="{kernel.replace(":", "-")}/console.log"' in page
        assert (rep / kernel.replace(":", "-") / "console.log").stat().st_size > 1000
    return doc


def test_ci_fanout_records_a_fix_against_the_last_successful_run(tmp_path):
    earlier_history(tmp_path / "runs", {"debian:bookworm": "crash", "debian:trixie": "pass"})
    p, artifacts, gh_log = run_fanout(tmp_path, "report", "--var", f"KMOD_HARNESS_KERNELS={','.join(CELLS)}")
    assert p.returncode == 0, p.stdout[-6000:]
    assert "repos/" in gh_log.read_text() and "name=kmod-harness-history" in gh_log.read_text()
    doc = check_both_cells_reported(artifacts, "kmod-harness-cell-*")
    assert {r["kernel"]: r["status"] for r in doc["compared"]} == {"debian:bookworm": "fixed",
                                                                   "debian:trixie": "pass"}
    assert doc["exit_code"] == 0 and doc["run"]["ok"] is True
    md = (artifacts / "kmod-harness-report" / "summary.md").read_text()
    assert "| `debian:bookworm` | fixed | crash -> pass |" in md
    assert "kmod-harness: pass (exit 0)" in p.stdout
    assert "history: the artifact kmod-harness-history of run 4242\n" in p.stdout  # main's, not the feature's
    assert step_summary(p.stdout, "one report for every cell").strip() == md.strip()
    kept = history_store.load(artifacts / "kmod-harness-history")[0]
    assert [e.ok for e in kept] == [True, True] and kept[0].commit == "e" * 40


def repo_copy_with_a_regression(dest: Path) -> Path:
    """This repository as it is (its files, not its git history), where one commit broke kh_greeter."""
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=REPO, check=True,
                           capture_output=True).stdout.decode().split("\0")
    for f in filter(None, files):
        if (REPO / f).is_file():
            (dest / f).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / f, dest / f)
    git = ["git", "-C", str(dest), "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run([*git, "init", "-q", "-b", "main"], check=True)
    subprocess.run([*git, "add", "-A"], check=True)
    subprocess.run([*git, "commit", "-qm", "as it is"], check=True)
    module = dest / "examples" / "module-repo" / "module" / "kh_greeter.c"
    module.write_text(module.read_text().replace('"kh_greeter: hello, %s', '"kh_greeter: hullo, %s'))
    subprocess.run([*git, "commit", "-qam", "kh_greeter: a typo"], check=True)
    return dest


def test_sample_repository_fanout_fails_on_a_regression(tmp_path):
    """examples/module-repo's workflow (plan from its kernels.toml, two cells with --repeat 2, the report)
    after a commit that breaks its module, against a history where both kernels passed."""
    copy = repo_copy_with_a_regression(tmp_path / "repo")
    earlier_history(tmp_path / "runs", {k: "pass" for k in CELLS})
    workflow = copy / "examples" / "module-repo" / ".github" / "workflows" / "kmod.yml"
    p, artifacts, _ = run_fanout(tmp_path, "report", "-C", str(copy), "-W", str(workflow))
    assert p.returncode != 0, p.stdout[-6000:]
    assert "kmod-harness report said fail (exit 1)" in p.stdout, p.stdout[-6000:]
    doc = check_both_cells_reported(artifacts, "kmod-harness-cell-*")
    assert {r["kernel"]: (r["status"], r["counts"]) for r in doc["compared"]} == {
        k: ("new failure", True) for k in CELLS}
    for k in doc["kernels"]:
        assert k["classification"] == "fail" and [a["verdict"] for a in k["attempts"]] == ["fail", "fail"], k
    page = (artifacts / "kmod-harness-report" / "index.html").read_text()
    assert "failing since" in page and "first failing: this run" in page
    md = (artifacts / "kmod-harness-report" / "summary.md").read_text()
    assert step_summary(p.stdout, "report").strip() == md.strip() and "**new failure**" in md
    kept = history_store.load(artifacts / "kmod-harness-history")[0]
    assert [e.ok for e in kept] == [True, False]

"""harness report on results directories made from recorded real runs (tests/data): merging two
machines, the same cell found twice, baselines, history, and hostile input (a broken cell or exit
2, never a traceback)."""

import json
import os
import shutil
from pathlib import Path

import pytest

from harness import cli, history_store
from harness.verdict import history

from conftest import DATA

PASS = DATA / "pass_bookworm"
CRASH = DATA / "warn_on_load"


def machine(root: Path, *cells: tuple[str, Path], matrix: bool = False) -> Path:
    """A results directory as `harness run`/`matrix` leaves it: <kernel>/result.json and evidence."""
    root.mkdir(parents=True, exist_ok=True)
    for kernel, rec in cells:
        d = root / kernel.replace(":", "-")
        shutil.copytree(rec, d, dirs_exist_ok=True)
        doc = json.loads((rec / "result.json").read_text())
        doc["kernel"] = kernel
        (d / "result.json").write_text(json.dumps(doc))
    if matrix:
        (root / "matrix.json").write_text(json.dumps({"kernels": [{"kernel": k, "verdict": "pass"} for k, _ in cells]}))
    return root


def report(tmp_path, capsys, *args: str) -> tuple[int, dict, str]:
    out = tmp_path / "out"
    code = cli.main(["report", *args, "--results", str(out), "--project", str(tmp_path)])
    err = capsys.readouterr().err
    assert "Traceback" not in err
    doc = json.loads((out / "matrix.json").read_text()) if (out / "matrix.json").exists() else {}
    return code, doc, err


def by_kernel(doc: dict) -> dict:
    return {k["kernel"]: k for k in doc["kernels"]}


def test_two_machines_make_one_report(tmp_path, capsys, monkeypatch):
    a = machine(tmp_path / "a", ("debian:bookworm", PASS))
    b = machine(tmp_path / "b", ("debian:trixie", CRASH))
    summary = tmp_path / "step-summary.md"
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    code, doc, _ = report(tmp_path, capsys, str(a), str(b))
    assert code == 4  # no baseline: the crash counts
    assert by_kernel(doc)["debian:bookworm"]["verdict"] == "pass"
    assert by_kernel(doc)["debian:trixie"]["verdict"] == "crash"
    assert doc["sources"] == ["a", "b"] and doc["run"]["ok"] is False
    out = tmp_path / "out"
    assert (out / "debian-trixie" / "console.log").read_bytes() == (CRASH / "console.log").read_bytes()
    md = summary.read_text()
    assert md == (out / "summary.md").read_text()
    assert "`debian:bookworm`" in md and "`debian:trixie`" in md and "**crash**" in md
    page = (out / "index.html").read_text()
    assert 'href="debian-trixie/console.log"' in page and "debian:bookworm" in page
    junit = (out / "junit.xml").read_text()
    assert 'testsuite name="debian:bookworm"' in junit and 'testsuite name="debian:trixie"' in junit


def test_the_same_cell_from_two_machines_is_one_cell_with_two_attempts(tmp_path, capsys):
    a = machine(tmp_path / "m1", ("debian:bookworm", PASS))
    b = machine(tmp_path / "m2", ("debian:bookworm", CRASH))
    code, doc, _ = report(tmp_path, capsys, str(a), str(b))
    [cell] = doc["kernels"]
    assert cell["classification"] == "flaky" and cell["verdict"] == "crash" and code == 4
    assert [(x["source"], x["verdict"], x.get("dir")) for x in cell["attempts"]] == [
        ("m1", "pass", "sources/m1"), ("m2", "crash", None)]
    out = tmp_path / "out" / "debian-bookworm"
    assert (out / "console.log").read_bytes() == (CRASH / "console.log").read_bytes()  # the failure's evidence
    assert (out / "sources" / "m1" / "console.log").read_bytes() == (PASS / "console.log").read_bytes()
    merged = json.loads((out / "result.json").read_text())
    assert merged["classification"] == "flaky" and len(merged["attempts"]) == 2
    page = (tmp_path / "out" / "index.html").read_text()
    assert "flaky: 1 of 2 attempts failed (crash)" in page and 'href="debian-bookworm/sources/m1/result.json"' in page
    # Merging the merged report again with a third machine keeps every attempt.
    c = machine(tmp_path / "m3", ("debian:bookworm", PASS))
    code, doc, _ = report(tmp_path, capsys, str(tmp_path / "out"), str(c))
    assert [x["source"] for x in doc["kernels"][0]["attempts"]] == ["m1", "m2", "m3"]


def test_a_baseline_turns_failures_into_what_changed(tmp_path, capsys):
    old = machine(tmp_path / "old", ("debian:bookworm", CRASH), ("debian:trixie", PASS))
    code, base, _ = report(tmp_path, capsys, str(old))
    shutil.copytree(tmp_path / "out", tmp_path / "base")
    now = machine(tmp_path / "now", ("debian:bookworm", PASS), ("debian:trixie", PASS))
    code, doc, _ = report(tmp_path, capsys, str(now), "--baseline", str(tmp_path / "base" / "matrix.json"))
    assert code == 0 and {r["kernel"]: r["status"] for r in doc["compared"]} == {
        "debian:bookworm": "fixed", "debian:trixie": "pass"}
    worse = machine(tmp_path / "worse", ("debian:bookworm", PASS), ("debian:trixie", CRASH))
    code, doc, _ = report(tmp_path, capsys, str(worse), "--baseline", str(tmp_path / "base"))
    assert code == 4 and {r["kernel"]: r["status"] for r in doc["compared"]}["debian:trixie"] == "new failure"
    assert "new failure" in (tmp_path / "out" / "summary.md").read_text()


def test_history_says_when_a_cell_started_failing_and_gives_the_baseline(tmp_path, capsys):
    hist = tmp_path / "history"
    runs = [("c1", "2026-12-01T10:00:00+00:00", PASS), ("c2", "2026-12-02T10:00:00+00:00", CRASH),
            ("c3", "2026-12-03T10:00:00+00:00", CRASH)]
    codes = []
    for commit, date, rec in runs:
        d = machine(tmp_path / commit, ("debian:bookworm", rec))
        code, doc, _ = report(tmp_path, capsys, str(d), "--history", str(hist), "--commit", commit, "--date", date,
                              *(["--baseline", str(hist)] if history_store.is_store(hist) else []))
        codes.append(code)
    assert codes == [0, 4, 4]  # c3 is compared with c1, the last run that was ok, not with c2
    entries, problems = history_store.load(hist)
    assert [(e.commit, e.ok) for e in entries] == [("c1", True), ("c2", False), ("c3", False)] and not problems
    base = history.baseline(entries)
    assert base is not None and base.commit == "c1"
    page = (tmp_path / "out" / "index.html").read_text()
    assert "failing since 2026-12-02 (first failing: commit c2; 3 runs in the history)" in page
    assert page.count('class="hist ') == 3
    assert "failing since 2026-12-02" in (tmp_path / "out" / "summary.md").read_text()


def test_a_matrix_json_alone_is_read_for_what_it_says(tmp_path, capsys):
    d = tmp_path / "only"
    d.mkdir()
    (d / "matrix.json").write_text(json.dumps({"kernels": [
        {"kernel": "debian:sid", "verdict": "fail", "reason": "does not build", "classification": "fail"}]}))
    code, doc, _ = report(tmp_path, capsys, str(d / "matrix.json"))
    assert code == 1 and by_kernel(doc)["debian:sid"]["reason"] == "does not build"


@pytest.mark.parametrize("content, says", [
    (b"{not json", "not JSON"),
    (b"\xff\xfe\x00", "not UTF-8"),
    (b"[1, 2]", "not a JSON object"),
    (b'{"schema": "something/else", "kernel": "debian:bookworm", "verdict": "pass"}', "not a kmod-harness result"),
    (b'{"kernel": "debian:bookworm", "verdict": "splendid"}', "malformed"),
    (b'{"kernel": "debian:bookworm", "verdict": "pass", "phases": [{"name": "vm", "seconds": "long"}]}',
     "cannot be reported"),
    (b'{"kernel": "debian:bookworm", "verdict": "pass", "attempts": [{"n": 1, "verdict": "pass", "dir": "/etc"}]}',
     "relative path inside"),
    (b"[" * 100000 + b"]" * 100000, "nested too deeply"),
])
def test_a_result_that_cannot_be_read_is_a_broken_cell_not_a_traceback(tmp_path, capsys, content, says):
    good = machine(tmp_path / "good", ("debian:trixie", PASS))
    bad = tmp_path / "bad" / "debian-bookworm"
    bad.mkdir(parents=True)
    (bad / "result.json").write_bytes(content)
    code, doc, _ = report(tmp_path, capsys, str(good), str(tmp_path / "bad"))
    broken = [k for k in doc["kernels"] if k["kernel"] != "debian:trixie"]
    assert len(broken) == 1 and broken[0]["verdict"] == "infra" and says in broken[0]["reason"], broken
    assert code == 3 and by_kernel(doc)["debian:trixie"]["verdict"] == "pass"


def test_links_and_markup_from_another_machine_go_nowhere(tmp_path, capsys):
    d = machine(tmp_path / "m", ("debian:bookworm", PASS))
    cell = d / "debian-bookworm"
    doc = json.loads((cell / "result.json").read_text())
    doc["kernel"] = "<script>alert(1)</script>\x1b[31m"
    doc["evidence"] = {"javascript:alert(1)": "x", "../../etc/passwd": "y", "console.log": "the console"}
    doc["reason"] = "a\x00b"
    (cell / "result.json").write_text(json.dumps(doc))
    os.symlink("/etc/passwd", cell / "exec.log.link")
    (cell / "console.log").unlink()
    os.symlink("/etc/passwd", cell / "console.log")
    code, out, _ = report(tmp_path, capsys, str(d))
    page = (tmp_path / "out" / "index.html").read_text()
    assert "<script>alert" not in page and "javascript:" not in page and "etc/passwd" not in page
    copied = next(p for p in (tmp_path / "out").iterdir() if p.is_dir())
    assert not any(p.is_symlink() for p in copied.rglob("*"))
    assert not (copied / "console.log").exists() and not (copied / "exec.log.link").exists()
    assert "\x00" not in (tmp_path / "out" / "junit.xml").read_text()


def test_a_symlinked_result_is_not_followed(tmp_path, capsys):
    d = machine(tmp_path / "m", ("debian:trixie", PASS))
    (tmp_path / "m" / "debian-sid").mkdir()
    os.symlink(PASS / "result.json", tmp_path / "m" / "debian-sid" / "result.json")
    code, doc, _ = report(tmp_path, capsys, str(d))
    sid = [k for k in doc["kernels"] if "debian-sid" in k["kernel"]]
    assert sid and sid[0]["verdict"] == "infra" and "not a regular file" in sid[0]["reason"]


def test_the_report_does_not_read_its_own_output(tmp_path, capsys):
    d = machine(tmp_path / "m", ("debian:bookworm", PASS))
    for _ in range(2):
        code = cli.main(["report", str(d), "--results", str(d / "report"), "--project", str(tmp_path)])
        doc = json.loads((d / "report" / "matrix.json").read_text())
        assert code == 0 and len(doc["kernels"][0]["attempts"]) == 1


@pytest.mark.parametrize("args, says", [
    (["{tmp}/nowhere"], "no such directory"),
    (["{tmp}/empty"], "holds no results"),
    (["{tmp}/notes.txt"], "give a results directory"),
    (["{tmp}/m", "--baseline", "{tmp}/notes.txt"], "--baseline"),
    (["{tmp}/m", "--baseline", "{tmp}/empty"], "--baseline"),
    (["{tmp}/m", "--history", "{tmp}/full"], "not a kmod-harness history"),
    (["{tmp}/m", "--date", "yesterday"], "ISO 8601"),
    (["{tmp}/m", "--results", "{tmp}/notes.txt"], "cannot write results"),
])
def test_bad_usage_is_exit_2_and_writes_nothing(tmp_path, capsys, args, says):
    machine(tmp_path / "m", ("debian:bookworm", PASS))
    (tmp_path / "empty").mkdir()
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "precious.txt").write_text("mine")
    (tmp_path / "notes.txt").write_text("notes")
    argv = ["report", *(a.format(tmp=tmp_path) for a in args)]
    if "--results" not in args:
        argv += ["--results", str(tmp_path / "out")]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert says in err and "Traceback" not in err
    assert not (tmp_path / "out").exists()
    assert [p.name for p in (tmp_path / "full").iterdir()] == ["precious.txt"]


def test_a_report_written_over_one_of_its_inputs_loses_no_evidence(tmp_path, capsys):
    """results/ passed as an input and as the output, with another machine whose attempt stands for the cell."""
    mine = machine(tmp_path / "results", ("debian:bookworm", PASS))
    other = machine(tmp_path / "m2", ("debian:bookworm", CRASH))
    code = cli.main(["report", str(mine), str(other), "--results", str(mine), "--project", str(tmp_path)])
    cell = mine / "debian-bookworm"
    assert code == 4 and (cell / "console.log").read_bytes() == (CRASH / "console.log").read_bytes()
    assert (cell / "sources" / "results" / "console.log").read_bytes() == (PASS / "console.log").read_bytes()
    doc = json.loads((mine / "matrix.json").read_text())
    assert [(a["source"], a.get("dir")) for a in doc["kernels"][0]["attempts"]] == [
        ("results", "sources/results"), ("m2", None)]

import dataclasses
import io
import json
import signal
import sys
import threading
import time
import xml.etree.ElementTree as ET

import pytest

from harness import matrix, procs, resources
from harness.errors import Interrupted, UsageError
from harness.events import Finished, PhaseStarted, Printer
from harness.model import Phase, RunResult, Verdict
from harness.phases import RunRequest
from harness.verdict import compare, junit, report

from conftest import REPO

ENTRIES = matrix.load_matrix()  # the packaged vm/kernels.toml


def test_default_matrix_is_the_five_debian_kernels_two_for_arm64_and_one_for_riscv64():
    assert [e.spec for e in ENTRIES] == ["debian:bullseye", "debian:bookworm", "debian:trixie", "debian:sid",
                                         "debian:experimental", "debian:bookworm:arm64", "debian:trixie:arm64",
                                         "debian:trixie:riscv64"]
    sid = next(e for e in ENTRIES if e.spec == "debian:sid")
    assert sid.apt_options == ("Acquire::Check-Valid-Until=false",)


def test_default_matrix_is_the_packaged_kernels_toml():
    assert ENTRIES == matrix.load_matrix(resources.data("kernels.toml")) == matrix.load_matrix(
        REPO / "vm" / "kernels.toml")


@pytest.mark.parametrize("n", [1, 2, 3, 5, 7])
def test_shards_cover_every_kernel_exactly_once(n):
    got = [e.spec for i in range(1, n + 1) for e in matrix.shard(ENTRIES, i, n)]
    assert sorted(got) == sorted(e.spec for e in ENTRIES)


@pytest.mark.parametrize("text", ["0/3", "4/3", "a/b", "3", "1/0"])
def test_bad_shard_is_a_usage_error(text):
    with pytest.raises(UsageError, match="--shard"):
        matrix.parse_shard(text)


def test_select_keeps_per_kernel_options_and_accepts_other_specs():
    sel = matrix.select(ENTRIES, ["debian:sid", "debian:bookworm@6.1.0-56"])
    assert sel[0].apt_options == ("Acquire::Check-Valid-Until=false",)
    assert sel[1] == matrix.MatrixEntry("debian:bookworm@6.1.0-56")
    with pytest.raises(UsageError, match="unknown Debian suite"):
        matrix.select(ENTRIES, ["debian:nope"])


@pytest.mark.parametrize("cpus, mem, want", [(2, 24000, 2), (16, 24000, 15), (16, 4000, 2), (1, 100, 1), (8, 0, 1)])
def test_default_jobs_from_cores_and_memory(cpus, mem, want):
    assert matrix.default_jobs(cpus=cpus, mem_available_mb=mem) == want


def test_matrix_file_errors_name_the_file(tmp_path):
    p = tmp_path / "k.toml"
    p.write_text("[[kernel]]\nspec = 'debian:bookwurm'\n")
    with pytest.raises(UsageError, match="bookwurm"):
        matrix.load_matrix(p)
    p.write_text("")
    with pytest.raises(UsageError, match="k.toml: kernel: required, and missing"):
        matrix.load_matrix(p)
    for text, words in (("[kernel]\nspec = 'debian:sid'\n", r"k.toml:1: kernel: must be an array"),
                        ("[[kernel]]\nspec = 'debian:sid'\napt_options = 5\n", r"k.toml:3: kernel\[1\].apt_options: "
                         r"must be an array"),
                        ("[[kernel]]\nspec = 'debian:sid'\napt_options = 'A::B=1'\n", "must be an array"),
                        ("[[kernel]]\nspec = 1\n", r"kernel\[1\].spec: must be a string"),
                        ("kernel = [1, 2]\n", r"kernel\[1\]: must be a table"),
                        ("[[kernel]]\nspec = 'debian:sid'\napt_options = ['Acquire::AllowInsecureRepositories=1']\n",
                         "refused: it lets apt use repositories without a valid signature"),
                        ("[[kernel]]\nspec = 'debian:sid'\napt_options = ['nokey']\n", "give KEY=VALUE"),
                        ("[[kernel]]\nspec = 'debian:sid'\n[[kernel]]\nspec = 'debian:sid'\n",
                         r"k.toml:3: kernel\[2\]: kernel 'debian:sid' is listed twice"),
                        ("[[kernels]]\nspec = 'debian:sid'\n", "kernels: unknown table; did you mean 'kernel'")):
        p.write_text(text)
        with pytest.raises(UsageError, match=words):
            matrix.load_matrix(p)


def result(kernel, verdict, warnings=0, seconds=42.0):
    return RunResult(kernel=kernel, verdict=verdict, reason=f"{verdict.value} because\nsecond line",
                     harness_version="0.1.0", started_at="2025-01-01T00:00:00+00:00", seconds=seconds,
                     kernel_release="6.1.0-56-amd64", package_version="6.1.192-2",
                     phases=(Phase("resolve", 1.0), Phase("root", 0.5), Phase("build", 1.2), Phase("vm", 20.0)),
                     build_warnings=("w",) * warnings)


def rows(*rs):
    return compare.compare([compare.Outcome.of(r) for r in rs])


def test_worst_verdict_decides_the_exit_code():
    assert matrix.matrix_exit_code(rows(result("a", Verdict.PASS), result("b", Verdict.FAIL),
                                        result("c", Verdict.CRASH))) == 4
    assert matrix.matrix_exit_code(rows(result("a", Verdict.PASS))) == 0
    assert matrix.matrix_exit_code(rows(result("a", Verdict.FAIL), result("b", Verdict.TIMEOUT))) == 5
    assert matrix.matrix_exit_code([]) == 2  # nothing ran


def test_summary_markdown_has_a_row_per_kernel_and_details_for_failures():
    md = report.summary_markdown([result("debian:bookworm", Verdict.PASS, 2), result("debian:sid", Verdict.CRASH)],
                                 55.0)
    lines = md.splitlines()
    rows = [ln for ln in lines if ln.startswith("| `")]
    assert len(rows) == 2
    assert rows[0].split(" | ")[1:4] == ["6.1.192-2 (6.1.0-56-amd64)", "pass", "2"]
    assert "**crash**" in rows[1]
    assert "<details><summary>debian:sid: crash</summary>" in md
    assert "Wall time 55 s for 2 kernels." in md
    header = next(ln for ln in lines if ln.startswith("| kernel"))
    sep = lines[lines.index(header) + 1]
    assert header.count("|") == sep.count("|") == rows[0].count("|")


def test_matrix_json_and_junit_have_one_entry_per_kernel():
    rs = [result("debian:bookworm", Verdict.PASS), result("debian:sid", Verdict.FAIL)]
    data = json.loads(report.matrix_json(rs, 10.0))
    assert data["verdict"] == "fail" and [k["kernel"] for k in data["kernels"]] == ["debian:bookworm", "debian:sid"]
    assert data["kernels"][1]["reason"] == "fail because"
    suites = ET.fromstring(junit.junit_xml(rs)).findall("testsuite")
    assert [s.get("name") for s in suites] == ["debian:bookworm", "debian:sid"]
    assert [s.get("failures") for s in suites] == ["0", "1"]


def test_write_reports_writes_the_three_files(tmp_path):
    matrix.write_reports([result("debian:bookworm", Verdict.PASS)], [], tmp_path, 10.0)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["index.html", "junit.xml", "matrix.json", "summary.md"]


def test_a_repeated_matrix_shows_each_kernels_attempts(tmp_path):
    attempts = ({"n": 1, "verdict": "pass", "dir": "attempts/1"}, {"n": 2, "verdict": "crash", "dir": "attempts/2"})
    flaky = dataclasses.replace(result("debian:bookworm", Verdict.CRASH), attempts=attempts, classification="flaky")
    rs = [flaky, result("debian:trixie", Verdict.PASS)]
    matrix.write_reports(rs, compare.compare([compare.Outcome.of(r) for r in rs]), tmp_path, 10.0)
    page = (tmp_path / "index.html").read_text()
    assert "flaky: 1 of 2 attempts failed (crash)" in page and 'href="debian-bookworm/attempts/2/result.json"' in page
    assert "**flaky** (crash in 1 of 2 attempts)" in (tmp_path / "summary.md").read_text()
    doc = json.loads((tmp_path / "matrix.json").read_text())
    assert doc["kernels"][0]["classification"] == "flaky" and doc["compared"][0]["status"] == "flaky"
    assert 'message="flaky, crash: crash because"' in (tmp_path / "junit.xml").read_text()


def row(table: matrix.LiveTable, spec: str) -> list[str]:
    return next(ln.split() for ln in table.render().splitlines() if ln.split()[:1] == [spec])


def test_live_table_follows_each_runs_events():
    table = matrix.LiveTable(Printer(io.StringIO()), ["debian:bookworm", "debian:sid"])
    assert row(table, "debian:bookworm")[1] == row(table, "debian:sid")[1] == "queued"
    table.tracker("debian:sid")(PhaseStarted("build", "blog.ko with gcc-12"))
    assert row(table, "debian:sid")[1] == "build" and row(table, "debian:bookworm")[1] == "queued"
    table.tracker("debian:sid")(Finished(Verdict.CRASH, "BUG"))
    assert row(table, "debian:sid")[1] == "crash"
    table.done["debian:bookworm"] = result("debian:bookworm", Verdict.PASS, seconds=42.0)
    assert row(table, "debian:bookworm")[1:] == ["pass", "42s"]


def test_run_matrix_runs_every_kernel_with_its_own_options(tmp_path, monkeypatch):
    seen = {}

    def fake_run(req, sink):
        seen[req.kernel] = req
        sink(PhaseStarted("vm"))
        return result(req.kernel, Verdict.FAIL if req.kernel == "debian:sid" else Verdict.PASS)

    monkeypatch.setattr(matrix, "run", fake_run)
    out = io.StringIO()
    base = RunRequest(results=tmp_path, apt_options=("A=b",))
    rs = matrix.run_matrix(matrix.select(ENTRIES, ["debian:bookworm", "debian:sid"]), base, 2, Printer(out))
    assert [(r.kernel, r.verdict) for r in rs] == [("debian:bookworm", Verdict.PASS), ("debian:sid", Verdict.FAIL)]
    assert seen["debian:sid"].apt_options == ("A=b", "Acquire::Check-Valid-Until=false")
    assert seen["debian:bookworm"].apt_options == ("A=b",) and seen["debian:bookworm"].results == tmp_path
    assert "    debian:sid: fail in 42s" in out.getvalue().splitlines()


def test_an_interrupted_matrix_does_not_make_later_runs_refuse(tmp_path, monkeypatch):
    entries = matrix.select(ENTRIES, ["debian:bookworm", "debian:sid", "debian:trixie"])
    started = threading.Barrier(len(entries) + 1, timeout=30)

    def interrupted_run(req, sink):
        """A run that waits, as a booting guest does, until the matrix is interrupted."""
        started.wait()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                procs.check_interrupted()
            except Interrupted:
                return result(req.kernel, Verdict.INTERRUPTED)
            time.sleep(0.01)
        return result(req.kernel, Verdict.TIMEOUT)  # never interrupted: the test fails below

    def ctrl_c():
        started.wait()  # every run has started: the pool is waiting for their results
        time.sleep(0.2)
        main = threading.main_thread().ident
        assert main is not None  # None only for a thread not started yet
        signal.pthread_kill(main, signal.SIGINT)

    monkeypatch.setattr(matrix, "run", interrupted_run)
    threading.Thread(target=ctrl_c, daemon=True).start()
    rs = matrix.run_matrix(entries, RunRequest(results=tmp_path), len(entries), Printer(io.StringIO()))
    assert [r.verdict for r in rs] == [Verdict.INTERRUPTED] * len(entries)

    procs.check_interrupted()  # the flag is cleared: neither this nor a process start raises
    assert procs.quick([sys.executable, "-c", ""], timeout=30).returncode == 0

    def later_run(req, sink):
        procs.check_interrupted()
        return result(req.kernel, Verdict.PASS)

    monkeypatch.setattr(matrix, "run", later_run)
    rs = matrix.run_matrix(entries[:1], RunRequest(results=tmp_path), 1, Printer(io.StringIO()))
    assert [r.verdict for r in rs] == [Verdict.PASS]

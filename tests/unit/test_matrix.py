import json
import xml.etree.ElementTree as ET

import pytest

from harness import matrix, report
from harness.errors import UsageError
from harness.model import Phase, RunResult, Verdict

from conftest import REPO

ENTRIES = matrix.load_matrix(REPO / "vm" / "kernels.toml")


def test_default_matrix_is_the_five_debian_kernels():
    assert [e.spec for e in ENTRIES] == ["debian:bullseye", "debian:bookworm", "debian:trixie", "debian:sid",
                                         "debian:experimental"]
    sid = next(e for e in ENTRIES if e.spec == "debian:sid")
    assert sid.apt_options == ("Acquire::Check-Valid-Until=false",)


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
    with pytest.raises(UsageError, match="no \\[\\[kernel\\]\\] entries"):
        matrix.load_matrix(p)


def result(kernel, verdict, warnings=0):
    r = RunResult(kernel=kernel, verdict=verdict, reason=f"{verdict.value} because\nsecond line",
                  kernel_release="6.1.0-56-amd64", package_version="6.1.192-2", seconds=42.0)
    r.phases = [Phase("resolve", 1.0), Phase("root", 0.5), Phase("build", 1.2), Phase("vm", 20.0)]
    r.build_warnings = ["w"] * warnings
    return r


def test_worst_verdict_decides_the_exit_code():
    rs = [result("a", Verdict.PASS), result("b", Verdict.FAIL), result("c", Verdict.CRASH)]
    assert matrix.matrix_exit_code(rs) == 4
    assert matrix.matrix_exit_code([result("a", Verdict.PASS)]) == 0
    assert matrix.matrix_exit_code([result("a", Verdict.FAIL), result("b", Verdict.TIMEOUT)]) == 5


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
    suites = ET.fromstring(report.junit_xml(rs)).findall("testsuite")
    assert [s.get("name") for s in suites] == ["debian:bookworm", "debian:sid"]
    assert [s.get("failures") for s in suites] == ["0", "1"]

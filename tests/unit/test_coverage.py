"""Coverage: the counters put back beside their notes, and gcovr's figures read."""

from pathlib import Path

from harness import coverage
from harness.plan import GCOV_DIR


def test_the_gcov_of_a_compiler():
    assert coverage.gcov_tool("gcc") == "gcov"
    assert coverage.gcov_tool("gcc-12") == "gcov-12"
    assert coverage.gcov_tool("x86_64-linux-gnu-gcc-14") == "x86_64-linux-gnu-gcov-14"
    assert coverage.gcov_tool("clang") == "gcov"


def test_counters_go_back_to_their_objects_in_this_runs_build_only(tmp_path: Path):
    run = tmp_path / "run"
    build = run / "build"
    (build / "sub").mkdir(parents=True)
    copied = run / GCOV_DIR
    mine = copied / str(build).lstrip("/") / "m.gcda"
    deeper = copied / str(build).lstrip("/") / "sub" / "n.gcda"
    other = copied / "tmp" / "elsewhere" / "x.gcda"  # an object built somewhere else: not the project's
    for f in (mine, deeper, other):
        f.parent.mkdir(parents=True)
        f.write_bytes(b"gcda")
    placed = coverage.place_counters(copied, build)
    assert placed == [build / "m.gcda", build / "sub" / "n.gcda"]
    assert (build / "m.gcda").read_bytes() == b"gcda" and not Path("/tmp/elsewhere/x.gcda").exists()


def test_no_counters_is_said_not_hidden(tmp_path: Path):
    got = coverage.report(tmp_path, tmp_path / "build", tmp_path / "out", "gcc")
    assert "no gcov counters" in got["error"]


def test_figures_from_a_gcovr_summary():
    got = coverage.figures({"line_total": 40, "line_covered": 30, "branch_total": 0, "branch_covered": 0,
                            "files": [{"filename": "m.c", "line_total": 40, "line_covered": 30}]})
    assert got["lines"] == {"covered": 30, "total": 40, "percent": 75.0}
    assert got["branches"]["percent"] is None and got["files"][0]["file"] == "m.c"


def test_objects_of_modules_never_loaded_are_not_reported(tmp_path: Path):
    (tmp_path / "sub").mkdir()
    for name in ("m.gcno", "m.gcda", "m_test.gcno", "sub/n.gcno", "sub/n.gcda"):
        (tmp_path / name).write_bytes(b"")
    assert coverage.unloaded(tmp_path) == [tmp_path / "m_test.gcno"]
    assert sorted(p.name for p in tmp_path.rglob("*.gcno")) == ["m.gcno", "n.gcno"]

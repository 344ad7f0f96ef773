"""A fuzz run's evidence, read back: the instrumented .ko's kcov call sites and lines, the
confirmation run that says which case crashed, fuzz.json and index.html.

tests/data/fuzz_blog is a real `harness fuzz` of the blog's module on debian-src:trixie+debug
(see tests/data/README.md)."""

import json
import shutil
from pathlib import Path
from typing import cast

from harness.fuzz import confirm, elfko, html, lines, report
from harness.fuzz.prepare import FuzzPrep
from harness.project import load_project
from harness.resultjson import load as result_from_json
from harness.symbolize import Binutils

from conftest import DATA, REPO

BLOG = DATA / "fuzz_blog"
KO = BLOG / "modules" / "blog_unsafe.ko"


def test_the_kcov_call_sites_of_an_instrumented_module():
    info = elfko.read_ko(KO)
    assert info.instrumented and info.blocks == 17  # what harness fuzz printed for this .ko
    assert set(info.exec_sections) >= {".text", ".init.text", ".exit.text"}
    assert all(0 < s <= info.exec_sections[sec] for sec, sites in info.callsites.items() for s in sites)


def test_a_module_built_without_kcov_has_no_call_sites():
    info = elfko.read_ko(DATA / "blog_unsafe" / "modules" / "blog_unsafe.ko")
    assert not info.instrumented and info.blocks == 0


def test_every_call_site_resolves_to_a_line_of_the_module_or_a_kernel_header():
    info = elfko.read_ko(KO)
    lm = lines.line_map(Binutils(None, KO.parent), KO.name, info, {"blog_unsafe.c"})
    assert len(lm.lines) == info.blocks
    assert lm.own == frozenset({"blog_unsafe.c"})
    files = {f for f, _ in lm.lines.values()}
    assert files == {"blog_unsafe.c", "include/linux/skbuff.h", "include/net/netlink.h"}
    # Blocks start where the source says they do: the function's first statement, the error branch.
    src = (REPO / "tests/fixtures/netlink/blog_unsafe_module/blog_unsafe.c").read_text().splitlines()
    assert lm.lines[(".text", 32)] == ("blog_unsafe.c", 36) and "Entering" in src[36 - 1]
    assert ("blog_unsafe.c", 62) in lm.total() and "Error while sending back" in src[62 - 1]
    reached = [(".text", 32), (".text", 538), (".text", 194)]
    fig = lines.figures(lm, reached)
    assert (fig["covered"], fig["headers"]["covered"]) == (2, 1)
    assert fig["total"] == len({ln for ln in lm.total() if ln[0] == "blog_unsafe.c"})
    over = lines.over_time(lm, {(".text", 32): 1.0, (".text", 538): 5.0},
                           [{"t": 0.5, "execs": 1, "pcs": 0}, {"t": 2, "execs": 3, "pcs": 1},
                            {"t": 9, "execs": 9, "pcs": 2}])
    assert [p["lines"] for p in over] == [0, 1, 2]


def test_relative_paths_of_the_modules_files_and_of_headers():
    own = {"a.c", "sub/b.h"}
    assert lines.relative("/tmp/fz-1/build/sub/b.h", own) == "sub/b.h"
    assert lines.relative("/root/k/linux/./include/linux/skbuff.h", own) == "include/linux/skbuff.h"


def test_the_confirmation_run_says_which_case_crashed_the_kernel():
    res = result_from_json(json.loads((BLOG / "confirm-result.json").read_text()))
    crash = confirm.crash_of(res, ["case-1"], ["blog_unsafe"], BLOG)
    assert crash is not None and crash.index == 0 and crash.rule == "kasan"
    assert crash.function is None  # this kernel's report of the overflow is in a timer interrupt
    assert confirm.crash_of(res, ["case-0", "other"], ["blog_unsafe"], BLOG) is None


def test_crashes_are_the_same_bug_when_the_module_frames_agree_or_are_unknown():
    def c(fn):
        return confirm.Crash(0, "bug", "x", fn, {}, Path("."))

    assert c("f").same(c("f")) and c(None).same(c("f")) and not c("f").same(c("g"))


def test_the_throwaway_project_of_a_confirmation_is_a_valid_project_beside_the_description(tmp_path):
    shutil.copytree(REPO / "tests/fixtures/netlink", tmp_path / "netlink")

    class Prep:  # what throwaway_project reads of a FuzzPrep
        project = load_project(tmp_path / "netlink" / "blog_fuzz.toml")
        targets = [{"kind": "netlink", "protocol": 30, "key": "netlink:30"}]

        class root:
            @staticmethod
            def has(option):
                return False  # a kernel without DEBUG_INFO: the module gets -g

    case = [{"t": 0, "op": "send", "cmd": 0, "data": b"\0" * 16}]
    with confirm.throwaway_project(cast(FuzzPrep, Prep()), [case, case], "test") as (toml, names):
        p = load_project(toml)
        d = toml.with_suffix("").name
        assert toml.parent == Prep.project.root and names == ["case-1", "case-2"]
        assert [m.name for m in p.modules] == ["blog_unsafe"] and p.source == Prep.project.source
        assert [s.argv for s in p.steps] == [("python3", f"/project/{d}/{n}.py") for n in names]
        assert (toml.parent / d / "case-2.py").is_file() and p.build.args == ("KCFLAGS=-g",)
    assert sorted(x.name for x in (tmp_path / "netlink").iterdir()) == sorted(
        x.name for x in (REPO / "tests/fixtures/netlink").iterdir())  # nothing left behind


def test_fuzz_json_and_the_page_say_the_same():
    d = json.loads((BLOG / "fuzz.json").read_text())
    assert d["schema"] == report.SCHEMA and d["verdict"] == "crash" and d["exit_code"] == 4
    (f,) = d["findings"]
    page = html.page(d, "fuzz-debian-src-trixie+debug")
    for text in (f["name"], f["consequence"], f["repro"], "netlink:30", "<svg"):
        assert text in page
    assert page.count("<h3") == 1
    lines_ = report.finding_lines(confirm.Finding(**{k: v for k, v in f.items()
                                                     if k in confirm.Finding.__dataclass_fields__}))
    assert lines_[0] == f"  finding {f['name']}:" and any("add it as a step" in ln for ln in lines_)


def test_where_a_reused_build_names_another_runs_directory_the_line_comes_from_the_project():
    """The confirmation's .ko came from the build cache (built in another run's directory): the run
    found no source excerpt, the finding still names fuzz_targets.c:60 and shows its lines."""
    res = json.loads((DATA / "fuzz_magic" / "confirm-result.json").read_text())
    (sp,) = res["splats"]
    assert sp.get("source") is None and "/tmp/kmod-harness-run-" in sp["trace"][2]["file"]

    class Prep:
        project = load_project(REPO / "tests/fixtures/fuzz_targets/harness.toml")

    prep = cast(FuzzPrep, Prep())
    src = confirm.source_of(prep, sp)
    assert src is not None and (src["file"], src["line"], src["first"]) == ("fuzz_targets.c", 60, 57)
    assert "table[p[4]]++" in src["lines"][60 - 57]
    assert confirm.source_of(prep, dict(sp, trace=[f for f in sp["trace"] if f["module"] is None])) is None


"""Call traces read from recorded splats, and the module's frames resolved to file:line with the .ko
that was loaded in that run (kept beside the recording: tests/data/<run>/modules/)."""

import shutil

import pytest

from harness import symbolize
from harness.verdict import kmsg, trace

from conftest import DATA, REPO, guest_report

SOURCE = REPO / "tests" / "fixtures" / "splatter" / "module"
NULL = "BUG: kernel NULL pointer dereference, address: 0000000000000000"


def records(name):
    return list(kmsg.parse_records(guest_report(name).kmsg))


def host_tools(name) -> symbolize.Binutils:
    if shutil.which("addr2line") is None:
        pytest.fail("binutils is not installed on the host: `make setup` installs it (with gcc)")
    return symbolize.Binutils(None, DATA / name / "modules")


def test_the_trace_of_a_streamed_report_rip_first():
    frames = trace.of_splat(records("inlined_bookworm"), 467)  # the record the runner streamed before the Oops
    assert frames[0].where == "rip" and frames[0].function == "splat_inlined" and frames[0].module == "splatter"
    assert (frames[0].offset, frames[0].size) == (0x10, 0x20)
    stack = [f.function for f in frames if f.where == "stack"]
    assert stack[:2] == ["splatter_init", "do_one_initcall"]
    assert all(f.module is None for f in frames[2:])


def test_the_trace_of_a_report_seen_only_on_the_console():
    console = (DATA / "inlined_trixie" / "console.log").read_text()
    frames = trace.of_console(console.splitlines(), NULL)
    assert frames[0].where == "rip" and frames[0].function == "splat_inlined" and frames[0].seq == -1
    assert [f.reliable for f in frames if f.function == "__pfx_splatter_init"] == [False]  # printed with "?"


@pytest.mark.parametrize("name, rip", [("inlined_bookworm", 0x10), ("inlined_trixie", 0x14)])
def test_an_oops_in_an_inlined_helper_names_the_helpers_line_and_the_chain(name, rip):
    """Two kernels, two compilers (gcc-12, gcc-14): the faulting line is the always-inline helper's."""
    console = (DATA / name / "console.log").read_text()
    frames = trace.of_splat(records(name), 467) if name == "inlined_bookworm" else \
        trace.of_console(console.splitlines(), NULL)
    mine = trace.in_modules(symbolize.resolve(frames, {"splatter": "splatter.ko"}, host_tools(name)), ["splatter"])
    top = mine[0]
    assert (top.function, top.offset) == ("splat_inlined", rip)
    assert top.file == "/tmp/build/splatter.c" and top.line == 249
    assert [(f, ln) for f, _, ln in top.inlined] == [("splatter_count", 249), ("splat_inlined", 254)]
    src = symbolize.source_excerpt(top, SOURCE, ["/tmp/build"])
    assert src is not None
    assert src.file == "splatter.c" and src.lines[src.line - src.first].strip() == "(*item->count)++;"
    assert mine[1].function == "splatter_init" and mine[1].line == 289


def test_the_blogs_recursion_is_one_line_with_a_count():
    console = (DATA / "blog_unsafe" / "console.log").read_text()
    frames = trace.of_console(console.splitlines(), next(
        ln.split("] ", 1)[1] for ln in console.splitlines() if "stack guard page was hit" in ln))
    tools = symbolize.Binutils(None, DATA / "blog_unsafe" / "modules")
    mine = trace.in_modules(symbolize.resolve(frames, {"blog_unsafe": "blog_unsafe.ko"}, tools), ["blog_unsafe"])
    lines = trace.describe_all(mine)
    assert len(mine) > 50 and len(lines) <= 4
    assert any("blog_unsafe.c:61" in ln and "(x" in ln for ln in lines)  # the reply to pid 0, again and again


def test_frames_of_other_modules_and_the_kernel_are_left_as_they_came():
    frames = trace.of_splat(records("inlined_bookworm"), 467)
    resolved = symbolize.resolve(frames, {}, host_tools("inlined_bookworm"))
    assert resolved == frames


def test_a_frame_outside_the_projects_sources_has_no_excerpt():
    f = trace.Frame("x", 0, 1, "m", True, "rip", 1, file="/usr/src/linux/include/x.h", line=3)
    assert symbolize.source_excerpt(f, SOURCE, ["/tmp/build"]) is None


def test_system_map_text_symbols(tmp_path):
    (tmp_path / "System.map").write_text("ffffffff81000000 T _text\nffffffff81001000 t do_one_initcall\n"
                                         "ffffffff82000000 D some_data\n")
    assert symbolize.system_map(tmp_path / "System.map") == {"_text": 0xffffffff81000000,
                                                             "do_one_initcall": 0xffffffff81001000}

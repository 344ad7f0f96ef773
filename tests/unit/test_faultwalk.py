"""The fault walk's pure parts on walks recorded from real runs (tests/data/faults_*: see its README).

faults_faulty: tests/fixtures/faulty on debian-src:trixie+debug, two guests (the double free
tainted the first). faults_fixed: the same module built with -DFAULTY_FIXED, one guest.
"""

import json
import re
import types
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import cast

import pytest

from harness import faultfold, faultplan, symbolize
from harness.faultdecode import NO_STACK, Decoder
from harness.faultguests import WalkEnd
from harness.faultplan import PointRun, WalkPlan, WalkStep
from harness.phases import Prepared
from harness.project import load_project
from harness.verdict import complaints, faultfind, faulthtml, faultleak, faultpoint, kmsg
from harness.verdict.faultpoint import Consequence, FaultLog
from harness.verdict.trail import Allowance

from conftest import DATA, REPO, RULES, load_guest

FAULTY = REPO / "tests" / "fixtures" / "faulty"
SOURCE = DATA / "faults_faulty" / "module"  # the source the recorded .ko was built from


def guest_log(recording: str, guest: int) -> FaultLog:
    """A guest's channel as the host heard it: the run id is the one its hello carried."""
    lines = (DATA / recording / f"guest-{guest}.exec.log").read_text().splitlines()
    run_id = next(json.loads(x[x.index("{"):])["run"] for x in lines if '"event":"hello"' in x)
    log = FaultLog(run_id=run_id)
    for line in lines:
        log.feed_line(line)
    return log


def how(toml: Path = FAULTY / "harness.toml") -> faultpoint.Judging:
    """What the walk judges its points by, made from a Prepared's project and splat rules."""
    prep = types.SimpleNamespace(setup=types.SimpleNamespace(project=load_project(toml), rules=tuple(RULES)))
    return faultfold.judging(cast(Prepared, prep))  # judging reads its setup's project and rules alone


def walk_of(recording: str, guests: int, toml: Path = FAULTY / "harness.toml") -> faultfold.Walk:
    p = how(toml)
    w = faultfold.Walk(states=[faultfold.PhaseState("init"), faultfold.PhaseState("write")])
    for k in range(guests):
        log = guest_log(recording, k + 1)
        console = (DATA / recording / f"guest-{k + 1}.console.log").read_text()
        faultfold.fold(p, log, WalkEnd(0, "", console), w, k, None, 500)
    return w


def decoder() -> Decoder:
    return Decoder(symbolize.Binutils(None, DATA / "faults_faulty"), "faulty.ko", "faulty", SOURCE)


def line_of(marker: str) -> str:
    lines = (SOURCE / "faulty.c").read_text().splitlines()
    return f"faulty.c:{next(i for i, text in enumerate(lines, 1) if marker in text)}"


def outcome(w: faultfold.Walk, phase: str, n: int) -> faultpoint.PointOutcome:
    return next(o for o in w.outcomes if (o.phase, o.n) == (phase, n))


# ---- the channel ---------------------------------------------------------------------------


def test_the_channel_folds_into_points_counts_and_leak_checks():
    log = guest_log("faults_faulty", 1)
    assert log.version == 2 and log.done == ("the kernel is tainted by a report (taint 4128): its checks cannot be "
                                             "trusted on", False)
    # the count passes: what fail-nth read back, less what it was armed with
    assert log.results[("init", 0)].calls == 6 and log.results[("write", 0)].calls == 4
    assert [(p, n) for p, n, _ in log.started] == [("init", n) for n in range(8)] + [("write", n) for n in range(4)]
    assert log.unfinished is None
    # every point's leak check was done before the walk on this guest ended
    assert log.checked == {(p, n) for p, n, _ in log.started}
    # fail-nth read back 0 where the fault was injected, more where the pass made fewer calls
    assert [log.results[("init", n)].injected for n in range(1, 8)] == [True] * 6 + [False]
    armed = log.results[("init", 7)].armed
    assert armed is not None and armed.remaining == 1


def test_events_of_another_run_are_not_folded():
    log = FaultLog(run_id="someone-else")
    for line in (DATA / "faults_faulty" / "guest-1.exec.log").read_text().splitlines():
        log.feed_line(line)
    assert log.parsed() == [] and log.results == {} and log.version is None


def test_a_plan_reads_back_as_it_was_written_and_a_wrong_one_is_refused():
    plan = WalkPlan(run_id="r", module="m", ko="/harness/build/m.ko", params=("a=1",),
                    loaded=(WalkStep("s", ("sh", "-c", "true"), 30.0, 1, env=(("K", "v"),), cwd="/project"),),
                    phases=(("init", 3), ("s", 1)),
                    counted=("init",), redo=(("s", 2),), require=(1 << 63, (1 << 64) - 1), env=(("A", "b"),))
    assert WalkPlan.from_json(plan.to_json()) == plan
    with pytest.raises(faultplan.PlanError, match="version"):
        WalkPlan.from_json(json.dumps(dict(json.loads(plan.to_json()), version=99)))
    with pytest.raises(faultplan.PlanError, match="malformed"):
        WalkPlan.from_json(json.dumps({"version": faultplan.VERSION, "run_id": "r"}))


# ---- a point's outcome -----------------------------------------------------------------------


def test_the_injection_names_the_call_the_module_made_and_the_allocation_that_failed():
    log = guest_log("faults_faulty", 1)
    run = log.results[("init", 3)]
    inj = faultpoint.parse_injection(faultpoint.window(log.parsed(), run.seq_before, run.seq_after), "faulty")
    assert inj is not None and inj.attr == "failslab"
    site = inj.site
    assert site is not None and site.function == "faulty_init" and site.module == "faulty" and site.reliable
    assert inj.function == "kstrdup"  # not the "?" frames between it and the module's
    assert inj.allocator == "__kmalloc_node_track_caller_noprof"


def test_each_point_ends_as_the_fixture_says():
    w = walk_of("faults_faulty", 2)
    got = {(o.phase, o.n): [c.kind for c in o.consequences] or o.outcome for o in w.outcomes}
    assert got[("init", 0)] == faultpoint.COUNTED
    assert got[("init", 1)] == faultpoint.ERROR_RETURNED  # kzalloc failed: -ENOMEM, clean
    assert got[("init", 3)] == ["kmemleak"]  # kstrdup failed: the first object leaked
    assert got[("init", 7)] == faultpoint.NOT_INJECTED
    assert got[("write", 3)] == ["kasan"]  # kasprintf failed: the copy freed twice
    assert got[("write", 5)] == faultpoint.NOT_INJECTED
    # the calls the kernel logged no stack for (__GFP_NOWARN) were survived
    assert {got[k] for k in got if outcome(w, *k).injection is None and outcome(w, *k).injected} == {
        faultpoint.HANDLED}
    assert sum(1 for o in w.outcomes if o.consequences) == 2


def test_the_double_free_is_a_kasan_report_of_the_write_path():
    w = walk_of("faults_faulty", 2)
    kasan = outcome(w, "write", 3).consequences[0]
    assert kasan.text.startswith("BUG: KASAN: double-free in faulty_write+")
    # it tainted the kernel: the walk went on on a fresh guest, from the next point
    run = outcome(w, "write", 3).run
    assert run is not None and run.fresh.startswith("the kernel is tainted")
    assert [o.guest for o in w.outcomes if o.phase == "write" and o.n >= 4] == [1, 1]
    assert all(s.complete for s in w.states) and w.redo == []


def test_a_leak_goes_to_the_point_whose_process_allocated_it():
    log = guest_log("faults_faulty", 1)
    runs = list(log.results.values())
    leaks, stray = faultleak.attribute_leaks(log.parsed(), runs, RULES, "faulty")
    assert list(leaks) == [("init", 3)] and stray == []
    (c, records), = leaks[("init", 3)]
    assert c.seq is not None
    leak = faultleak.parse_leak(records, c.seq)
    armed = log.results[("init", 3)].armed
    assert leak is not None and armed is not None
    assert leak.comm == "insmod" and leak.pid == armed.pid
    # the module was gone when kmemleak printed: its frame is a bare address, in that load's .init.text
    assert len(leak.raw) == 1 and faultleak._in_load(leak.raw[0], log.results[("init", 3)])


def test_a_leak_of_no_point_is_set_apart():
    log = guest_log("faults_faulty", 1)
    others = [r for r in log.results.values() if (r.phase, r.n) != ("init", 3)]
    leaks, stray = faultleak.attribute_leaks(log.parsed(), others, RULES, "faulty")
    # without its point, the report still has the module's code in it: the last load before it holds it
    assert sum(len(v) for v in leaks.values()) + len(stray) == 1


def test_a_guest_that_died_in_a_point_is_that_points_finding_and_its_unchecked_points_are_walked_again():
    """The recorded channel cut where write point 3 started: as if the guest died then."""
    lines = (DATA / "faults_faulty" / "guest-1.exec.log").read_text().splitlines()
    cut = next(i for i, x in enumerate(lines) if '"event":"fault-point"' in x and '"phase":"write","n":3' in x)
    scans = [i for i, x in enumerate(lines[:cut]) if '"event":"fault-scan"' in x]
    log = FaultLog(run_id=guest_log("faults_faulty", 1).run_id)
    for line in lines[:cut + 1]:
        log.feed_line(line)
    assert log.unfinished is not None and log.unfinished[:2] == ("write", 3)
    w = faultfold.Walk(states=[faultfold.PhaseState("init"), faultfold.PhaseState("write")])
    console = (DATA / "faults_faulty" / "guest-1.console.log").read_text()
    judged, fresh = faultfold.fold(how(), log, WalkEnd(255, "the guest's VM ended", console), w, 0, None, 500)
    assert judged == 12 and fresh
    dead = outcome(w, "write", 3)
    # its records never came, but the console has the report, after the point's mark
    assert dead.run is None and [(c.kind, c.seq) for c in dead.consequences] == [("kasan", None)]
    assert dead.consequences[0].text.startswith("BUG: KASAN: double-free in faulty_write")
    # without a console that says how, the point is one where the guest died
    bare = faultfold.judge(how(), log, "write", 3, WalkEnd(255, "the guest's VM ended", ""), 0)
    assert [c.kind for c in bare.consequences] == ["died"] and "the guest's VM ended" in bare.consequences[0].text
    unchecked = {(p, n) for p, n, _ in log.started if n > 0 and (p, n) not in log.checked} - {("write", 3)}
    assert scans and set(w.redo) == unchecked
    assert w.states[1].next_n == 4 and not w.states[1].complete


def test_a_guest_killed_by_its_point_names_the_call_site_from_its_console():
    """faults_oops: write point 3 failed kasprintf, and the module dereferenced the NULL it got; the
    guest died (oops=panic) before its runner streamed the injection's dump, which only the console
    has. One finding: the Oops, with KASAN's line inside its report, at the call site of kasprintf."""
    w = faultfold.Walk(states=[faultfold.PhaseState("write")])
    log = guest_log("faults_oops", 1)
    assert log.unfinished is not None and log.unfinished[:2] == ("write", 3)
    console = (DATA / "faults_oops" / "guest-1.console.log").read_text()
    faultfold.fold(how(FAULTY / "oops.toml"), log, WalkEnd(255, "the guest stopped", console), w, 0, None, 500)
    dead = outcome(w, "write", 3)
    assert dead.run is None and [c.kind for c in dead.consequences] == ["oops"], dead.consequences
    inj = dead.injection
    assert inj is not None and inj.site is not None and inj.site.function == "faulty_write"
    assert (inj.function, inj.allocator, inj.attr) == ("kasprintf", "__kmalloc_node_track_caller_noprof", "failslab")
    data = DATA / "faults_oops"
    dec = Decoder(symbolize.Binutils(None, data), "faulty.ko", "faulty", data / "module")
    source = (data / "module" / "faulty.c").read_text().splitlines()
    line = next(i + 1 for i, x in enumerate(source) if "/* fault site: write double free */" in x)
    assert dec.point(dead).where == f"faulty.c:{line}"
    # the injection the guest did stream (point 1) is read from its records as before
    assert outcome(w, "write", 1).injection is not None


def test_a_process_past_its_limit_is_a_hang_and_a_module_that_stays_is_an_unload_finding():
    run = PointRun.from_dict(dict(guest_log("faults_fixed", 1).results[("write", 3)].to_dict(), loaded_after=True))
    procs = [dict(p, timed_out=True, returncode=None) if p["what"] == "write" else p
             for p in run.to_dict()["procs"]]
    hung = PointRun.from_dict(dict(run.to_dict(), procs=procs))
    o = faultpoint.judge_point("write", 3, hung, [], faultpoint.Judging(tuple(RULES), "faulty"))
    assert [c.kind for c in o.consequences] == ["hang", "unload"]
    assert o.consequences[0].text == "write did not end within its limit (60s)"


# ---- findings and reports --------------------------------------------------------------------


def test_the_two_bugs_are_two_findings_at_the_lines_of_their_calls():
    w = walk_of("faults_faulty", 2)
    dec = decoder()
    decoded = {(o.phase, o.n): dec.point(o) for o in w.outcomes if o.injected or o.consequences}
    found = faultfind.findings(w.outcomes, decoded, lambda p, n: f"again {p} {n}")
    assert [(f.site, f.consequence.kind, f.step, f.n, f.function) for f in found] == [
        (line_of("/* fault site: init leak */"), "kmemleak", "init", 3, "kstrdup"),
        (line_of("/* fault site: write double free */"), "kasan", "write", 3, "kasprintf")]
    leak, double = found
    # the leaked object's allocation, decoded from a bare address: kzalloc, inlined into faulty_init
    assert "faulty_init" in leak.trace["module_frames"][0] and leak.trace["source"]["line"] == 69
    assert double.trace["source"]["line"] == 57  # the second kfree(copy)
    assert decoded[("init", 2)].frame == NO_STACK and decoded[("init", 2)].site is None
    assert leak.reproduce == "again init 3"


def test_the_same_consequence_at_the_same_site_is_one_finding():
    w = walk_of("faults_faulty", 2)
    d = faultfind.Decoded(site="x.c:1")
    again = [faultpoint.PointOutcome(o.phase, o.n + 100, o.outcome, o.run, o.injection, o.consequences, o.records)
             for o in w.outcomes if o.consequences]
    found = faultfind.findings(list(w.outcomes) + again, {(o.phase, o.n): d for o in w.outcomes + again},
                               lambda p, n: "")
    assert len(found) == 2 and [f.also for f in found] == [[("init", 103)], [("write", 103)]]


def test_normalize_keeps_what_a_consequence_is_not_where():
    assert faultfind.normalize("BUG: KASAN: double-free in faulty_write+0x5d/0x190 [faulty]") == \
        "BUG: KASAN: double-free in faulty_write [faulty]"
    assert faultfind.normalize("kmemleak: unreferenced object 0xffff8880026e0880 (size 16):") == \
        "kmemleak: unreferenced object 0x (size 16)"


def test_faults_json_junit_and_the_page_say_the_same():
    w = walk_of("faults_faulty", 2)
    dec = decoder()
    decoded = {(o.phase, o.n): dec.point(o) for o in w.outcomes if o.injected or o.consequences}
    found = faultfind.findings(w.outcomes, decoded, lambda p, n: f"harness faults --step {p} --only {n}")
    phases = faultfind.phase_rows(w.outcomes, ["init", "write"], 500)
    head = {"kernel": "debian-src:trixie+debug", "module": "faulty", "verdict": "fail", "reason": "2 findings",
            "guests": 2, "seconds": 656.0}
    doc = json.loads(json.dumps(faultfind.faults_json(head, w.outcomes, found, decoded, phases)))
    assert doc["points_walked"] == 12 and len(doc["points"]) == 14
    assert [(p["step"], p["calls"], p["points"], p["complete"]) for p in doc["phases"]] == [
        ("init", 6, 7, True), ("write", 4, 5, True)]
    f = doc["findings"][0]
    assert {"site", "function", "step", "n", "consequence", "trace"} <= set(f) and f["trace"]
    table = {row["site"]: row["outcomes"] for row in doc["table"]}
    assert table[line_of("/* fault site: init leak */")] == {"kmemleak": 1}
    assert table[NO_STACK] == {"handled": 5}
    root = ET.fromstring(faultfind.junit_xml("k", w.outcomes, decoded, 656.0))
    cases = root.findall(".//testcase")
    assert len(cases) == 14 and len(root.findall(".//failure")) == 2
    suite = root.find("testsuite")
    assert suite is not None and suite.get("failures") == "2"
    page = faulthtml.page(doc, "k/")
    assert line_of("/* fault site: write double free */") in page and "double-free" in page
    assert "harness faults --step write --only 3" in page


def test_the_fixed_module_walks_clean():
    w = walk_of("faults_fixed", 1, FAULTY / "fixed.toml")
    assert [o for o in w.outcomes if o.consequences] == []
    assert all(s.complete for s in w.states) and w.guests == ["walked"]
    assert faultfind.walked(w.outcomes) == 12
    assert {o.outcome for o in w.outcomes if o.n > 0} == {faultpoint.ERROR_RETURNED, faultpoint.HANDLED,
                                                          faultpoint.NOT_INJECTED}


def test_a_consequence_is_json():
    assert Consequence("hang", "x", None, "y").to_json() == {"kind": "hang", "text": "x", "seq": None, "detail": "y"}


def test_a_trace_names_files_as_people_read_them():
    """The recorded .ko names the kernel tree it was built against, and the build's temporary directory."""
    tree = Path("/root/.cache/kmod-harness/kernels/trixie-linux-source-6.12-6.12.118-1-debug-584618ae9c/linux")
    dec = Decoder(symbolize.Binutils(None, DATA / "faults_faulty"), "faulty.ko", "faulty", SOURCE, tree=tree)
    w = walk_of("faults_faulty", 2)
    o = outcome(w, "init", 3)
    seq = o.consequences[0].seq
    assert seq is not None
    lines = dec.point(o).traces[seq]["module_frames"][0].splitlines()
    assert lines[0].endswith("[faulty] at include/linux/slab.h:894")
    assert lines[-1].strip() == "inlined from faulty_init at faulty.c:69"


TWO_MODULES = """[module]
source = "module"
trail = "trail.toml"
[[module.load]]
name = "a"
[[module.load]]
name = "b"
"""


@pytest.mark.parametrize("argv, says", [
    (["--kernel", "debian:bookworm"], "Debian's packaged kernels have no fault injection"),
    (["--only", "0"], "from 1"),
    (["--max-points", "0"], "from 1"),
    (["--kernel", "debian-src:trixie+nosuch"], "unknown kernel flavour"),
    (["--step", "nosuch"], "--step 'nosuch': "),
    (["--step", "write", "--timeout", "nan"], "give a number of seconds"),
    (["--project", "TWO"], "harness faults walks a project with one module"),
    (["--project", "NOWHERE"], "does not exist"),
])
def test_a_walk_that_cannot_be_is_a_usage_error_before_anything_runs(argv, says, tmp_path, capsys):
    from harness import cli

    two = tmp_path / "two"
    (two / "module").mkdir(parents=True)
    (two / "harness.toml").write_text(TWO_MODULES)
    argv = [{"TWO": str(two), "NOWHERE": str(tmp_path / "nowhere")}.get(a, a) for a in argv]
    results = tmp_path / "results"
    assert cli.main(["faults", "--project", str(FAULTY), "--results", str(results), *argv]) == 2
    err = capsys.readouterr().err
    assert says in err.splitlines()[0], err
    assert not results.exists()  # nothing written


def test_a_report_that_goes_on_as_an_oops_and_a_panic_is_one_consequence():
    c = [Consequence(k, k) for k in ("bug", "oops", "panic")]
    assert [x.kind for x in faultpoint.cascade(c)] == ["bug"]
    assert [x.kind for x in faultpoint.cascade([Consequence("oops", ""), Consequence("panic", "")])] == ["oops"]
    two = [Consequence("kasan", ""), Consequence("warning", "")]
    assert faultpoint.cascade(two) == two


# ---- complaints, and a log without end ----------------------------------------------------------


def test_an_injections_own_stack_dump_is_no_complaint_but_the_kernels_complaint_about_the_module_is():
    log = guest_log("faults_faulty", 1)
    run = log.results[("init", 1)]
    win = faultpoint.window(log.parsed(), run.seq_before, run.seq_after)
    kernel = [r for r in win if r.facility == 0]
    # as a run's judge reads it, the dump lib/fault-inject.c prints with each injection is a complaint
    assert [c.kind for c in complaints.find(kernel, ["faulty"], (None, None), None)] == [complaints.DUMP]
    how = faultpoint.Judging(tuple(RULES), "faulty", ("faulty",))
    assert faultpoint.complaints_in(win, how) == []
    # the kernel's complaint about a module (tests/data/positive_init: init returned 240, and
    # do_init_module() said so with a stack dump) in the same point's records is a consequence
    said = [r for r in kmsg.parse_records(load_guest("positive_init")["kmsg"]) if 466 <= r.seq <= 490]
    found = faultpoint.complaints_in(list(win) + said, how)
    assert [(c.kind, c.seq) for c in found] == [(faultpoint.COMPLAINT, 466)]
    assert "suspiciously returned 240" in found[0].text and "do_init_module()" in found[0].detail
    # unless the project allows it
    allowed = faultpoint.Judging(tuple(RULES), "faulty", ("faulty",),
                                 allow=(Allowance(re.compile("suspiciously returned"), "intended"),))
    assert faultpoint.complaints_in(list(win) + said, allowed) == []


def test_a_walk_keeps_the_first_and_the_last_records_of_a_guest_that_logs_without_end(monkeypatch):
    everything = guest_log("faults_faulty", 1).parsed()
    monkeypatch.setattr(faultpoint, "KEEP", 100)
    log = guest_log("faults_faulty", 1)
    assert len(everything) > 200 and log.parsed() == everything[:100] + everything[-100:]
    assert log.dropped == len(everything) - 200

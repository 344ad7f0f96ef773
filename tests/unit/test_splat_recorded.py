"""One recorded real run per splat rule (tests/data/splat_*, the fixture tests/fixtures/splatter): the
kernel's own text is judged a crash by the rule it should be, from a record when the guest lived long
enough to send it, from the console lines of the run when it did not."""

import json
import re

import pytest

from harness.model import Verdict
from harness.verdict import judge, splat

from conftest import DATA, REPO, RULES, guest_report, load_trail, plan_of

TRAIL = load_trail(REPO / "tests" / "fixtures" / "splatter" / "trail.toml")

# recording -> (the first splat's rule, whether the record reached the host before the guest died)
CASES = {
    "splat_gpf": ("gpf", True),
    "splat_hung_task": ("hung-task", True),
    "splat_kasan": ("kasan", True),
    "splat_kernel_bug": ("kernel-bug", True),
    "splat_lockdep": ("lockdep", True),
    "splat_oops": ("bug", False),  # "BUG: kernel NULL pointer dereference", then "Oops:"; only on the console
    "splat_rcu_stall": ("rcu-stall", True),
    "splat_sched_atomic": ("lockdep", True),  # "BUG: scheduling while atomic"
    "splat_soft_lockup": ("lockup", False),
    "splat_ubsan": ("ubsan", True),
    "splat_warning": ("warning", True),
}


def marker_of(name: str) -> str:
    """The run's marker text, as the console or the records show it."""
    text = (DATA / name / "console.log").read_text(errors="replace") + "\n".join(guest_report(name).kmsg)
    m = re.search(r"(kmod-harness: run \w+: first guest step starts)", text)
    assert m is not None, f"{name}: no marker"
    return m.group(1)


def judged(name: str) -> judge.Judgement:
    console = (DATA / name / "console.log").read_text(errors="replace")
    ev = judge.Evidence(report=guest_report(name), console=console, marker=marker_of(name))
    return judge.judge(ev, TRAIL, RULES, plan_of(ev.report))


@pytest.mark.parametrize("name", sorted(CASES))
def test_each_recorded_splat_is_a_crash_by_its_rule(name):
    rule, from_record = CASES[name]
    j = judged(name)
    assert j.verdict is Verdict.CRASH, j.reason
    assert j.splats[0].rule == rule, [s.rule for s in j.splats]
    assert (j.splats[0].seq is not None) is from_record
    assert not j.boot_splats, "the boot of these guests reported nothing"


@pytest.mark.parametrize("name", sorted(CASES))
def test_the_modules_own_words_about_it_are_no_splat(name):
    """splatter logs "splatter: provoking <what>" first: a record of its own, never a splat."""
    records = list(judge.kmsg.parse_records(guest_report(name).kmsg))
    own = [r for r in records if r.text.startswith("splatter: ")]
    assert own and splat.find(RULES, own) == []


def test_every_rule_but_kmemleak_has_a_recording_and_kmemleaks_report_matches():
    covered = {rule for rule, _ in CASES.values()} | {"oops", "panic"}
    # kmemleak reports only on a scan, kcsan needs a KCSAN kernel: neither has a recorded run
    assert covered | {"kmemleak", "kcsan"} == {r.name for r in RULES}
    leak = json.loads((DATA / "kmemleak_leaky.json").read_text())["reports"][0].splitlines()[0]
    rule = splat.classify(RULES, leak)
    assert rule is not None and rule.name == "kmemleak"


def test_a_dead_guests_console_gives_the_oops_and_the_panic_after_the_bug():
    j = judged("splat_oops")
    assert [s.rule for s in j.splats][:3] == ["bug", "oops", "panic"]
    assert "Kernel panic - not syncing" in j.console_excerpt

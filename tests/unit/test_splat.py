"""Splat rules: anchored, ordered, kernel records only; and no payload a module prints can forge one."""

import re
import string

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from harness.model import KmsgRecord
from harness.verdict import splat

from conftest import DATA, RULES

# What the kernel prints, one example per rule (texts as the kernel's format strings give them;
# tests/data/splat_* hold real recordings of each, see test_recorded_splats below).
EXAMPLES = {
    "kasan": "BUG: KASAN: slab-out-of-bounds in splatter_init+0x4a/0x1000 [splatter]",
    "ubsan": "UBSAN: array-index-out-of-bounds in /tmp/build/splatter.c:40:12",
    "kmemleak": "unreferenced object 0xffff888003a1c000 (size 64):",
    "lockdep": "WARNING: possible circular locking dependency detected",
    "oops": "Oops: 0002 [#1] PREEMPT SMP NOPTI",
    "gpf": "general protection fault, probably for non-canonical address 0xdead000000000000: 0000 [#1] SMP",
    "kernel-bug": "kernel BUG at /tmp/build/splatter.c:30!",
    "bug": "BUG: kernel NULL pointer dereference, address: 0000000000000000",
    "warning": "WARNING: CPU: 1 PID: 250 at /tmp/build/warn_on_load.c:16 warn_on_load_init+0x11/0x1000",
    "panic": "Kernel panic - not syncing: Fatal exception",
    "lockup": "watchdog: BUG: soft lockup - CPU#0 stuck for 22s! [insmod:250]",
    "hung-task": "INFO: task insmod:250 blocked for more than 3 seconds.",
    "rcu-stall": "rcu: INFO: rcu_preempt self-detected stall on CPU",
    "kcsan": "BUG: KCSAN: data-race in splatter_write [splatter] / splatter_read [splatter]",  # %ps: "f [module]"
}
ATOMIC = "BUG: sleeping function called from invalid context at kernel/locking/mutex.c:283"


def record(text: str, facility: int = 0, level: int = 4) -> KmsgRecord:
    return KmsgRecord(level=level, facility=facility, seq=1, usec=0, text=text)


def rule_of(text: str) -> list[str]:
    return [s.rule for s in splat.find(RULES, [record(text)], ("splatter",))]


def test_a_rule_scoped_to_the_module_counts_only_a_report_that_names_it():
    """kcsan (scope "module"): a data race in core kernel code alone is not the module's; one whose
    report names the module, in its first line or in a frame of its trace, is."""
    core = [record("BUG: KCSAN: data-race in blk_mq_run_hw_queue / blk_mq_sched_dispatch"),
            record("read to 0xffff888003a1c000 of 8 bytes by task 12 on cpu 1:"),
            record(" blk_mq_sched_dispatch+0x1/0x2"), record("==================================================")]
    assert splat.find(RULES, core, ("splatter",)) == []
    mine = core[:2] + [record(" splatter_read+0x1/0x2 [splatter]")] + core[3:]
    assert [s.rule for s in splat.find(RULES, mine, ("splatter",))] == ["kcsan"]
    # a report that ends before the module's frame is not the module's either
    later = core + [record("CPU: 1 PID: 12 Comm: cat"), record(" splatter_read+0x1/0x2 [splatter]")]
    assert splat.find(RULES, later, ("splatter",)) == []
    # the rules without a scope count whoever is in the trace
    assert [s.rule for s in splat.find(RULES, [record("BUG: kernel NULL pointer dereference, address: 0")], ())] \
        == ["bug"]


def test_the_line_kasan_adds_to_a_general_protection_fault_is_part_of_that_oops():
    """Recorded on the debug kernel (6.12, a fuzzed blog module): each general protection fault's
    "Oops:" line is followed by kasan_non_canonical_hook()'s "KASAN: ... in range [...]". That line
    is no KASAN report of its own (those start "BUG: KASAN:"); counted as one, a fault walk made two
    findings of one NULL dereference."""
    console = (DATA / "fuzz_blog_wedged" / "console.log").read_text(errors="replace")
    hooks = [line for line in console.splitlines() if re.search(r"\] KASAN: [\w -]+ in range \[0x", line)]
    assert hooks  # the recording holds such lines
    found, _ = splat.find_in_console(RULES, console, None)
    assert [s.rule for s in found if s.rule == "kasan"] == ["kasan"], found  # the one real report
    assert found[0].text.startswith("BUG: KASAN: slab-out-of-bounds")
    gpfs = [line for line in console.splitlines() if "Oops: general protection fault" in line]
    assert sum(s.text.startswith("Oops: general protection fault") for s in found) == len(gpfs) > 1
    hook = splat.console_text(hooks[0])
    assert hook is not None and rule_of(hook) == []


def test_every_rule_has_an_example():
    assert set(EXAMPLES) == {r.name for r in RULES}


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_each_rule_matches_its_text_and_wins_over_the_general_ones(name):
    assert rule_of(EXAMPLES[name]) == [name]


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_the_same_words_inside_a_modules_line_of_user_data_are_no_splat(name):
    assert rule_of(f"MyNetlink has received: {EXAMPLES[name]}") == []
    assert rule_of(f"MyNetlink has received: x {EXAMPLES[name]} y") == []


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_what_userspace_writes_into_dev_kmsg_is_no_splat(name):
    assert splat.find(RULES, [record(EXAMPLES[name], facility=1)]) == []


def test_atomic_context_reports_are_lockdeps_not_plain_bugs():
    assert rule_of(ATOMIC) == ["lockdep"]


@pytest.mark.parametrize("line, text", [
    ("[   12.345678] BUG: unable to handle page fault", "BUG: unable to handle page fault"),
    ("[   12.345678][  T250] WARNING: CPU: 0 PID: 250 at x", "WARNING: CPU: 0 PID: 250 at x"),
    ("[    3.000000][    C1] rcu: INFO: rcu_preempt self-detected stall on CPU",
     "rcu: INFO: rcu_preempt self-detected stall on CPU"),
    ("virtme-ng-init: BUG: not a kernel line", None),
])
def test_console_prefixes(line, text):
    assert splat.console_text(line) == text


def test_console_lines_before_the_marker_are_the_boot():
    console = "\n".join(["[ 1.0] WARNING: CPU: 0 PID: 1 at boot",
                         "[ 2.0] kmod-harness: run r1: first guest step starts", "[ 3.0] Oops: 0002 [#1] SMP"])
    found, _ = splat.find_in_console(RULES, console, "run r1: first guest step starts")
    assert [s.rule for s in found] == ["oops"]
    boot = splat.boot_splats_in_console(RULES, console, "run r1: first guest step starts")
    assert [s.rule for s in boot] == ["warning"]
    assert splat.find_in_console(RULES, console, "run r2: first guest step starts")[0] == []  # no marker: all boot


def kernel_escape(text: str) -> str:
    """As /dev/kmsg shows a record's text: control characters and backslashes as \\xNN."""
    return "".join(f"\\x{ord(c):02x}" if ord(c) < 0x20 or c in "\\\x7f" else c for c in text)


PREFIXES = ("MyNetlink has received: ", "kh_echo: wrote ", "splatter: provoking ", "hello from ")


@settings(max_examples=2000, deadline=None)
@given(prefix=st.sampled_from(PREFIXES),
       payload=st.one_of(st.text(), st.text(alphabet=string.printable),
                         st.sampled_from(list(EXAMPLES.values())).map(lambda t: "\n" + t),
                         st.lists(st.sampled_from(list(EXAMPLES.values()) + ["\n", " ", "x"])).map("".join)))
def test_no_payload_a_module_prints_is_a_splat(prefix, payload):
    """Whatever userspace sends, the module's record starts with the module's own words."""
    assert splat.find(RULES, [record(prefix + kernel_escape(payload), level=6)]) == []

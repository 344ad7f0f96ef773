"""A fuzz guest whose kernel wedged after a splat is ended, not waited for until the timeout.

tests/data/fuzz_blog_wedged/console.log is the head of a real fuzz guest's console (the blog's
module on debian-src:trixie+debug, see tests/data/README.md): the module overran its stack, KASAN
reported in a timer interrupt, then Oops after Oops, each recursing into the last, and no panic."""

import sys
import time

from harness import procs
from harness.fuzz.boot import Wedge
from harness.phases import load_rules

from conftest import DATA

PATTERNS = [r.regex.pattern for r in load_rules()]
CONSOLE = (DATA / "fuzz_blog_wedged" / "console.log").read_text().splitlines()


def test_the_recorded_storm_is_seen_from_its_first_splat_once_the_fuzzer_has_spoken():
    w = Wedge(PATTERNS, grace=60)
    hello = next(i for i, line in enumerate(CONSOLE) if "MyNetLink Init OK!" in line)
    for line in CONSOLE[:hello]:
        w.console(line)
    assert w.splat == ""  # before the fuzzer's first word (a boot's own splat is not an input's)
    w.heard()
    for line in CONSOLE[hello:]:
        w.console(line)
    assert w.splat == "BUG: KASAN: slab-out-of-bounds in tick_nohz_handler+0x3a4/0x440"
    assert not w.due(w.splat_at + 59) and w.due(w.splat_at + 61)
    w.heard_at = w.splat_at + 30  # the fuzzer spoke after the splat: the grace starts again
    assert not w.due(w.splat_at + 61) and w.due(w.splat_at + 91)


def test_a_guest_silent_after_a_splat_is_ended_by_the_watch():
    script = ("import sys, time; print('@kmod-harness@ hello', flush=True); "
              "print('[   80.5] BUG: KASAN: slab-out-of-bounds in x', file=sys.stderr, flush=True); time.sleep(60)")
    t0 = time.monotonic()
    with Wedge(PATTERNS, grace=1.0, every=0.2) as w:
        def on_line(stream, line):
            if stream == "stdout":
                w.heard()
            else:
                w.console(line)

        done = procs.run([sys.executable, "-c", script], timeout=50, what="a wedged guest", on_line=on_line,
                         on_start=w.attach)
    assert time.monotonic() - t0 < 20 and done.returncode != 0
    assert w.ended == "BUG: KASAN: slab-out-of-bounds in x"

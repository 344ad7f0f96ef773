"""Which kmemleak reports the leak check attributes to the module (recorded from a real run)."""

import json
import re
import sys

from conftest import DATA, REPO

sys.path.insert(0, str(REPO / "tests" / "hostile"))
import leakcheck  # noqa: E402

RUN = json.loads((DATA / "kmemleak_leaky.json").read_text())


def test_reports_of_the_cycles_are_the_modules_though_its_frames_are_bare_addresses():
    window = tuple(RUN["jiffies_window"])
    mine = [r for r in RUN["reports"] if leakcheck.names_module(r, "leaky", window)]
    assert len(mine) == 3  # one per cycle; the harness's own load came before the window
    assert all("leaked by leaky" in r and "leaky_init" not in r for r in mine)


def test_the_same_reports_outside_the_window_are_not_attributed():
    assert not [r for r in RUN["reports"] if leakcheck.names_module(r, "leaky", (0, 1))]


def test_a_frame_naming_the_module_is_attributed_whatever_the_time():
    report = re.sub(r"0xffffffffc0[0-9a-f]+", "leaky_init+0x45/0x80 [leaky]", RUN["reports"][0], count=1)
    assert report != RUN["reports"][0]
    assert leakcheck.names_module(report, "leaky", (0, 1))


def test_reports_split_on_unreferenced_object_lines():
    text = "\n".join(RUN["reports"])
    assert leakcheck.reports(text) == RUN["reports"]

"""Real out-of-tree modules of other projects, run as their developers would: `harness init`, a few
edits to harness.toml, `harness run --record-trail`, then `harness run`.

Their code is not ours to ship: each test takes it at test time from its public repository, at a
pinned commit, into its own temporary directory (tests/pinned.py: cloned once into the harness
cache from GitHub, or from HARNESS_TEST_MIRROR on a machine without network access). Without
either, the tests are skipped, saying which was missing and what to set.
"""

import json
import re
from pathlib import Path

import pytest

from harness import cli

from pinned import Pin, checkout

pytestmark = pytest.mark.vm

V4L2LOOPBACK = Pin("umlaeute/v4l2loopback", "77bf1e25f6a54e157d1c14cf62415dad8f95ea4b")
LKMPG = Pin("sysprog21/lkmpg", "6049da837d2a4ec801cd9e61996b87b9e8b41ebc", "examples")


def harness(*argv: str) -> int:
    return cli.main(list(argv))


def init_then(project: Path, edit) -> str:
    """`harness init`, then the developer's edits (a function of the file's text)."""
    assert harness("init", str(project)) == 0
    toml = project / "harness.toml"
    toml.write_text(edit(toml.read_text()))
    return toml.read_text()


def record_then_run(project: Path, results: Path) -> dict:
    assert harness("run", "--project", str(project), "--results", str(results / "record"), "--record-trail") == 0
    trail = (project / "trail.toml").read_text()
    assert "[[expect]]" in trail
    code = harness("run", "--project", str(project), "--results", str(results / "check"))
    res = json.loads((results / "check" / "debian-bookworm" / "result.json").read_text())
    assert code == 0, res["reason"]
    return res


def test_v4l2loopback_needs_videodev_first_and_takes_parameters(own_tmp):
    """umlaeute/v4l2loopback: a Kbuild file; depends on videodev (and so mc) from the kernel's own tree."""
    project = checkout(V4L2LOOPBACK, own_tmp / "v4l2loopback")
    text = init_then(project, lambda t: t.replace(
        "# params = [\"key=value\"]      # insmod parameters",
        'params = ["devices=2", "video_nr=3,4", "card_label=harness-a,harness-b"]').replace(
        "# requires = [\"videodev\"]", 'requires = ["videodev"]') + (
        '\n[[step]]\nname = "devices"\nrun = ["sh", "-c", "test -c /dev/video3 && test -c /dev/video4 && '
        'cat /sys/class/video4linux/video3/name /sys/class/video4linux/video4/name"]\n'))
    assert 'name = "v4l2loopback"' in text
    res = record_then_run(project, own_tmp / "r")
    assert [s["name"] for s in res["steps"]] == ["modprobe videodev", "insmod", "devices", "rmmod"]
    assert res["steps"][2]["stdout"].split() == ["harness-a", "harness-b"]
    assert any(t["text"].startswith("v4l2-loopback driver version") for t in res["trail"])


def test_lkmpg_examples_several_modules_from_one_makefile_in_order(own_tmp):
    """sysprog21/lkmpg's examples/: a Makefile (no Kbuild) with 42 obj-m; vkbd needs vinput loaded
    first (it uses vinput's exported symbols); hello-5 takes parameters."""
    project = checkout(LKMPG, own_tmp / "lkmpg")

    def keep_three(text: str) -> str:
        head, rest = text.split("[[module.load]]", 1)
        tail = rest[rest.index("# [build]"):]
        loads = ('[[module.load]]\nname = "vinput"\n\n[[module.load]]\nname = "vkbd"\n\n'
                 '[[module.load]]\nname = "hello-5"\nparams = ["myint=7", "mystring=harness"]\n\n')
        steps = ('\n[[step]]\nname = "loaded"\nrun = ["sh", "-c", "test -e /sys/class/vinput/export && '
                 'cat /sys/module/hello_5/parameters/myint"]\n')
        return head + loads + tail + steps

    text = init_then(project, keep_three)
    assert text.count("[[module.load]]") == 3
    res = record_then_run(project, own_tmp / "r")
    assert [s["name"] for s in res["steps"]] == [
        "insmod vinput", "insmod vkbd", "insmod hello-5", "loaded", "rmmod hello-5", "rmmod vkbd", "rmmod vinput"]
    assert res["steps"][3]["stdout"].strip() == "7"
    texts = [t["text"] for t in res["trail"]]
    assert texts.index("vinput: Loading virtual input driver") < texts.index("myint is an integer: 7")
    assert texts[-1] == "vinput: Unloading virtual input driver"
    assert any(re.fullmatch(r"Hello, world 5\\x0a=+", t) for t in texts)  # one record, the newline escaped

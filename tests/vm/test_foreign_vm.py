"""Real out-of-tree modules of other projects, run as their developers would: `harness init`, a few
edits to harness.toml, `harness run --record-trail`, then `harness run`.

Their code is not ours to ship: each test takes it at test time from its public repository, at a
pinned commit, into its own temporary directory (tests/pinned.py: cloned once into the harness
cache from GitHub, or from HARNESS_TEST_MIRROR on a machine without network access). Without
either, the tests are skipped, saying which was missing and what to set.
"""

import json
import re
import sys
from pathlib import Path

import pytest

from harness import cli

from pinned import Pin, checkout

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on older hosts only
    import tomli as tomllib

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


def run(project: Path, results: Path, *more: str) -> tuple[int, dict]:
    """`harness run` on the default kernel: its exit code and result.json."""
    code = harness("run", "--project", str(project), "--results", str(results), *more)
    return code, json.loads((results / "debian-bookworm" / "result.json").read_text())


def record_then_run(project: Path, results: Path, expects: bool = True) -> dict:
    """`harness run --record-trail`, then `harness run` with the trail as recorded (no hand edits)."""
    code, res = run(project, results / "record", "--record-trail")
    assert code == 0, res["reason"]
    trail = (project / "trail.toml").read_text()
    assert bool(tomllib.loads(trail)["expect"]) == expects, trail
    code, res = run(project, results / "check")
    assert code == 0, res["reason"]
    return res


def break_source(path: Path, good: str, bad: str) -> None:
    """The deliberate bug: ``good`` (found exactly once in ``path``) becomes ``bad``."""
    text = path.read_text()
    assert text.count(good) == 1, f"{path.name}: {good!r} found {text.count(good)} times"
    path.write_text(text.replace(good, bad))


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


# ---- three more, first tried for issue 23: each from `harness init` to a passing run, and broken ----------

FIBDRV = Pin("sysprog21/fibdrv", "dfc93a2166dbffff6d6c5b42098207d09295b412")
ACPI_CALL = Pin("nix-community/acpi_call", "cfa2aed6eb6b6f4549a08eaebd8431db175aa44f")
CRYPTODEV = Pin("cryptodev-linux/cryptodev-linux", "08644db02d43478f802755903212f5ee506af73b")

# fibdrv's own `make check`: build client.c, read every offset, diff against scripts/expected.txt.
FIBDRV_CLIENT = r'''
[[step]]
name = "client"
cwd = "/tmp"
run = ["sh", "-c", "cc -o client /project/client.c && ./client > out && diff -u /project/scripts/expected.txt out"]
'''
FIBDRV_ALLOW = r'''
[[allow]]
pattern = "'fibdrv'->init suspiciously returned \\d+"
reason = "fibdrv's init returns the major number register_chrdev() gave it (upstream behaviour)"
'''


def test_fibdrv_reads_fibonacci_numbers_with_its_init_complaint_allowed(own_tmp):
    """sysprog21/fibdrv: a character device whose reads return Fibonacci numbers. Its init returns
    its major number, so every load logs "'fibdrv'->init suspiciously returned 240" with a stack
    dump. The project allows that complaint with its reason: the run passes, the report lists what
    was allowed and why, and the trail recorded from it holds neither the complaint nor its dump."""
    project = checkout(FIBDRV, own_tmp / "fibdrv")
    init_then(project, lambda t: t + FIBDRV_ALLOW + FIBDRV_CLIENT)
    res = record_then_run(project, own_tmp / "r", expects=False)  # fibdrv itself logs nothing
    trail = (project / "trail.toml").read_text()
    assert not re.search(r"suspiciously|Call Trace|PID|RIP|dump_stack", trail), trail
    assert [s["name"] for s in res["steps"]] == ["insmod", "client", "rmmod"]
    assert res["steps"][1]["stdout"] == ""  # diff found no difference
    allowed = [c for c in res["complaints"] if "'fibdrv'->init suspiciously returned" in c["text"]]
    assert allowed and "major number" in allowed[0]["allowed_by"], res["complaints"]


def test_fibdrv_init_returning_its_major_fails_quoting_the_kernel_line(own_tmp):
    """Without the [[allow]], the complaint fails the run (recording included) and the reason quotes
    the kernel's line; the output shows the [[allow]] to add if the value is intended."""
    project = checkout(FIBDRV, own_tmp / "fibdrv")
    init_then(project, lambda t: t + FIBDRV_CLIENT)
    code, res = run(project, own_tmp / "r", "--record-trail")
    assert (code, res["verdict"]) == (1, "fail"), res["reason"]
    assert "'fibdrv'->init suspiciously returned 2" in res["reason"]  # the major: 2xx on Debian's kernels
    assert not (project / "trail.toml").exists()
    reason = res["reason"]
    assert "\n[[allow]]\n" in reason and "suspiciously returned" in reason[reason.index("\n[[allow]]\n"):]


def test_fibdrv_broken_fails_quoting_the_line_that_differs(own_tmp):
    """F(50) off by one: the client's diff against expected.txt fails the step, and the reason quotes
    the first line that differs, not the diff's last context line."""
    project = checkout(FIBDRV, own_tmp / "fibdrv")
    init_then(project, lambda t: t + FIBDRV_ALLOW + FIBDRV_CLIENT)
    break_source(project / "fibdrv.c", "f[i] = f[i - 1] + f[i - 2];", "f[i] = f[i - 1] + f[i - 2] + (i == 50);")
    code, res = run(project, own_tmp / "r", "--record-trail")
    assert (code, res["verdict"]) == (1, "fail"), res["reason"]
    assert "client" in res["reason"]
    # diff -u: 213 lines, the first changed one (offset 50, expected or got) 104 lines from the end
    assert re.search(r"[-+]Reading from /dev/fibonacci at offset 50, returned the sequence 1258626902[56]\.",
                     res["reason"]), res["reason"]


# Known answers of ACPI methods that every QEMU x86 machine has, through acpi_call's /proc/acpi/call
# (a read returns the last call's result, NUL-terminated, then "not called").
ACPI_CHECKS = r'''#!/bin/sh
fails=0
call() { printf '%s' "$1" > /proc/acpi/call && tr -d '\000' < /proc/acpi/call; }
check() {
    got=$(call "$1")
    if [ "$got" = "$2" ]; then echo "ok   $1 = $got"; else echo "FAIL $1: got $got, want $2"; fails=$((fails + 1)); fi
}
check '\_OSI "Windows 2015"' 0xffffffff
check '\_OSI "Linux"' 0x0
check '\_OS' '"Microsoft Windows NT"'
check '\_SB.PCI0._UID' 0x0
check '\_SB.NOPE' 'Error: AE_NOT_FOUND'
hid=$(call '\_SB.PCI0._HID')
case $hid in
0x80ad041 | 0x30ad041) echo "ok   \_SB.PCI0._HID = $hid (PNP0A08 or PNP0A03: a PCI host bridge)" ;;
*) echo "FAIL \_SB.PCI0._HID: got $hid, want a PCI host bridge (0x80ad041 or 0x30ad041)"; fails=$((fails + 1)) ;;
esac
got=$(tr -d '\000' < /proc/acpi/call)
if [ "$got" = "not called" ]; then echo "ok   a second read says: $got"
else echo "FAIL a second read: got $got, want not called"; fails=$((fails + 1)); fi
exit $((fails > 0))
'''
ACPI_EDITS = '''
[build]
args = ["KCFLAGS=-DDEBUG"]   # acpi_call logs each call and its result only when built with DEBUG

[[step]]
name = "calls"
run = ["sh", "/project/harness-tests/calls.sh"]
'''


def acpi_call_project(own_tmp: Path) -> Path:
    project = checkout(ACPI_CALL, own_tmp / "acpi_call")
    (project / "harness-tests").mkdir()
    (project / "harness-tests" / "calls.sh").write_text(ACPI_CHECKS)
    init_then(project, lambda t: t + ACPI_EDITS)
    return project


def test_acpi_call_evaluates_acpi_methods_through_proc(own_tmp):
    """nix-community/acpi_call: ACPI methods called by writing their path to /proc/acpi/call. Built
    with DEBUG, it logs every call and its result, the error path (an unknown method) at KERN_ERR:
    the module's own records, recorded as the trail."""
    project = acpi_call_project(own_tmp)
    res = record_then_run(project, own_tmp / "r")
    assert [s["name"] for s in res["steps"]] == ["insmod", "calls", "rmmod"]
    lines = res["steps"][1]["stdout"].splitlines()
    assert len(lines) == 7 and all(ln.startswith("ok ") for ln in lines), lines
    texts = [t["text"] for t in res["trail"]]
    assert (texts[0], texts[-1]) == ("acpi_call: Module loaded successfully", "acpi_call: Module unloaded successfully")
    assert 'acpi_call: Call successful: "Microsoft Windows NT"' in texts
    assert "acpi_call: Cannot get handle: Error: AE_NOT_FOUND" in texts


def test_acpi_call_broken_fails_quoting_the_failing_check(own_tmp):
    """Integer results cut to 16 bits: the step fails and the reason quotes its FAIL line, not the
    "ok" lines printed after it."""
    project = acpi_call_project(own_tmp)
    break_source(project / "acpi_call.c", '"0x%x", (int)result->integer.value);',
                 '"0x%x", (int)result->integer.value & 0xffff);')
    code, res = run(project, own_tmp / "r", "--record-trail")
    assert (code, res["verdict"]) == (1, "fail"), res["reason"]
    assert 'FAIL \\_OSI "Windows 2015": got 0xffff, want 0xffffffff' in res["reason"]


# cryptodev-linux: its version.h comes from its own Makefile (kbuild alone does not make it); its
# tests/ programs are built in the guest with the guest's cc, the OpenSSL comparisons against libssl-dev
# (`make check` builds them too). Not hmac_comp: at this commit it compares all 64 bytes of two MAC
# buffers filled with 0 and 1 before a 20-byte MAC is written, and fails on any module (seen 2026-12-05).
CRYPTODEV_EDITS = '''
[build]
command = ["make", "KERNEL_DIR={headers}", "CC={cc}"]

[guest]
packages = ["libssl-dev"]

[[step]]
name = "build tests"
cwd = "/tmp"
timeout = 900
run = ["sh", "-c", "cp -r /project cryptodev && make -C cryptodev/tests cipher_comp hash_comp"]

[[step]]
name = "openssl"
cwd = "/tmp/cryptodev/tests"
run = ["sh", "-c", "./cipher_comp 16 4096 && ./hash_comp 16 4096"]

[[step]]
name = "check"
cwd = "/tmp/cryptodev"
timeout = 900
run = ["make", "check"]
'''


def test_cryptodev_passes_its_own_tests_and_the_openssl_comparison(own_tmp):
    """cryptodev-linux/cryptodev-linux: /dev/crypto (the BSD cryptodev ioctls) over the kernel's
    crypto API. Its tests log debug records naming the process and its PID
    (`cryptodev: cipher-gcm[188] (adjust_sg_array:124): ...`): a recorded trail must pass the next boot."""
    project = checkout(CRYPTODEV, own_tmp / "cryptodev")
    init_then(project, lambda t: t + CRYPTODEV_EDITS)
    res = record_then_run(project, own_tmp / "r")
    assert [s["name"] for s in res["steps"]] == ["insmod", "build tests", "openssl", "check", "rmmod"]
    assert "got hash sha1 with driver" in res["steps"][2]["stdout"]  # hash_comp: the kernel's driver it was given
    texts = [t["text"] for t in res["trail"]]
    assert texts[0] == "cryptodev: driver 1.14 loaded." and texts[-1] == "cryptodev: driver unloaded."
    expects = tomllib.loads((project / "trail.toml").read_text())["expect"]  # (comments quote the records)
    assert not any(re.search(r"\[\d+\]", e.get("text", "")) for e in expects)  # no PID as exact text
    assert any("\\[\\d+\\]" in e.get("pattern", "") for e in expects)  # ... but as a pattern


def test_cryptodev_broken_hash_fails_quoting_the_first_mismatch(own_tmp):
    """Every hash result with its first byte flipped: OpenSSL's comparison fails the step, and the
    reason quotes the first mismatch, not the program's closing line."""
    project = checkout(CRYPTODEV, own_tmp / "cryptodev")
    init_then(project, lambda t: t + CRYPTODEV_EDITS)
    break_source(project / "cryptlib.c", "\tret = crypto_ahash_final(hdata->async.request);\n\n"
                 "\treturn waitfor(&hdata->async.result, ret);",
                 "\tret = waitfor(&hdata->async.result, crypto_ahash_final(hdata->async.request));\n"
                 "\t((u8 *)output)[0] ^= 1;\n\treturn ret;")
    code, res = run(project, own_tmp / "r", "--record-trail")
    assert (code, res["verdict"]) == (1, "fail"), res["reason"]
    assert "'openssl'" in res["reason"]
    assert "fail for datalen 16, MACs do not match!" in res["reason"]

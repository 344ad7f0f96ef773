"""harness watch as a developer uses it: edits to a module's source, each judged on a guest booted in
advance; the same verdicts as harness run, a crash included, and every run on a new spare."""

import json
import re
import shutil
import subprocess
import sys
import threading
import time

import pytest

from harness import cli
from harness.model import Verdict

from conftest import REPO, wait_no_qemu

pytestmark = pytest.mark.vm

SOURCE = "module/kh_greeter.c"


class Lines:
    """The watcher's output, read as it comes."""

    def __init__(self, proc):
        self.lines, self.proc = [], proc
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    def wait_for(self, pattern, after=0, seconds=600):
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            for i, line in enumerate(self.lines[after:], start=after):
                if re.search(pattern, line):
                    return i
            if self.proc.poll() is not None and not self.lines[after:]:
                break
            time.sleep(0.2)
        pytest.fail(f"no line matching {pattern!r} after line {after}:\n" + "\n".join(self.lines[-40:]))


def same(reason):
    """A verdict's reason without what differs between two guests: the numbers (CPU, PID, times), and
    the watcher's line on the spare it used."""
    return re.sub(r"\d+", "N", reason.split("\nran on a spare guest")[0])


def edit(path, old, new):
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new, 1))


def test_edits_are_judged_on_spares_a_crash_included(own_tmp):
    project = own_tmp / "module-repo"
    shutil.copytree(REPO / "examples" / "module-repo", project, ignore=shutil.ignore_patterns(".github"))
    src = project / SOURCE
    proc = subprocess.Popen([sys.executable, "-m", "harness", "watch", "--project", str(project), "--runs", "3",
                             "--results", str(own_tmp / "r")], cwd=own_tmp, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    out = Lines(proc)
    try:
        at = out.wait_for("spare guest ready")
        edit(src, "on load, and exposes", "on load (edited), and exposes")  # a comment: the same module
        at = out.wait_for(r"^verdict: PASS", at)
        at = out.wait_for("spare guest ready", at)
        edit(src, "\treturn 0;\n}\n\nstatic void __exit", "\tWARN_ON(1);\n\treturn 0;\n}\n\nstatic void __exit")
        at = out.wait_for(r"^verdict: CRASH \(kernel splat: WARNING: CPU", at)
        assert any("kh_greeter.c:" in line for line in out.lines[at - 12:at])  # the decoded frame, before it
        # harness run on the same sources reaches the same verdict for the same reason (CPU and PID aside)
        watched = json.loads(next((own_tmp / "r").glob("*/result.json")).read_text())
        code = cli.main(["run", "--project", str(project), "--results", str(own_tmp / "run")])
        assert code == Verdict.CRASH.exit_code
        ran = json.loads(next((own_tmp / "run").glob("*/result.json")).read_text())
        assert (watched["verdict"], same(watched["reason"])) == ("crash", same(ran["reason"]))
        assert ran["verdict"] == "crash"
        at = out.wait_for("spare guest ready", at)
        edit(src, "\tWARN_ON(1);\n", "")
        at = out.wait_for(r"^verdict: PASS", at)
        assert proc.wait(timeout=120) == 0
    finally:
        if proc.poll() is None:
            proc.terminate()
            proc.wait(60)
    text = "\n".join(out.lines)
    assert text.count("ran on a spare guest that had been up for") == 3
    assert wait_no_qemu(own_tmp) == set()


def comparable(res: dict) -> dict:
    """What two runs of the same sources must agree on, whoever gave them their guest: the verdict
    and its reason, the steps, the trail, the splats with their decoded frames, the complaints;
    not times, sequence numbers, pids, nor how the guest was reached."""
    def norm(v):
        return re.sub(r"\d+", "N", v) if isinstance(v, str) else v

    return {"verdict": res["verdict"], "reason": same(res["reason"]),
            "steps": [(s["name"], s["returncode"], s["stdout"]) for s in res["steps"]],
            "trail": [t["text"] for t in res["trail"]],
            "splats": [(sp["rule"], norm(sp["text"]), [norm(f) for f in sp.get("module_frames") or []],
                        (sp.get("source") or {}).get("line")) for sp in res["splats"]],
            "complaints": [(c["text"], c["allowed_by"]) for c in res["complaints"]],
            "kernel_params": res["kernel_params"], "build_warnings": res["build_warnings"]}


def test_watch_and_run_give_equal_results_and_a_killed_spare_is_one_infra_verdict(own_tmp):
    """Three sources (a pass, a trail mismatch, a WARN), each judged by watch on a spare and by
    harness run on a fresh boot: the same result, symbolized frames included. Then the spare's QEMU
    is killed while a step runs: that edit is infra, and the next edit, on a new spare, passes."""
    project = own_tmp / "module-repo"
    shutil.copytree(REPO / "examples" / "module-repo", project, ignore=shutil.ignore_patterns(".github"))
    src = project / SOURCE
    proc = subprocess.Popen([sys.executable, "-m", "harness", "watch", "--project", str(project), "--runs", "5",
                             "--results", str(own_tmp / "w")], cwd=own_tmp, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    out = Lines(proc)
    edits = [("on load, and exposes", "on load (edited), and exposes", "PASS"),
             ('"kh_greeter: goodbye, %s\\n"', '"kh_greeter: farewell, %s\\n"', "FAIL"),
             ("\treturn 0;\n}\n\nstatic void __exit", "\tWARN_ON(1);\n\treturn 0;\n}\n\nstatic void __exit",
              "CRASH")]
    try:
        at = 0
        for n, (old, new, verdict) in enumerate(edits):
            at = out.wait_for("spare guest ready", at)
            edit(src, old, new)
            at = out.wait_for(rf"^verdict: {verdict}", at)
            watched = json.loads((own_tmp / "w" / "debian-bookworm" / "result.json").read_text())
            cli.main(["run", "--project", str(project), "--results", str(own_tmp / f"run{n}")])
            ran = json.loads((own_tmp / f"run{n}" / "debian-bookworm" / "result.json").read_text())
            assert comparable(watched) == comparable(ran), n
        edit(src, "\tWARN_ON(1);\n", "")
        (project / "harness.toml").write_text((project / "harness.toml").read_text()
                                              + '\n[[step]]\nname = "slow"\nrun = ["sleep", "120"]\ntimeout = 300\n')
        at = out.wait_for("guest step slow", at)
        pids = subprocess.run(["pgrep", "-f", f"qemu-system.*{own_tmp}"], capture_output=True, text=True).stdout.split()
        assert pids
        subprocess.run(["kill", "-9", *pids])
        at = out.wait_for(r"^verdict: INFRA", at)
        edit(project / "harness.toml", 'run = ["sleep", "120"]', 'run = ["true"]')
        at = out.wait_for(r"^verdict: PASS", at)
        assert proc.wait(timeout=120) == 0
    finally:
        if proc.poll() is None:
            proc.terminate()
            proc.wait(60)
    assert wait_no_qemu(own_tmp) == set()

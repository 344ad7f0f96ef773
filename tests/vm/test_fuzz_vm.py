"""`harness fuzz` on the debug kernel (debian-src:trixie+debug: kcov, KASAN, UBSAN), for real.

- the blog's unmodified module, declared by its netlink protocol alone, from an empty corpus:
  the crash is found, confirmed and minimized; the repro, added as a step, makes `harness run`
  a crash on the debug kernel and on Debian's stock bookworm kernel;
- a fixture with a bug behind a four-byte magic compared byte by byte: found with kcov's
  feedback, and not in the same time without it (the feedback is what finds it).

Each test copies its fixture directory: fuzzing writes the repro into the project. Boots
under TCG take one to three minutes each here; the tests take 10-25 minutes.
"""

import json
import shutil
from pathlib import Path

import pytest

from harness import cli
from harness.run import results_id

from conftest import REPO, built_kernel_or_skip

pytestmark = [pytest.mark.vm, pytest.mark.fuzz]

SPEC = "debian-src:trixie+debug"
FIXTURES = REPO / "tests" / "fixtures"


@pytest.fixture(scope="module")
def debug_kernel():
    return built_kernel_or_skip(SPEC, "HARNESS_FUZZ", "test-fuzz")


def fuzz(results: Path, *args: str) -> tuple[int, dict]:
    code = cli.main(["fuzz", "--kernel", SPEC, "--results", str(results), "--cpus", "1", *args])
    return code, json.loads((results / "fuzz.json").read_text())


def run(results: Path, kernel: str, project: Path) -> tuple[int, dict]:
    code = cli.main(["run", "--kernel", kernel, "--project", str(project), "--results", str(results),
                     "--timeout", "900", "--cpus", "1"])
    return code, json.loads((results / results_id(kernel) / "result.json").read_text())


def test_the_blogs_module_crash_is_found_from_an_empty_corpus_and_its_repro_crashes_harness_run(
        debug_kernel, own_tmp):
    project = own_tmp / "netlink"
    shutil.copytree(FIXTURES / "netlink", project)
    code, res = fuzz(own_tmp / "fuzz", "--project", str(project / "blog_fuzz.toml"), "--corpus",
                     str(own_tmp / "corpus"), "--duration", "600", "--max-findings", "1")
    assert code == 4, res["reason"]
    (f,) = res["findings"]
    assert f["confirmed"] and res["first_finding_at"] < 600, f
    if f["where"] is None:
        # The debug kernel has no stack guard page (VMAP_STACK needs KASAN_VMALLOC, which debug.config
        # leaves off): the overflow is seen first by KASAN, in a timer interrupt, with no module frame.
        assert f["rule"] == "kasan" and f["trace"] == [], f
    else:
        assert f["where"].startswith("blog_unsafe.c:") and any("myNetLink_recv_msg" in t for t in f["trace"]), f
    assert f["minimized_bytes"] <= f["input_bytes"] and f["minimized_bytes"] <= 16
    assert res["coverage"]["pcs"] > 0 and res["execs"] >= 1
    repro = project / f["repro"]
    assert repro.is_file() and f["step"] in repro.read_text().replace("#   ", "")
    # The repro as the finding says to add it: a step of the project.
    toml = project / "blog_repro.toml"
    toml.write_text((project / "blog_fuzz.toml").read_text() + "\n" + f["step"])
    for kernel in (SPEC, "debian:bookworm"):
        code, rr = run(own_tmp / "run", kernel, toml)
        assert code == 4 and rr["verdict"] == "crash", (kernel, rr["reason"])
        assert rr["vm"]["running"] == f["name"], rr["vm"]  # the guest died in the repro's step
    # Debian's stock kernel has the guard page: the report names the module's recursion.
    assert "stack guard page" in rr["reason"], rr["reason"]
    assert any("myNetLink_recv_msg" in line for sp in rr["splats"] for line in sp.get("module_frames") or [])


def test_a_bug_behind_a_magic_is_found_with_kcovs_feedback_and_not_without(debug_kernel, own_tmp):
    project = own_tmp / "fuzz_targets"
    shutil.copytree(FIXTURES / "fuzz_targets", project)
    budget = "600"
    # With feedback, from the declarations inferred from the module's sources (no [fuzz]).
    code, on = fuzz(own_tmp / "on", "--project", str(project / "inferred.toml"), "--corpus", str(own_tmp / "c-on"),
                    "--duration", budget, "--max-findings", "1", "--minimize-rounds", "1")
    assert code == 4, on["reason"]
    assert on["declared"] is False and on["targets"] == ["netlink:31", "chardev:/dev/fuzz_targets",
                                                          "file:/proc/fuzz_targets"]
    (f,) = on["findings"]
    assert f["confirmed"] and f["rule"] == "ubsan" and "array-index-out-of-bounds" in f["consequence"], f
    src = (project / "module" / "fuzz_targets.c").read_text().splitlines()
    assert f["where"] and "table[p[4]]++" in src[int(f["where"].split(":")[1]) - 1], f["where"]
    # Every interface was reached: lines of the ioctl and of the /proc write were covered.
    lines = {x["file"]: x for x in on["coverage"]["lines"]["files"]}["fuzz_targets.c"]["lines_covered"]
    body = {name: i + 1 for i, text in enumerate(src) for name in ("ft_ioctl(", "ft_proc_write(") if name in text}
    assert any(body["ft_ioctl("] < n < body["ft_ioctl("] + 20 for n in lines), lines
    assert any(body["ft_proc_write("] < n < body["ft_proc_write("] + 20 for n in lines), lines
    # Without feedback, the same time, the declared interfaces: blind mutations of the seeds.
    code, off = fuzz(own_tmp / "off", "--project", str(project / "harness.toml"), "--corpus",
                     str(own_tmp / "c-off"), "--duration", budget, "--no-coverage")
    assert code == 0, off["reason"]
    assert off["findings"] == [] and off["coverage"]["pcs"] == 0
    assert off["execs"] >= 200 and off["guests"] == 1  # it ran the whole time, and the guest never died

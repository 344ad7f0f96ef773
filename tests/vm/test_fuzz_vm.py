"""`harness fuzz` on the debug kernel (debian-src:trixie+debug: kcov, KASAN, UBSAN), for real.

- the blog's unmodified module, declared by its netlink protocol alone, from an empty corpus: the
  pid-0 crash is found and confirmed in a fresh guest (`harness run` of the repro as a step);
- a repro the fuzzer wrote (tests/data/fuzz_blog/repro.py), added to the project as the finding
  says, makes `harness run` a crash on the debug kernel and on Debian's stock bookworm kernel;
- a fixture with a bug behind a four-byte magic compared byte by byte (tests/fixtures/fuzz_targets):
  found with kcov's feedback; fuzzed blindly for more executions than the feedback needed, not.

Boots of the debug kernel under TCG take 1.5-3.5 minutes each on this loaded machine: each test
boots two or three guests (4-8 minutes). Minimization is left to the benchmark (bench/fuzz.py).
Each test copies its fixture directory: fuzzing writes the repro and the corpus into the project.
"""

import json
import shutil
from pathlib import Path

import pytest

from harness import cli
from harness.run import results_id

from conftest import DATA, REPO, built_kernel_or_skip

pytestmark = [pytest.mark.vm, pytest.mark.fuzz]

SPEC = "debian-src:trixie+debug"
FIXTURES = REPO / "tests" / "fixtures"
FEEDBACK_EXECS = 28  # executions the feedback needed to reach the magic's bug (tests/data/fuzz_magic)


@pytest.fixture(scope="module")
def debug_kernel():
    return built_kernel_or_skip(SPEC, "HARNESS_SANITIZERS", "test-debug")


def fuzz(results: Path, *args: str) -> tuple[int, dict]:
    code = cli.main(["fuzz", "--kernel", SPEC, "--results", str(results), "--cpus", "1", *args])
    return code, json.loads((results / "fuzz.json").read_text())


def run(results: Path, kernel: str, project: Path, timeout: str) -> tuple[int, dict]:
    code = cli.main(["run", "--kernel", kernel, "--project", str(project), "--results", str(results),
                     "--timeout", timeout, "--cpus", "1"])
    return code, json.loads((results / results_id(kernel) / "result.json").read_text())


def test_the_blogs_pid_0_crash_is_found_from_an_empty_corpus_and_confirmed(debug_kernel, own_tmp):
    project = own_tmp / "netlink"
    shutil.copytree(FIXTURES / "netlink", project)
    code, res = fuzz(own_tmp / "fuzz", "--project", str(project / "blog_fuzz.toml"), "--corpus",
                     str(own_tmp / "corpus"), "--duration", "900", "--max-findings", "1", "--minimize-rounds", "0")
    assert code == 4, res["reason"]
    assert res["declared"] and res["targets"] == ["netlink:30"] and res["coverage"]["pcs"] > 0
    (f,) = res["findings"]
    assert f["confirmed"] and res["first_finding_at"] < 600, f
    # The debug kernel has no stack guard page: the overrun stack is reported by KASAN, from a timer
    # interrupt, whose trace shows the module's recursion (the reply to port 0 is its own input) when
    # the task's stack could still be walked.
    assert f["rule"] == "kasan" and f["function"] in (None, "myNetLink_recv_msg"), f
    repro = (project / f["repro"]).read_text()
    assert "pid=0x0 (the kernel's own socket)" in repro and f["step"] in repro.replace("#   ", "")
    # The confirmation was `harness run` of that input as a step, in a fresh guest: it died in the step.
    confirmed = json.loads((Path(f["runs"][0]) / results_id(SPEC) / "result.json").read_text())
    assert confirmed["verdict"] == "crash" and confirmed["vm"]["running"] == "case-1", confirmed["reason"]
    assert (project / "fuzz" / "corpus").exists() is False and any((own_tmp / "corpus").iterdir())


@pytest.mark.parametrize("kernel, timeout", [("debian:bookworm", "300"), (SPEC, "600")])
def test_a_repro_added_as_a_step_makes_harness_run_a_crash(debug_kernel, own_tmp, kernel, timeout):
    project = own_tmp / "netlink"
    shutil.copytree(FIXTURES / "netlink", project)
    (project / "repro").mkdir()
    shutil.copy(DATA / "fuzz_blog" / "repro.py", project / "repro" / "netlink30-kasan-1f8f34.py")
    step = '[[step]]\nname = "netlink30-kasan-1f8f34"\nrun = ["python3", "/project/repro/netlink30-kasan-1f8f34.py"]\n'
    assert step in (DATA / "fuzz_blog" / "repro.py").read_text().replace("#   ", "")  # as the finding said
    toml = project / "blog_repro.toml"
    toml.write_text((project / "blog_fuzz.toml").read_text() + "\n" + step + "timeout = 60\n")
    code, rr = run(own_tmp / "run", kernel, toml, timeout)
    assert code == 4 and rr["verdict"] == "crash", rr["reason"]
    assert rr["vm"]["running"] == "netlink30-kasan-1f8f34", rr["vm"]  # the guest died in the repro's step
    if kernel == "debian:bookworm":  # the stock kernel has the guard page: the report names the recursion
        assert "stack guard page" in rr["reason"], rr["reason"]
        assert any("myNetLink_recv_msg" in line for sp in rr["splats"] for line in sp.get("module_frames") or [])


def test_a_bug_behind_a_magic_is_found_with_kcovs_feedback(debug_kernel, own_tmp):
    project = own_tmp / "fuzz_targets"
    shutil.copytree(FIXTURES / "fuzz_targets", project)
    # From the declarations inferred from the module's sources (inferred.toml has no [fuzz]).
    code, on = fuzz(own_tmp / "on", "--project", str(project / "inferred.toml"), "--corpus", str(own_tmp / "c"),
                    "--duration", "900", "--max-findings", "1", "--minimize-rounds", "0")
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


def test_the_same_bug_is_not_found_blindly_in_more_executions_than_the_feedback_needed(debug_kernel, own_tmp):
    project = own_tmp / "fuzz_targets"
    shutil.copytree(FIXTURES / "fuzz_targets", project)
    code, off = fuzz(own_tmp / "off", "--project", str(project / "harness.toml"), "--corpus", str(own_tmp / "c"),
                     "--duration", "300", "--no-coverage")
    assert code == 0, off["reason"]
    assert off["findings"] == [] and off["coverage"]["pcs"] == 0 and off["guests"] == 1
    assert off["execs"] >= 2 * FEEDBACK_EXECS, off["execs"]  # it ran, and the guest never died

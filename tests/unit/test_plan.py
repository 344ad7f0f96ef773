"""The order of a run's guest steps, from a project's description."""

from pathlib import Path

from harness.guest.plan import build_plan, ko_paths, kunit_steps
from harness.project import parse_project


def project(tmp_path: Path, module: dict, steps=()):
    (tmp_path / "src").mkdir(exist_ok=True)
    return parse_project({"module": {"source": "src", "trail": "t.toml", **module}, "step": list(steps)},
                         tmp_path, "harness.toml")


def test_one_module_keeps_the_plain_step_names(tmp_path):
    p = project(tmp_path, {"name": "netlink_kernel"}, [{"name": "client", "run": ["c"]}])
    plan = build_plan(p, ko_paths(p, {"netlink_kernel": "netlink_kernel.ko"}), 60)
    assert [(s.name, s.argv) for s in plan.steps] == [
        ("insmod", ("insmod", "/harness/build/netlink_kernel.ko")), ("client", ("c",)),
        ("rmmod", ("rmmod", "netlink_kernel"))]
    assert plan.steps[0].required and plan.steps[-1].always and not plan.steps[1].required


def test_dependencies_first_modules_in_order_unloaded_in_reverse_with_their_parameters(tmp_path):
    p = project(tmp_path, {"requires": ["videodev"], "load": [
        {"name": "vinput"}, {"name": "hello-5", "params": ["myint=7"]}]}, [
        {"name": "after", "run": ["a"], "when": "after"}, {"name": "use", "run": ["u"]},
        {"name": "first", "run": ["f"], "when": "before"}])
    plan = build_plan(p, ko_paths(p, {"vinput": "vinput.ko", "hello-5": "sub/hello-5.ko"}), 30,
                      guest_build=(["make", "modules"], 600))
    assert [s.name for s in plan.steps] == ["build", "first", "modprobe videodev", "insmod vinput",
                                            "insmod hello-5", "use", "rmmod hello-5", "rmmod vinput", "after"]
    by = {s.name: s for s in plan.steps}
    assert by["insmod hello-5"].argv == ("insmod", "/harness/build/sub/hello-5.ko", "myint=7")
    assert by["rmmod hello-5"].argv == ("rmmod", "hello_5")
    assert all(by[n].required for n in ("build", "modprobe videodev", "insmod vinput", "insmod hello-5"))
    assert by["rmmod vinput"].always and by["modprobe videodev"].timeout == 30


def test_modules_built_in_the_guest_are_looked_for_at_the_top_of_the_build_directory(tmp_path):
    p = project(tmp_path, {"name": "m"})
    assert ko_paths(p, None) == {"m": "/harness/build/m.ko"}


def test_each_plan_gets_its_own_run_id(tmp_path):
    p = project(tmp_path, {"name": "m"})
    assert build_plan(p, ko_paths(p, None), 60).run_id != build_plan(p, ko_paths(p, None), 60).run_id


def test_kunit_modules_load_after_the_loaded_steps_and_unload_before_the_module(tmp_path):
    (tmp_path / "src").mkdir()
    p = parse_project({"module": {"source": "src", "trail": "t.toml", "name": "m"},
                       "step": [{"name": "use", "run": ["u"]}, {"name": "late", "run": ["l"], "when": "after"}],
                       "kunit": {"modules": ["m_test"], "timeout": 120}}, tmp_path, "harness.toml")
    kos = ko_paths(p, {"m": "m.ko", "m_test": "tests/m_test.ko"}, ["m_test"])
    plan = build_plan(p, kos, 30, kunit=["m_test"], coverage=True)
    assert [s.name for s in plan.steps] == ["insmod", "use", "kunit m_test", "rmmod m_test", "rmmod", "late",
                                            "coverage"]
    by = {s.name: s for s in plan.steps}
    assert by["kunit m_test"].argv == ("insmod", "/harness/build/tests/m_test.ko")
    assert by["kunit m_test"].timeout == 120 and not by["kunit m_test"].required
    assert by["rmmod m_test"].always and by["coverage"].always
    assert "/sys/kernel/debug/gcov" in by["coverage"].argv[2] and "/harness/gcov/" in by["coverage"].argv[2]
    assert [plan.steps[i].name for i in kunit_steps(plan)] == ["kunit m_test"]


def test_without_kunit_or_gcov_in_the_kernel_the_plan_has_neither(tmp_path):
    (tmp_path / "src").mkdir()
    p = parse_project({"module": {"source": "src", "trail": "t.toml", "name": "m"},
                       "kunit": {"modules": ["m_test"]}}, tmp_path, "harness.toml")
    plan = build_plan(p, ko_paths(p, None), 30)
    assert [s.name for s in plan.steps] == ["insmod", "rmmod"] and kunit_steps(plan) == ()

"""The order of a run's guest steps, from a project's description."""

from pathlib import Path

from harness.guest.plan import build_plan, ko_paths
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

"""The pytest plugin judged by the same rules as harness run, in child pytest sessions that boot real
guests: a splat fails the test it happened in (also in its teardown's rmmod), and a guest that dies
fails only the test that was running."""

import pytest

from conftest import REPO

pytestmark = pytest.mark.vm
pytest_plugins = ["pytester"]

SPLATS = '''
def test_a_warning_in_the_call_fails_it(guest, guest_run):
    ko = guest.ko
    status, out, err = guest_run(f"insmod {ko} warn_on_exit=0 && echo warn > /proc/splat_on_demand"
                                 " && rmmod splat_on_demand")
    assert status == 0, err  # everything worked: only the kernel log says otherwise


def test_a_warning_in_module_exit_fails_at_teardown(module_loaded):
    pass


def test_a_clean_test_after_them_passes(guest_run):
    assert guest_run("true")[0] == 0
'''

DEATH = '''
def test_this_one_panics_the_guest(module_loaded, guest_run):
    guest_run("python3 /project/nl_client.py --pid 0", timeout=120)


def test_the_next_one_gets_a_new_guest(guest_run):
    status, out, _ = guest_run("cat /proc/uptime")
    assert status == 0 and float(out.split()[0]) < 600
'''


def session(pytester: pytest.Pytester, project, tests: str, results) -> pytest.RunResult:
    pytester.makepyfile(tests)
    # --option=value: a separate path argument would count in pytest's choice of rootdir
    return pytester.runpytest_subprocess("-v", "-p", "no:cacheprovider", f"--harness-project={project}",
                                         f"--harness-results={results}", timeout=1200)


def test_splats_fail_the_test_they_happen_in_even_in_teardown(pytester, tmp_path, host_cache):
    r = session(pytester, REPO / "tests" / "fixtures" / "splat_on_demand", SPLATS, tmp_path / "r")
    r.assert_outcomes(passed=2, failed=1, errors=1)
    r.stdout.fnmatch_lines(["*test_a_warning_in_the_call_fails_it*FAILED*",
                            "*test_a_warning_in_module_exit_fails_at_teardown*ERROR*",
                            "*test_a_clean_test_after_them_passes*PASSED*"])
    r.stdout.fnmatch_lines(["*kernel splat during the test (call)*", "*WARNING: CPU*"])
    r.stdout.fnmatch_lines(["*kernel splat*(teardown)*", "*WARNING: CPU*"])


def test_a_dead_guest_fails_only_the_running_test(pytester, tmp_path, host_cache):
    """With --harness-spare the next test goes on, at once, on the spare booted beside the first guest
    (and another spare boots beside it). Without the option the next test boots a new guest through
    the same ensure(): one child session, not two, because each costs minutes of boots under TCG."""
    project = REPO / "tests" / "fixtures" / "netlink" / "blog_unsafe.toml"
    pytester.makepyfile(DEATH)
    r = pytester.runpytest_subprocess("-v", "-p", "no:cacheprovider", f"--harness-project={project}",
                                      f"--harness-results={tmp_path / 'r'}", "--harness-spare",
                                      timeout=1200)
    r.assert_outcomes(passed=1, failed=1)
    r.stdout.fnmatch_lines(["*test_this_one_panics_the_guest*FAILED*", "*test_the_next_one_gets_a_new_guest*PASSED*"])
    r.stdout.fnmatch_lines(["*the guest died during the test*"])
    boots = sorted((tmp_path / "r" / "debian-bookworm").glob("session-console-*.log"))
    # The first guest, its spare (the second test ran there, at once), and the spare booted beside that.
    assert len(boots) == 3, boots

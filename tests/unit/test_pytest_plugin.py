"""The pytest plugin's options and parametrisation, run in a child pytest (no VM boots)."""

import pytest

pytest_plugins = ["pytester"]

TEST = """
def test_kernel(harness_kernel):
    assert harness_kernel.startswith("debian:")
"""


def test_default_kernel(pytester: pytest.Pytester):
    pytester.makepyfile(TEST)
    r = pytester.runpytest_subprocess("-v")
    r.assert_outcomes(passed=1)
    r.stdout.fnmatch_lines(["*test_kernel?debian:bookworm? PASSED*"])


def test_kernel_option_repeats_the_tests(pytester: pytest.Pytester):
    pytester.makepyfile(TEST)
    r = pytester.runpytest_subprocess("-v", "--harness-kernel", "debian:bookworm", "--harness-kernel", "debian:trixie")
    r.assert_outcomes(passed=2)
    r.stdout.fnmatch_lines(["*debian:bookworm*PASSED*", "*debian:trixie*PASSED*"])


def test_ini_and_environment_fallbacks(pytester: pytest.Pytester, monkeypatch):
    pytester.makepyfile(TEST)
    pytester.makeini("[pytest]\nharness_kernels = debian:sid\n")
    pytester.runpytest_subprocess("-v").stdout.fnmatch_lines(["*debian:sid*PASSED*"])
    pytester.makeini("[pytest]\n")
    monkeypatch.setenv("HARNESS_KERNELS", "debian:bullseye,debian:trixie")
    pytester.runpytest_subprocess("-v").assert_outcomes(passed=2)


def test_bad_kernel_spec_is_a_collection_error_naming_the_valid_forms(pytester: pytest.Pytester):
    pytester.makepyfile(TEST)
    r = pytester.runpytest_subprocess("--harness-kernel", "debian:bookwurm")
    assert r.ret != 0
    r.stdout.fnmatch_lines(["*unknown Debian suite 'bookwurm'*"])


def test_options_are_in_help(pytester: pytest.Pytester):
    r = pytester.runpytest_subprocess("--help")
    r.stdout.fnmatch_lines(["*kmod-harness*", "*--harness-kernel=SPEC*", "*--harness-results=DIR*"])


def test_a_session_that_boots_no_guest_keeps_its_own_sigterm_and_its_options(pytester):
    """pytest11 loads the plugin into every session where kmod-harness is installed: such a session,
    using none of its fixtures, keeps SIGTERM as it was and is free to have its own --kernel."""
    pytester.makeconftest("def pytest_addoption(parser):\n    parser.addoption('--kernel')\n")
    pytester.makepyfile("import signal\n\ndef test_x(request):\n"
                        "    assert request.config.getoption('kernel') == 'mine'\n"
                        "    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL\n")
    r = pytester.runpytest_subprocess("--kernel", "mine", "-p", "no:cacheprovider")
    r.assert_outcomes(passed=1)

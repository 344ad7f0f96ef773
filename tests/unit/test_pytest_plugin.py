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
    r = pytester.runpytest_subprocess("-v", "--kernel", "debian:bookworm", "--kernel", "debian:trixie")
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
    r = pytester.runpytest_subprocess("--kernel", "debian:bookwurm")
    assert r.ret != 0
    r.stdout.fnmatch_lines(["*unknown Debian suite 'bookwurm'*"])


def test_options_are_in_help(pytester: pytest.Pytester):
    r = pytester.runpytest_subprocess("--help")
    r.stdout.fnmatch_lines(["*kmod-harness*", "*--kernel=SPEC*", "*--harness-results=DIR*"])

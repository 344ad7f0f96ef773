"""In CI a skipped test is a failure unless its reason is on tests/allowed-skips.txt (no hollow greens)."""

import pytest

from conftest import REPO

pytest_plugins = ["pytester"]

TESTS = '''
import pytest

def test_listed():
    pytest.skip("a/b: GitHub is unreachable and HARNESS_TEST_MIRROR is not set (x)")

def test_unlisted():
    pytest.skip("the sanitizer kernel is not built")

def test_runs():
    assert True
'''


@pytest.fixture
def project(pytester: pytest.Pytester) -> pytest.Pytester:
    pytester.makeconftest((REPO / "tests" / "conftest.py").read_text())
    (pytester.path / "allowed-skips.txt").write_text((REPO / "tests" / "allowed-skips.txt").read_text())
    pytester.makepyfile(TESTS)
    return pytester


@pytest.mark.parametrize("ci", ["true", "1"])
def test_in_ci_only_listed_skips_pass(project, monkeypatch, ci):
    monkeypatch.setenv("CI", ci)
    r = project.runpytest_subprocess("-rA")
    r.assert_outcomes(passed=1, skipped=1, failed=1)
    r.stdout.fnmatch_lines(["*test_unlisted*", "*not listed in allowed-skips.txt*sanitizer kernel is not built*"])


def test_outside_ci_a_skip_is_a_skip(project, monkeypatch):
    monkeypatch.delenv("CI", raising=False)
    project.runpytest_subprocess().assert_outcomes(passed=1, skipped=2)

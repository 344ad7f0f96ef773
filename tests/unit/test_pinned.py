"""tests/pinned.py: other projects' code at a pinned commit, from GitHub or from HARNESS_TEST_MIRROR,
cloned once into the harness cache. Here the "foreign" repository is one made on the spot."""

import subprocess
from pathlib import Path

import pytest

import pinned
from conftest import allowed_skips

AUTHOR = ["-c", "user.name=t", "-c", "user.email=t@example.org"]


def commit(work: Path, text: str) -> str:
    """A commit in the repository at ``work`` (made when missing) setting sub/module.c to ``text``."""
    if not work.is_dir():
        subprocess.run(["git", "init", "-q", str(work)], check=True)
    (work / "sub").mkdir(exist_ok=True)
    (work / "sub" / "module.c").write_text(text)
    subprocess.run(["git", "-C", str(work), "add", "-A"], check=True)
    subprocess.run(["git", "-C", str(work), *AUTHOR, "commit", "-qm", text], check=True)
    return subprocess.run(["git", "-C", str(work), "rev-parse", "HEAD"], capture_output=True, text=True,
                          check=True).stdout.strip()


@pytest.fixture
def env(tmp_path, monkeypatch):
    monkeypatch.setenv("HARNESS_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("HARNESS_TEST_MIRROR", str(tmp_path / "mirror"))
    return tmp_path


@pytest.mark.parametrize("layout", ["repo/.git", "repo-bare", "bare"])
def test_a_pinned_commit_comes_from_the_mirror_in_each_layout(env, layout):
    top = env / "mirror" / "someone+mod"
    first = commit(top / "repo" if layout == "repo/.git" else env / "work", "one\n")
    if layout != "repo/.git":
        subprocess.run(["git", "clone", "-q", "--bare", str(env / "work"),
                        str(top / "repo" if layout == "repo-bare" else top)], check=True)
    out = pinned.checkout(pinned.Pin("someone/mod", first, "sub"), env / "t")
    assert out == env / "t" / "sub" and (out / "module.c").read_text() == "one\n"
    assert (env / "cache" / "test-repos" / "someone+mod" / "HEAD").is_file()


def test_the_cached_clone_serves_without_the_mirror_and_takes_new_commits_from_it(env, monkeypatch):
    work = env / "mirror" / "someone+mod" / "repo"
    first = commit(work, "one\n")
    pinned.checkout(pinned.Pin("someone/mod", first), env / "a")
    monkeypatch.setenv("HARNESS_TEST_MIRROR", str(env / "gone"))
    assert (pinned.checkout(pinned.Pin("someone/mod", first), env / "b") / "sub" / "module.c").read_text() == "one\n"
    monkeypatch.setenv("HARNESS_TEST_MIRROR", str(env / "mirror"))
    second = commit(work, "two\n")
    assert not pinned.has_commit(env / "cache" / "test-repos" / "someone+mod", second)
    assert (pinned.checkout(pinned.Pin("someone/mod", second), env / "c") / "sub" / "module.c").read_text() == "two\n"


def test_a_repository_missing_from_the_mirror_is_a_skip_naming_the_mirror(env):
    (env / "mirror").mkdir()
    with pytest.raises(pytest.skip.Exception, match=r"someone/mod: not in HARNESS_TEST_MIRROR .*no someone\+mod/"):
        pinned.checkout(pinned.Pin("someone/mod", "0" * 40), env / "t")
    assert not (env / "cache" / "test-repos" / "someone+mod").exists()


def test_a_commit_missing_from_the_mirror_is_a_skip_naming_the_commit(env):
    commit(env / "mirror" / "someone+mod" / "repo", "one\n")
    with pytest.raises(pytest.skip.Exception, match=f"commit {'1' * 40} is not in HARNESS_TEST_MIRROR"):
        pinned.checkout(pinned.Pin("someone/mod", "1" * 40), env / "t")


def test_without_a_mirror_an_unreachable_github_is_a_skip_saying_what_to_set(env, monkeypatch):
    monkeypatch.delenv("HARNESS_TEST_MIRROR")
    monkeypatch.setattr(pinned.Pin, "url", property(lambda self: "https://github.invalid/x/y.git"))
    with pytest.raises(pytest.skip.Exception) as e:
        pinned.checkout(pinned.Pin("someone/mod", "0" * 40), env / "t")
    assert pinned.SKIP_OFFLINE in str(e.value) and "set HARNESS_TEST_MIRROR" in str(e.value)
    assert [p.name for p in (env / "cache" / "test-repos").iterdir()] == [".someone+mod.lock"]  # nothing half-made


def test_ci_accepts_the_offline_skip_and_not_an_incomplete_mirror():
    assert any(pinned.SKIP_OFFLINE in reason or reason in pinned.SKIP_OFFLINE for reason in allowed_skips())
    assert not any(reason in pinned.SKIP_NOT_IN_MIRROR for reason in allowed_skips())

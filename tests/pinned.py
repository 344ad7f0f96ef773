"""Other projects' code at pinned commits, copied into a test's own directory at test time.

Nothing of theirs is committed here. A repository is cloned once (bare) into the harness cache,
``$HARNESS_CACHE/test-repos/OWNER+NAME``, from GitHub, or from ``$HARNESS_TEST_MIRROR`` when that
is set: a directory of repositories named ``OWNER+NAME``, each a bare repository or one holding
its git directory at ``repo/`` (bare) or ``repo/.git``, for machines without network access. A
test then gets ``git archive`` of the pinned commit. Where neither source has the commit, the
test is skipped with a reason that names the source that was missing and what to set.
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import pytest

from harness.cache import cache_dir
from harness.locks import atomic_dir, locked

MIRROR_ENV = "HARNESS_TEST_MIRROR"
# Skip reasons (tests/allowed-skips.txt lists the first: a machine with neither source cannot run these)
SKIP_OFFLINE = "GitHub is unreachable and HARNESS_TEST_MIRROR is not set"
SKIP_NOT_IN_MIRROR = "not in HARNESS_TEST_MIRROR"
CLONE_TIMEOUT = 600


@dataclass(frozen=True)
class Pin:
    """A public repository at one commit; ``subdir`` is the part a test takes ('' for all)."""
    repo: str  # OWNER/NAME on GitHub
    commit: str
    subdir: str = ""

    @property
    def slug(self) -> str:
        return self.repo.replace("/", "+")

    @property
    def url(self) -> str:
        return f"https://github.com/{self.repo}.git"


def git(*argv: str, git_dir: Optional[Path] = None, timeout: float = 120) -> subprocess.CompletedProcess:
    """git, never prompting; a transfer slower than 1 KB/s for 30 s, or past ``timeout``, fails."""
    pre = ["git", *(["--git-dir", str(git_dir)] if git_dir else []), "-c", "http.lowSpeedLimit=1000",
           "-c", "http.lowSpeedTime=30"]
    env = {**os.environ, "GIT_TERMINAL_PROMPT": "0"}
    try:
        return subprocess.run([*pre, *argv], capture_output=True, text=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired:
        return subprocess.CompletedProcess(argv, 124, "", f"no answer within {timeout:.0f} s")


def has_commit(git_dir: Path, commit: str) -> bool:
    return git_dir.is_dir() and git("cat-file", "-e", f"{commit}^{{commit}}", git_dir=git_dir).returncode == 0


def mirror_git_dir(mirror: Path, pin: Pin) -> Optional[Path]:
    """The repository's git directory in the mirror, in any of the layouts the module names."""
    top = mirror / pin.slug
    for d in (top / "repo" / ".git", top / "repo", top, mirror / f"{pin.slug}.git"):
        if (d / "HEAD").is_file() and (d / "objects").is_dir():
            return d
    return None


def source_of(pin: Pin) -> str:
    """Where to clone ``pin`` from: the mirror's repository when HARNESS_TEST_MIRROR is set
    (skipping when it lacks the commit), else GitHub."""
    mirror = os.environ.get(MIRROR_ENV)
    if not mirror:
        return pin.url
    found = mirror_git_dir(Path(mirror), pin)
    if found is None:
        pytest.skip(f"{pin.repo}: {SKIP_NOT_IN_MIRROR} ({mirror} has no {pin.slug}/ repository); "
                    f"add it there, or unset {MIRROR_ENV} to clone from GitHub")
    if not has_commit(found, pin.commit):
        pytest.skip(f"{pin.repo}: commit {pin.commit} is {SKIP_NOT_IN_MIRROR} ({found}); "
                    "update that copy of the repository")
    return found.resolve().as_uri()  # file://: a real transfer, so a shallow copy clones too


def clone_failed(pin: Pin, source: str, err: str) -> None:
    """Skip when GitHub could not be reached; fail on anything else (a repository gone, a broken mirror)."""
    last = (err.strip().splitlines() or ["(no message)"])[-1]
    if source == pin.url and "not found" not in last.lower():
        pytest.skip(f"{pin.repo}: {SKIP_OFFLINE} (git clone {source}: {last}); set {MIRROR_ENV} to a "
                    "directory of repositories named OWNER+NAME to run these tests offline")
    pytest.fail(f"{pin.repo}: cloning {source} failed: {last}")


class _Failed(Exception):
    def __init__(self, proc: subprocess.CompletedProcess):
        super().__init__(proc.stderr)
        self.proc = proc


def fresh_clone(dest: Path, source: str) -> subprocess.CompletedProcess:
    """A bare clone made beside ``dest`` and renamed into place: whole or absent."""
    try:
        with atomic_dir(dest) as tmp:
            p = git("clone", "--quiet", "--bare", source, str(tmp), timeout=CLONE_TIMEOUT)
            if p.returncode != 0:
                raise _Failed(p)
    except _Failed as e:
        return e.proc
    return p


def fetch_into(dest: Path, source: str, commit: str) -> subprocess.CompletedProcess:
    """Bring the branches and tags of ``source`` (and ``commit`` if still missing) into ``dest``."""
    p = git("fetch", "--quiet", source, "+refs/heads/*:refs/heads/*", "+refs/tags/*:refs/tags/*",
            git_dir=dest, timeout=CLONE_TIMEOUT)
    if p.returncode == 0 and not has_commit(dest, commit):
        p = git("fetch", "--quiet", source, commit, git_dir=dest, timeout=CLONE_TIMEOUT)
    return p


def cached_clone(pin: Pin) -> Path:
    """The bare clone in the harness cache, holding ``pin.commit`` (cloned or fetched under a lock)."""
    dest = cache_dir() / "test-repos" / pin.slug
    with locked(dest.parent / f".{pin.slug}.lock"):
        if has_commit(dest, pin.commit):
            return dest
        source = source_of(pin)
        p = fetch_into(dest, source, pin.commit) if dest.is_dir() else fresh_clone(dest, source)
        if p.returncode != 0:
            clone_failed(pin, source, p.stderr)
        if not has_commit(dest, pin.commit):
            pytest.fail(f"{pin.repo}: {source} has no commit {pin.commit}")
        return dest


def checkout(pin: Pin, dest: Path) -> Path:
    """The files of ``pin`` (its ``subdir`` only) under ``dest``; returns where they are."""
    git_dir = cached_clone(pin)
    dest.mkdir(parents=True)
    archive = subprocess.run(["git", "--git-dir", str(git_dir), "archive", "--format=tar", pin.commit,
                              *([pin.subdir] if pin.subdir else [])], capture_output=True, check=True)
    subprocess.run(["tar", "-x", "-C", str(dest)], input=archive.stdout, check=True)
    return dest / pin.subdir if pin.subdir else dest

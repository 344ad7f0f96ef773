"""What a run may read and write: the build input inside the project and nothing else, the
results directory its own (locked, cleared without following links), the cache checked."""

import errno
import os
import socket
from pathlib import Path

import pytest

from harness import run as run_mod
from harness import scaffold
from harness.cache import usable_cache
from harness.errors import UsageError
from harness.kernel import sources


def tree(tmp_path: Path) -> tuple[Path, Path]:
    project = tmp_path / "project"
    src = project / "src"
    src.mkdir(parents=True)
    (src / "m.c").write_text("int x;\n")
    (src / "Kbuild").write_text("obj-m += m.o\n")
    return project, src


def test_the_build_input_is_the_sources_only(tmp_path):
    project, _ = tree(tmp_path)
    (project / "harness.toml").write_text("x")
    (project / "trail.toml").write_text("x")
    (project / "results" / "debian-bookworm").mkdir(parents=True)
    (project / "results" / "debian-bookworm" / "console.log").write_text("a previous run's")
    (project / "m.o").write_text("a build product")
    (project / "m.c").write_text("int y;\n")
    files = sources.source_files(project, project, (project / "results", project / "harness.toml",
                                                    project / "trail.toml"))
    assert [rel for rel, _ in files] == ["m.c", "src/Kbuild", "src/m.c"]


def test_a_link_inside_the_project_is_followed_and_one_leaving_it_is_named(tmp_path):
    project, src = tree(tmp_path)
    (project / "common.h").write_text("#define X 1\n")
    (src / "common.h").symlink_to("../common.h")
    assert dict(sources.source_files(src, project))["common.h"] == project / "common.h"
    (tmp_path / "secret").write_text("host file")
    (src / "leak").symlink_to(tmp_path / "secret")
    with pytest.raises(UsageError, match=r"leak in the module's sources leads out of the project, to .*secret"):
        sources.source_files(src, project)
    (src / "leak").unlink()
    (src / "etc").symlink_to("/etc")
    with pytest.raises(UsageError, match="leads out of the project"):
        sources.source_files(src, project)


def test_a_fifo_a_socket_or_a_device_is_refused_by_name(tmp_path):
    project, src = tree(tmp_path)
    os.mkfifo(src / "pipe")
    with pytest.raises(UsageError, match=r"pipe in the module's sources is a FIFO"):
        sources.source_files(src, project)
    (src / "pipe").unlink()
    s = socket.socket(socket.AF_UNIX)
    # bound by a relative name: sun_path holds 108 bytes, and a temporary directory nested under a CI
    # job's own can be longer than that
    here = os.getcwd()
    os.chdir(src)
    try:
        s.bind("sock")
    finally:
        os.chdir(here)
    try:
        with pytest.raises(UsageError, match=r"sock in the module's sources is a socket"):
            sources.source_files(src, project)
    finally:
        s.close()
        (src / "sock").unlink()
    (src / "zero").symlink_to("/dev/zero")  # a device outside: the link leaves the project first
    with pytest.raises(UsageError, match="leads out of the project"):
        sources.source_files(src, project)


def test_a_link_loop_is_read_once(tmp_path):
    project, src = tree(tmp_path)
    (src / "again").symlink_to(".")
    assert [rel for rel, _ in sources.source_files(src, project)] == ["Kbuild", "m.c"]


def test_clearing_a_previous_run_never_follows_a_link(tmp_path):
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (outside / "precious").write_text("keep")
    out = tmp_path / "results" / "debian-bookworm"
    out.mkdir(parents=True)
    (out / "modules").symlink_to(outside)
    (out / "console.log").write_text("old")
    run_mod.prepare_results(out)
    assert (outside / "precious").read_text() == "keep"
    assert not (out / "modules").exists() and not (out / "console.log").exists()


def test_a_second_run_in_the_same_results_directory_is_refused_naming_the_first(tmp_path):
    out = tmp_path / "r" / "debian-bookworm"
    out.mkdir(parents=True)
    with run_mod.results_lock(out):
        with pytest.raises(UsageError, match=rf"{out} is in use by harness run pid {os.getpid()}"):
            with run_mod.results_lock(out):
                pass
    with run_mod.results_lock(out):  # released: the next one may
        pass


def test_results_on_a_full_disk_are_a_usage_error_before_anything_runs(tmp_path, monkeypatch):
    real = open

    def full(path, *a, **kw):
        if ".kmod-harness-write-test" in str(path):
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        return real(path, *a, **kw)

    monkeypatch.setattr("builtins.open", full)
    with pytest.raises(UsageError, match="cannot write results to .*: No space left on device"):
        run_mod.writable_dir(tmp_path / "r")


def test_a_cache_that_is_a_file_is_named(tmp_path, monkeypatch):
    (tmp_path / "c").write_text("")
    monkeypatch.setenv("HARNESS_CACHE", str(tmp_path / "c"))
    with pytest.raises(UsageError, match=r"HARNESS_CACHE .*/c is not a directory"):
        usable_cache()
    assert usable_cache(tmp_path / "d") == tmp_path / "d"


def test_init_in_a_directory_it_cannot_write_says_so(tmp_path, monkeypatch):
    (tmp_path / "Kbuild").write_text("obj-m += m.o\n")

    def refuse(path, text):
        raise PermissionError(errno.EROFS, "Read-only file system", str(path))

    monkeypatch.setattr(scaffold, "write_atomic", refuse)
    with pytest.raises(UsageError, match=r"cannot write .*harness.toml: Read-only file system"):
        scaffold.init(tmp_path)


def test_results_directory_names_are_one_path_component():
    for text in ("..", "../", "../../etc", "/", "a/../b", "." * 10, "x" * 5000):
        name = run_mod.results_id(text)
        assert "/" not in name and ".." not in name and not name.startswith(".") and len(name) <= 100, name
    assert run_mod.results_id("debian:bookworm@6.1.0-56") == "debian-bookworm-6.1.0-56"


def test_a_leftover_with_mounts_is_removed_without_entering_them(tmp_path):
    """A harness killed while mmdebstrap ran (before roots were made in a mount namespace of their
    own) left proc, sys and dev mounted in the root's temporary directory: removing it unmounts them
    first and never walks into one it could not unmount."""
    from harness.locks import mounts_under, remove_tree

    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root (CI and `make test` run as root)")
    left = tmp_path / ".tmp-root-abc"
    (left / "proc").mkdir(parents=True)
    (left / "etc").mkdir()
    (left / "etc" / "hostname").write_text("x")
    assert os.system(f"mount -t tmpfs none {left / 'proc'}") == 0
    (left / "proc" / "inside").write_text("a file of the mounted filesystem")
    assert mounts_under(left) == [left / "proc"]
    assert remove_tree(left) == []
    assert not left.exists() and mounts_under(tmp_path) == []

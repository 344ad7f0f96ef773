"""Debian roots made with mmdebstrap and cached (harness.kernel.roots), and the module build cache."""

import json
import os
import time
from pathlib import Path

import pytest

from harness import cache, events, locks
from harness.errors import InfraError
from harness.kernel import cuts, modbuild, prune, roots
from harness.kernel.apt import KEYRING, Mirror
from harness.kernel.debian import DebianSpec
from harness.kernel.local import LocalSpec
from harness.model import ResolvedKernel

KERNEL = ResolvedKernel(DebianSpec("debian", "bookworm"), "6.1.0-56-amd64", "6.1.192-2",
                        ("linux-image-6.1.0-56-amd64", "linux-headers-6.1.0-56-amd64"), "gcc-12")


def fake_root(tmp_path: Path) -> Path:
    """The files a root is checked for, with a 4 KiB stand-in for the kernel image."""
    root = tmp_path / "root"
    r = KERNEL.release
    for rel in (f"usr/src/linux-headers-{r}/Makefile", f"lib/modules/{r}/modules.dep", "usr/bin/gcc-12",
                "usr/bin/python3", "usr/bin/udevadm", cuts.BLACKLIST_FILE, cuts.CUTS_FILE):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text("x")
    (root / "boot").mkdir()
    (root / f"boot/vmlinuz-{r}").write_bytes(bytes(range(256)) * 16)
    for d in roots.GUEST_MOUNTS:
        (root / d).mkdir()
    roots.write_manifest(root, KERNEL)
    return root


def root_problem(root: Path) -> str:
    """Why check_root rejects the root (the test fails if it accepts it)."""
    problem = roots.check_root(root, KERNEL)
    assert problem is not None, f"{root} was accepted"
    return problem


def test_sound_root_passes(tmp_path):
    assert roots.check_root(fake_root(tmp_path), KERNEL) is None


def test_truncated_image_is_detected(tmp_path):
    root = fake_root(tmp_path)
    img = root / f"boot/vmlinuz-{KERNEL.release}"
    img.write_bytes(img.read_bytes()[:2048])
    assert "2048 bytes, expected 4096" in root_problem(root)


def test_corrupted_image_of_the_same_size_is_detected(tmp_path):
    root = fake_root(tmp_path)
    img = root / f"boot/vmlinuz-{KERNEL.release}"
    img.write_bytes(bytes(4096))
    assert "sha256" in root_problem(root)


def test_missing_headers_are_detected(tmp_path):
    root = fake_root(tmp_path)
    (root / f"usr/src/linux-headers-{KERNEL.release}/Makefile").unlink()
    assert "headers Makefile is missing" in root_problem(root)


def test_half_made_root_without_manifest_is_rejected(tmp_path):
    root = fake_root(tmp_path)
    (root / roots.MANIFEST).unlink()
    assert "no manifest" in root_problem(root)


def test_usrmerged_image_location(tmp_path):
    root = tmp_path / "r"
    p = root / f"usr/lib/modules/{KERNEL.release}/vmlinuz"
    p.parent.mkdir(parents=True)
    p.write_text("x")
    assert roots.Root(root, KERNEL).vmlinuz == p


def test_key_changes_with_the_package_set():
    other = ResolvedKernel(KERNEL.spec, KERNEL.release, "6.1.192-3", KERNEL.packages, KERNEL.compiler)
    assert roots.root_key(KERNEL) != roots.root_key(other)
    assert roots.root_key(KERNEL).startswith("debian-bookworm-6.1.0-56-amd64-")


def test_cache_dir_honours_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("HARNESS_CACHE", str(tmp_path / "c"))
    assert cache.cache_dir() == tmp_path / "c"
    monkeypatch.delenv("HARNESS_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "x"))
    assert cache.cache_dir() == tmp_path / "x" / "kmod-harness"


def test_mmdebstrap_argv_names_packages_hooks_options_and_sources(tmp_path):
    mirror = Mirror(debian="http://m/debian", security="http://m/sec",
                    apt_options=("Acquire::Check-Valid-Until=false",))
    argv = roots.mmdebstrap_argv("/usr/bin/mmdebstrap", KERNEL, mirror, tmp_path / "t")
    # in a mount namespace of its own: a killed harness leaves no proc/sys/dev mounts in the root
    assert argv[:5] == ["unshare", "--mount", "--propagation", "private", "--"]
    argv = argv[5:]
    assert argv[:3] == ["/usr/bin/mmdebstrap", "--variant=apt", "--mode=root"]
    include = argv[3].removeprefix("--include=").split(",")
    assert include == sorted(include) == roots.root_packages(KERNEL)
    assert {"linux-image-6.1.0-56-amd64", "linux-headers-6.1.0-56-amd64", "gcc-12", "python3"} <= set(include)
    assert [a for a in argv if a.startswith("--customize-hook=")] == [
        f'--customize-hook=mkdir -p "$1/{d}"' for d in roots.GUEST_MOUNTS]
    assert '--aptopt=Acquire::Check-Valid-Until "false"' in argv
    assert not any(a.startswith("--setup-hook=") for a in argv), "bookworm needs no apt pin"
    tail = ["bookworm", str(tmp_path / "t")] + mirror.sources("bookworm")
    assert argv[-len(tail):] == tail
    assert f"deb [signed-by={KEYRING}] http://m/sec bookworm-security main" in argv


def test_mmdebstrap_argv_pins_experimentals_kernel_and_makes_base_mount_points(tmp_path):
    exp = ResolvedKernel(DebianSpec("debian", "experimental"), "7.0.0-1-amd64", "7.0-1~exp1",
                         ("linux-image-7.0.0-1-amd64", "linux-headers-7.0.0-1-amd64"), "gcc-15")
    hooks = [a for a in roots.mmdebstrap_argv("mmdebstrap", exp, Mirror(), tmp_path) if a.startswith("--setup-hook=")]
    assert len(hooks) == 1 and "Package: src:linux" in hooks[0] and "Pin: release a=experimental" in hooks[0]
    tree = ResolvedKernel(LocalSpec("local", "bookworm", path=str(tmp_path), arch="amd64"), "6.12.118-virtme",
                          "local tree", (), "gcc", tree=tmp_path)
    argv = roots.mmdebstrap_argv("mmdebstrap", tree, Mirror(), tmp_path / "t")
    assert '--customize-hook=mkdir -p "$1/lib/modules"' in argv
    assert not any(p.startswith(("linux-", "gcc")) for p in argv[3].removeprefix("--include=").split(","))


def test_failed_mmdebstrap_leaves_no_half_made_root(tmp_path, monkeypatch):
    """make_root with an mmdebstrap that fails: nothing left beside the cache entry but the log."""
    fake = tmp_path / "bin" / "mmdebstrap"
    fake.parent.mkdir()
    seen = tmp_path / "argv"
    fake.write_text(f"#!/bin/sh\nprintf '%s\\n' \"$@\" > {seen}\n"
                    "echo 'E: No space left on device' >&2\nexit 1\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake.parent}:/usr/bin:/bin")
    dest = tmp_path / "roots" / "k"
    got: list = []
    with pytest.raises(InfraError) as e:
        roots.make_root(KERNEL, Mirror(), dest, got.append, timeout=30)
    assert "disk holding the cache is full" in str(e.value)
    assert sorted(p.name for p in dest.parent.iterdir()) == ["k.log"]
    assert "E: No space left on device" in (dest.parent / "k.log").read_text()
    assert events.Progress("E: No space left on device") in got
    # mmdebstrap was given mmdebstrap_argv's command line, writing into a temporary directory beside the entry
    argv = ["unshare", "--mount", "--propagation", "private", "--", str(fake)] + seen.read_text().splitlines()
    target = Path(argv[argv.index("bookworm") + 1])
    assert target.parent == dest.parent and target.name.startswith(".tmp-k-")
    assert argv == roots.mmdebstrap_argv(str(fake), KERNEL, Mirror(), target)


def test_atomic_dir_is_whole_or_absent(tmp_path):
    dest = tmp_path / "entries" / "e"
    with pytest.raises(RuntimeError), locks.atomic_dir(dest) as tmp:
        (tmp / "half").write_text("x")
        raise RuntimeError("killed halfway")
    assert list(dest.parent.iterdir()) == []
    with locks.atomic_dir(dest) as tmp:
        assert tmp.parent == dest.parent and tmp.name.startswith(".tmp-e-") and not dest.exists()
        (tmp / "whole").write_text("x")
    assert [p.name for p in dest.parent.iterdir()] == ["e"] and (dest / "whole").is_file()


def test_root_that_is_not_usrmerged_is_sound(tmp_path):
    """bullseye keeps udevadm in /bin: the check must accept it there."""
    root = fake_root(tmp_path)
    (root / "bin").mkdir()
    (root / "usr/bin/udevadm").rename(root / "bin/udevadm")
    assert roots.check_root(root, KERNEL) is None
    (root / "bin/udevadm").unlink()
    assert "udevadm is missing" in root_problem(root)


def _build_request(tmp_path: Path) -> modbuild.BuildRequest:
    src = tmp_path / "src"
    src.mkdir()
    (src / "m.c").write_text("int x;\n")
    (src / "m.o").write_text("stale object: not part of the key")
    return modbuild.BuildRequest(roots.Root(tmp_path / "root", KERNEL), src, ("m",))


def test_build_cache_reuses_a_module_built_from_the_same_sources(tmp_path, monkeypatch):
    req = _build_request(tmp_path)
    key = modbuild.source_key(req)
    (req.source / "m.o").write_text("another object")
    assert modbuild.source_key(req) == key, "build products must not change the key"
    entry = tmp_path / "cache" / "builds" / f"m-{key}"
    entry.mkdir(parents=True)
    (entry / "m.ko").write_bytes(b"\x7fELF built earlier")
    (entry / "build.log").write_text("  CC [M]  /tmp/build/m.o\n/tmp/build/m.c:1: warning: unused\n")
    (entry / "built.json").write_text(json.dumps({"m": "m.ko"}))
    monkeypatch.setattr(modbuild, "build_on_host", lambda *a, **k: pytest.fail("must not rebuild"))
    build = tmp_path / "build"
    build.mkdir()
    res = modbuild.build_cached(req, build, tmp_path / "cache", events.discard)
    assert res.ok and res.cached and (build / "m.ko").read_bytes() == b"\x7fELF built earlier"
    assert res.kos == {"m": "m.ko"}
    assert res.warnings == ("/tmp/build/m.c:1: warning: unused",)
    (req.source / "m.c").write_text("int y;\n")
    assert modbuild.source_key(req) != key, "a source change must change the key"


def test_build_cache_stores_only_successful_builds_whole(tmp_path, monkeypatch):
    req = _build_request(tmp_path)
    builds = []

    def fake_build(r, build, sink):
        builds.append(r)
        if len(builds) == 1:
            return modbuild.summarize(False, "m.c:1: error: nope\n", build, r.modules)
        (build / "sub").mkdir()
        (build / "sub/m.ko").write_bytes(b"\x7fELF new")
        return modbuild.summarize(True, "m.c:1: warning: unused\n", build, r.modules)

    monkeypatch.setattr(modbuild, "build_on_host", fake_build)
    store = tmp_path / "cache"
    first = modbuild.build_cached(req, tmp_path / "b1", store, events.discard)
    assert not first.ok and not (store / "builds").exists(), "a failed build is not kept"
    (tmp_path / "b2").mkdir()
    second = modbuild.build_cached(req, tmp_path / "b2", store, events.discard)
    assert second.ok and not second.cached and second.kos == {"m": "sub/m.ko"}
    entry = store / "builds" / f"m-{modbuild.source_key(req)}"
    assert [p.name for p in entry.parent.iterdir()] == [entry.name]  # no .tmp-* left beside it
    (tmp_path / "b3").mkdir()
    third = modbuild.build_cached(req, tmp_path / "b3", store, events.discard)
    assert len(builds) == 2 and third.cached and third.kos == {"m": "sub/m.ko"}
    assert (tmp_path / "b3/sub/m.ko").read_bytes() == b"\x7fELF new"
    assert third.warnings == ("m.c:1: warning: unused",)


def test_stale_virtme_init_scripts_are_removed_fresh_ones_kept(tmp_path):
    root = fake_root(tmp_path)
    old, new = root / "virtme-init-old1", root / "virtme-init-new1"
    old.write_text("x")
    new.write_text("x")
    os.utime(old, (time.time() - 7200, time.time() - 7200))
    roots._remove_stale_init_scripts(root)
    assert not old.exists() and new.exists()


def test_startup_cuts_mask_all_but_the_exec_channels_udev_rules_and_can_be_undone(tmp_path):
    root = tmp_path / "root"
    for rel in ("usr/lib/udev/rules.d/50-udev-default.rules", "usr/lib/udev/rules.d/80-drivers.rules",
                "usr/lib/udev/rules.d/60-persistent-storage.rules", "usr/lib/udev/rules.d/60-block.rules",
                "usr/lib/tmpfiles.d/systemd.conf",
                "usr/lib/tmpfiles.d/sshd.conf", "etc/udev/rules.d/60-persistent-storage.rules",
                cuts.BLACKLIST_FILE):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text("admin's own" if rel.startswith("etc/udev") else "x")
    added = cuts.apply_startup_cuts(root)
    masks = root / "etc/udev/rules.d"
    assert (masks / "60-persistent-storage.rules").read_text() == "admin's own"
    assert not (masks / "50-udev-default.rules").exists()  # virtio-ports symlinks: the exec channel
    assert not (masks / "80-drivers.rules").exists()  # module autoload: virtio_net
    assert (masks / "60-persistent-storage.rules").read_text() == "admin's own"  # not replaced
    assert (root / "etc/tmpfiles.d/systemd.conf").is_symlink() and (root / "etc/tmpfiles.d/sshd.conf").is_symlink()
    assert "etc/udev/rules.d/60-persistent-storage.rules" not in added
    assert (masks / "60-block.rules").resolve() == Path("/dev/null")
    cuts.undo_startup_cuts(root)
    assert not (masks / "60-block.rules").is_symlink() and not (root / "etc/tmpfiles.d/systemd.conf").is_symlink()
    assert (masks / "60-persistent-storage.rules").read_text() == "admin's own"
    assert not (root / cuts.BLACKLIST_FILE).exists() and not (root / cuts.CUTS_FILE).exists()


def _cached_root(roots_dir, name: str, fmt=roots.ROOT_FORMAT, used: float = 0.0, manifest: bool = True):
    d = roots_dir / name
    (d / "usr/bin").mkdir(parents=True)
    (d / "usr/bin/python3").write_bytes(b"x" * 5000)
    if manifest:
        (d / roots.MANIFEST).write_text(json.dumps({"format": fmt}))
    (roots_dir / f"{name}.log").write_text("mmdebstrap log\n")
    (roots_dir / f"{name}.lock").write_text("")
    os.utime(roots_dir / f"{name}.lock", (used, used))  # every run rewrites the lock: its mtime is the last use
    return d


def test_stale_roots_are_old_formats_broken_unfinished_and_superseded(tmp_path):
    cached = tmp_path / "roots"
    now = 1_800_000_000.0
    live = _cached_root(cached, "debian-bookworm-6.1.0-56-amd64-aaaaaaaaaa", used=now - 60)
    older = _cached_root(cached, "debian-bookworm-6.1.0-56-amd64-bbbbbbbbbb", used=now - 86400)
    other = _cached_root(cached, "debian-trixie-6.12.118+deb13-amd64-cccccccccc", used=now - 10 * 86400)
    base = _cached_root(cached, "base-trixie-dddddddddd", used=now - 5)
    old_format = _cached_root(cached, "debian-sid-7.2.13+deb14-amd64-eeeeeeeeee", fmt=roots.ROOT_FORMAT - 1)
    broken = _cached_root(cached, "debian-sid-7.2.13+deb14-amd64-ffffffffff", manifest=False)
    (cached / ".tmp-x-old").mkdir()
    os.utime(cached / ".tmp-x-old", (now - 86400, now - 86400))
    (cached / ".tmp-x-running").mkdir()
    os.utime(cached / ".tmp-x-running", (now - 60, now - 60))

    stale = dict(prune.stale_roots(cached, now=now))
    assert set(stale) == {older, old_format, broken, cached / ".tmp-x-old"}
    assert f"superseded by {live.name}" in stale[older]
    assert f"root format {roots.ROOT_FORMAT - 1}" in stale[old_format]
    assert "no manifest" in stale[broken]
    for kept in (live, other, base, cached / ".tmp-x-running"):
        assert kept not in stale


def test_removing_a_root_takes_its_log_and_lock_along(tmp_path):
    cached = tmp_path / "roots"
    d = _cached_root(cached, "base-bookworm-aaaaaaaaaa")
    prune.remove_root(d)
    assert list(cached.iterdir()) == []


def test_the_udev_shim_replaces_udevadm_and_keeps_the_daemon_real(tmp_path):
    (tmp_path / "usr/bin").mkdir(parents=True)
    (tmp_path / "usr/lib/systemd").mkdir(parents=True)
    (tmp_path / "usr/bin/udevadm").write_bytes(b"\x7fELF real")
    (tmp_path / "usr/lib/systemd/systemd-udevd").symlink_to("../../bin/udevadm")
    cuts.install_udev_shim(tmp_path)
    shim = (tmp_path / "usr/bin/udevadm").read_text()
    assert shim.startswith("#!/bin/sh") and "trigger) exit 0" in shim
    assert (tmp_path / "usr/bin/udevadm").stat().st_mode & 0o111
    # systemd-udevd is the real program, found through its link.
    assert (tmp_path / "usr/lib/systemd/systemd-udevd").read_bytes() == b"\x7fELF real"
    assert (tmp_path / "usr/lib/kmod-harness/udevadm").read_bytes() == b"\x7fELF real"

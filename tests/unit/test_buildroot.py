import json
import os
from pathlib import Path

import pytest

from harness import buildroot
from harness.model import KernelSpec, ResolvedKernel

KERNEL = ResolvedKernel(KernelSpec("debian", "bookworm"), "6.1.0-56-amd64", "6.1.192-2",
                        ("linux-image-6.1.0-56-amd64", "linux-headers-6.1.0-56-amd64"), "gcc-12")


def fake_root(tmp_path: Path) -> Path:
    """The files a root is checked for, with a 4 KiB stand-in for the kernel image."""
    root = tmp_path / "root"
    r = KERNEL.release
    for rel in (f"usr/src/linux-headers-{r}/Makefile", f"lib/modules/{r}/modules.dep", "usr/bin/gcc-12",
                "usr/bin/python3", "usr/bin/udevadm", buildroot.BLACKLIST_FILE, buildroot.CUTS_FILE):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text("x")
    (root / "boot").mkdir()
    (root / f"boot/vmlinuz-{r}").write_bytes(bytes(range(256)) * 16)
    for d in buildroot.GUEST_MOUNTS:
        (root / d).mkdir()
    buildroot.write_manifest(root, KERNEL)
    return root


def test_sound_root_passes(tmp_path):
    assert buildroot.check_root(fake_root(tmp_path), KERNEL) is None


def test_truncated_image_is_detected(tmp_path):
    root = fake_root(tmp_path)
    img = root / f"boot/vmlinuz-{KERNEL.release}"
    img.write_bytes(img.read_bytes()[:2048])
    assert "2048 bytes, expected 4096" in buildroot.check_root(root, KERNEL)


def test_corrupted_image_of_the_same_size_is_detected(tmp_path):
    root = fake_root(tmp_path)
    img = root / f"boot/vmlinuz-{KERNEL.release}"
    img.write_bytes(bytes(4096))
    assert "sha256" in buildroot.check_root(root, KERNEL)


def test_missing_headers_are_detected(tmp_path):
    root = fake_root(tmp_path)
    (root / f"usr/src/linux-headers-{KERNEL.release}/Makefile").unlink()
    assert "headers Makefile is missing" in buildroot.check_root(root, KERNEL)


def test_half_made_root_without_manifest_is_rejected(tmp_path):
    root = fake_root(tmp_path)
    (root / buildroot.MANIFEST).unlink()
    assert "no manifest" in buildroot.check_root(root, KERNEL)


def test_usrmerged_image_location(tmp_path):
    root = tmp_path / "r"
    p = root / f"usr/lib/modules/{KERNEL.release}/vmlinuz"
    p.parent.mkdir(parents=True)
    p.write_text("x")
    assert buildroot.find_vmlinuz(root, KERNEL.release) == p


def test_key_changes_with_the_package_set():
    other = ResolvedKernel(KERNEL.spec, KERNEL.release, "6.1.192-3", KERNEL.packages, KERNEL.compiler)
    assert buildroot.root_key(KERNEL) != buildroot.root_key(other)
    assert buildroot.root_key(KERNEL).startswith("debian-bookworm-6.1.0-56-amd64-")


def test_cache_dir_honours_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("HARNESS_CACHE", str(tmp_path / "c"))
    assert buildroot.cache_dir() == tmp_path / "c"
    monkeypatch.delenv("HARNESS_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "x"))
    assert buildroot.cache_dir() == tmp_path / "x" / "kmod-harness"


def test_failed_mmdebstrap_leaves_no_half_made_root(tmp_path, monkeypatch):
    """make_root with an mmdebstrap that fails: nothing left beside the cache entry but the log."""
    fake = tmp_path / "bin" / "mmdebstrap"
    fake.parent.mkdir()
    fake.write_text("#!/bin/sh\nfor a; do last=$a; done\necho 'E: No space left on device' >&2\nexit 1\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake.parent}:/usr/bin:/bin")
    import io

    from harness.errors import InfraError
    from harness.kernels import Mirror
    from harness.progress import Printer
    dest = tmp_path / "roots" / "k"
    with pytest.raises(InfraError) as e:
        buildroot.make_root(KERNEL, Mirror(), dest, Printer(io.StringIO()), timeout=30)
    assert "disk holding the cache is full" in str(e.value)
    assert sorted(p.name for p in dest.parent.iterdir()) == ["k.log"]


def test_root_that_is_not_usrmerged_is_sound(tmp_path):
    """bullseye keeps udevadm in /bin: the check must accept it there."""
    root = fake_root(tmp_path)
    (root / "bin").mkdir()
    (root / "usr/bin/udevadm").rename(root / "bin/udevadm")
    assert buildroot.check_root(root, KERNEL) is None
    (root / "bin/udevadm").unlink()
    assert "udevadm is missing" in buildroot.check_root(root, KERNEL)


def test_build_cache_reuses_a_module_built_from_the_same_sources(tmp_path, monkeypatch):
    import io

    from harness import kbuild
    from harness.progress import Printer

    src = tmp_path / "src"
    src.mkdir()
    (src / "m.c").write_text("int x;\n")
    (src / "m.o").write_text("stale object: not part of the key")
    root = buildroot.Root(tmp_path / "root", KERNEL)
    key = kbuild.source_key(src, root)
    (src / "m.o").write_text("another object")
    assert kbuild.source_key(src, root) == key, "build products must not change the key"
    entry = tmp_path / "cache" / "builds" / f"m-{key}"
    entry.mkdir(parents=True)
    (entry / "m.ko").write_bytes(b"\x7fELF built earlier")
    (entry / "build.log").write_text("  CC [M]  /tmp/build/m.o\n/tmp/build/m.c:1: warning: unused\n")
    monkeypatch.setattr(kbuild, "build_on_host", lambda *a, **k: pytest.fail("must not rebuild"))
    build = tmp_path / "build"
    build.mkdir()
    res = kbuild.build_cached(root, src, build, "m", 60, Printer(io.StringIO()), tmp_path / "cache")
    assert res.ok and res.cached and (build / "m.ko").read_bytes() == b"\x7fELF built earlier"
    assert res.warnings == ["/tmp/build/m.c:1: warning: unused"]
    (src / "m.c").write_text("int y;\n")
    assert kbuild.source_key(src, root) != key, "a source change must change the key"


def test_package_index_freshness(tmp_path):
    from harness import kernels

    idx = kernels.AptIndex(tmp_path, "bookworm", kernels.Mirror())
    assert not idx.fresh(3600)
    idx.dir.mkdir(parents=True)
    (idx.dir / "updated").write_text("\n".join(kernels.Mirror().sources("bookworm")))
    assert idx.fresh(3600) and not idx.fresh(0)
    other = kernels.AptIndex(tmp_path, "bookworm", kernels.Mirror(debian="http://elsewhere/debian"))
    assert not other.fresh(3600), "a different mirror needs its own update"


def test_stale_virtme_init_scripts_are_removed_fresh_ones_kept(tmp_path):
    import os
    import time

    root = fake_root(tmp_path)
    old, new = root / "virtme-init-old1", root / "virtme-init-new1"
    old.write_text("x")
    new.write_text("x")
    os.utime(old, (time.time() - 7200, time.time() - 7200))
    buildroot._remove_stale_init_scripts(root)
    assert not old.exists() and new.exists()


def test_startup_cuts_mask_all_but_the_exec_channels_udev_rules_and_can_be_undone(tmp_path):
    root = tmp_path / "root"
    for rel in ("usr/lib/udev/rules.d/50-udev-default.rules", "usr/lib/udev/rules.d/80-drivers.rules",
                "usr/lib/udev/rules.d/60-persistent-storage.rules", "usr/lib/udev/rules.d/60-block.rules",
                "usr/lib/tmpfiles.d/systemd.conf",
                "usr/lib/tmpfiles.d/sshd.conf", "etc/udev/rules.d/60-persistent-storage.rules",
                buildroot.BLACKLIST_FILE):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text("admin's own" if rel.startswith("etc/udev") else "x")
    added = buildroot.apply_startup_cuts(root)
    masks = root / "etc/udev/rules.d"
    assert (masks / "60-persistent-storage.rules").read_text() == "admin's own"
    assert not (masks / "50-udev-default.rules").exists()  # virtio-ports symlinks: the exec channel
    assert not (masks / "80-drivers.rules").exists()  # module autoload: virtio_net
    assert (masks / "60-persistent-storage.rules").read_text() == "admin's own"  # not replaced
    assert (root / "etc/tmpfiles.d/systemd.conf").is_symlink() and (root / "etc/tmpfiles.d/sshd.conf").is_symlink()
    assert "etc/udev/rules.d/60-persistent-storage.rules" not in added
    assert (masks / "60-block.rules").resolve() == Path("/dev/null")
    buildroot.undo_startup_cuts(root)
    assert not (masks / "60-block.rules").is_symlink() and not (root / "etc/tmpfiles.d/systemd.conf").is_symlink()
    assert (masks / "60-persistent-storage.rules").read_text() == "admin's own"
    assert not (root / buildroot.BLACKLIST_FILE).exists() and not (root / buildroot.CUTS_FILE).exists()


def _cached_root(roots, name: str, fmt=buildroot.ROOT_FORMAT, used: float = 0.0, manifest: bool = True):
    d = roots / name
    (d / "usr/bin").mkdir(parents=True)
    (d / "usr/bin/python3").write_bytes(b"x" * 5000)
    if manifest:
        (d / buildroot.MANIFEST).write_text(json.dumps({"format": fmt}))
    (roots / f"{name}.log").write_text("mmdebstrap log\n")
    (roots / f"{name}.lock").write_text("")
    os.utime(roots / f"{name}.lock", (used, used))  # every run rewrites the lock: its mtime is the last use
    return d


def test_stale_roots_are_old_formats_broken_unfinished_and_superseded(tmp_path):
    roots = tmp_path / "roots"
    now = 1_800_000_000.0
    live = _cached_root(roots, "debian-bookworm-6.1.0-56-amd64-aaaaaaaaaa", used=now - 60)
    older = _cached_root(roots, "debian-bookworm-6.1.0-56-amd64-bbbbbbbbbb", used=now - 86400)
    other = _cached_root(roots, "debian-trixie-6.12.118+deb13-amd64-cccccccccc", used=now - 10 * 86400)
    base = _cached_root(roots, "base-trixie-dddddddddd", used=now - 5)
    old_format = _cached_root(roots, "debian-sid-7.2.13+deb14-amd64-eeeeeeeeee", fmt=buildroot.ROOT_FORMAT - 1)
    broken = _cached_root(roots, "debian-sid-7.2.13+deb14-amd64-ffffffffff", manifest=False)
    (roots / ".tmp-x-old").mkdir()
    os.utime(roots / ".tmp-x-old", (now - 86400, now - 86400))
    (roots / ".tmp-x-running").mkdir()
    os.utime(roots / ".tmp-x-running", (now - 60, now - 60))

    stale = dict(buildroot.stale_roots(roots, now=now))
    assert set(stale) == {older, old_format, broken, roots / ".tmp-x-old"}
    assert f"superseded by {live.name}" in stale[older]
    assert f"root format {buildroot.ROOT_FORMAT - 1}" in stale[old_format]
    assert "no manifest" in stale[broken]
    for kept in (live, other, base, roots / ".tmp-x-running"):
        assert kept not in stale


def test_removing_a_root_takes_its_log_and_lock_along(tmp_path):
    roots = tmp_path / "roots"
    d = _cached_root(roots, "base-bookworm-aaaaaaaaaa")
    buildroot.remove_root(d)
    assert list(roots.iterdir()) == []

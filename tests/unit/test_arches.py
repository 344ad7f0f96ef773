"""Guests of another architecture (harness.arches): specs, the archive, roots, QEMU, the accelerator."""

import os
from pathlib import Path

import pytest
from test_apt import RecordedIndex

from harness import arches, cli
from harness.accel import AccelFacts, choose
from harness.errors import InfraError, UsageError
from harness.guest import vng
from harness.kernel import apt, cuts, roots, spec
from harness.model import Accel, KernelSpec, ResolvedKernel

ARM64 = KernelSpec("debian", "bookworm", arch="arm64")
ARM64_KERNEL = ResolvedKernel(ARM64, "6.1.0-57-arm64", "6.1.192-3",
                              ("linux-image-6.1.0-57-arm64", "linux-headers-6.1.0-57-arm64"), "gcc-12")
AMD64_KERNEL = ResolvedKernel(KernelSpec("debian", "bookworm"), "6.1.0-57-amd64", "6.1.192-3",
                              ("linux-image-6.1.0-57-amd64", "linux-headers-6.1.0-57-amd64"), "gcc-12")


@pytest.fixture(autouse=True)
def x86_host(monkeypatch):
    """These machines are x86_64: arm64 is the foreign architecture."""
    monkeypatch.setattr(arches.platform, "machine", lambda: "x86_64")


@pytest.mark.parametrize("text, arch, written", [
    ("debian:bookworm", "amd64", "debian:bookworm"),
    ("debian:bookworm:arm64", "arm64", "debian:bookworm:arm64"),
    ("debian:bookworm@6.1.0-57:arm64", "arm64", "debian:bookworm@6.1.0-57:arm64"),
    ("debian:bookworm:amd64", "amd64", "debian:bookworm"),  # the host's: written without
])
def test_the_architecture_is_part_of_the_spec(text, arch, written):
    s = spec.parse_spec(text)
    assert s.arch == arch and str(s) == written


def test_arch_option_and_spec_fold_into_one_written_form():
    assert spec.with_arch("debian:trixie", "arm64") == "debian:trixie:arm64"
    assert spec.with_arch("debian:trixie:arm64", "arm64") == "debian:trixie:arm64"
    assert spec.with_arch("debian:trixie:arm64", None) == "debian:trixie:arm64"
    assert spec.with_arch("debian:trixie", "amd64") == "debian:trixie"
    with pytest.raises(UsageError, match="names arm64, --arch amd64"):
        spec.with_arch("debian:trixie:arm64", "amd64")
    with pytest.raises(UsageError, match="only debian: kernels"):
        spec.with_arch("debian-src:trixie+kasan", "arm64")
    with pytest.raises(UsageError, match="'mips': unknown architecture; known: amd64, arm64"):
        spec.parse_spec("debian:bookworm:mips")


def test_the_suites_arm64_kernel_is_resolved_from_the_arm64_index():
    """tests/data/apt/bookworm-arm64: apt-cache show from bookworm's arm64 index, 2026-11-29."""
    k = apt.resolve(ARM64, RecordedIndex("bookworm-arm64"))
    assert (k.release, k.package_version, k.compiler) == ("6.1.0-57-arm64", "6.1.192-3", "gcc-12")
    assert k.packages == ("linux-image-6.1.0-57-arm64", "linux-headers-6.1.0-57-arm64")
    assert k.kernel_id == "debian-bookworm-6.1.0-57-arm64"


def test_each_architecture_has_its_own_apt_index(tmp_path):
    amd, arm = apt.AptIndex(tmp_path, "bookworm", apt.Mirror()), apt.AptIndex(tmp_path, "bookworm", apt.Mirror(),
                                                                               arch="arm64")
    assert amd.dir == tmp_path / "apt/bookworm" and arm.dir == tmp_path / "apt/bookworm-arm64"
    arm._write_config()
    assert 'APT::Architecture "arm64";' in arm.conf.read_text()


def test_a_foreign_root_is_made_for_its_architecture_with_a_static_busybox(tmp_path):
    argv = roots.mmdebstrap_argv("mmdebstrap", ARM64_KERNEL, apt.Mirror(), tmp_path)
    assert "--architectures=arm64" in argv
    hook = next(a for a in argv if a.startswith("--essential-hook="))
    assert "dpkg-divert" in hook and "/usr/sbin/update-initramfs" in hook
    packages = next(a for a in argv if a.startswith("--include=")).split("=", 1)[1].split(",")
    assert "busybox-static" in packages and "busybox" not in packages
    host = roots.mmdebstrap_argv("mmdebstrap", AMD64_KERNEL, apt.Mirror(), tmp_path)
    assert not [a for a in host if a.startswith(("--architectures", "--essential-hook"))]
    assert "busybox" in next(a for a in host if a.startswith("--include=")).split("=", 1)[1].split(",")
    assert roots.root_key(ARM64_KERNEL).startswith("debian-bookworm-6.1.0-57-arm64-")


def binfmt_dir(tmp_path: Path, entry: str = "", mounted: bool = True) -> Path:
    d = tmp_path / "binfmt_misc"
    d.mkdir()
    if mounted:
        (d / "register").touch()
    if entry:
        (d / "qemu-aarch64").write_text(entry)
    return d


@pytest.mark.parametrize("mounted, entry, words", [
    (False, "", "binfmt_misc is not mounted"),
    (True, "", "no binfmt_misc entry qemu-aarch64"),
    (True, "disabled\ninterpreter /usr/libexec/qemu-binfmt/aarch64-binfmt-P\nflags: POF\n", "is disabled"),
    (True, "enabled\ninterpreter /usr/bin/qemu-aarch64\nflags: \n", "lacks the F flag"),
])
def test_binfmt_problems_are_named(tmp_path, mounted, entry, words):
    problem = arches.binfmt_problem(arches.ARCHES["arm64"], binfmt_dir(tmp_path, entry, mounted))
    assert problem is not None and words in problem


def test_binfmt_as_qemu_user_static_registers_it_is_enough(tmp_path):
    entry = "enabled\ninterpreter /usr/libexec/qemu-binfmt/aarch64-binfmt-P\nflags: POF\noffset 0\n"
    assert arches.binfmt_problem(arches.ARCHES["arm64"], binfmt_dir(tmp_path, entry)) is None
    assert arches.binfmt_problem(arches.ARCHES["amd64"], tmp_path / "nowhere") is None  # the host's own


def test_missing_binfmt_is_an_infra_error_saying_what_to_install(monkeypatch, tmp_path):
    monkeypatch.setattr(arches, "BINFMT_DIR", tmp_path / "unmounted")
    monkeypatch.setattr(arches, "binfmt_problem", lambda a, d=tmp_path: "binfmt_misc is not mounted at X")
    with pytest.raises(InfraError) as e:
        arches.check_binfmt(arches.ARCHES["arm64"])
    assert "qemu-user" in str(e.value) and "qemu-user-static" in e.value.hint and "make setup" in e.value.hint


def test_a_foreign_guest_runs_under_tcg_and_never_kvm():
    kvm_host = AccelFacts(kvm_rw=True, cpu_flags=frozenset({"vmx"}))
    accel, why = choose("auto", kvm_host, foreign="arm64")
    assert accel is Accel.TCG and "arm64" in why
    with pytest.raises(UsageError, match="KVM runs only the host's architecture"):
        choose("kvm", kvm_host, foreign="arm64")


def test_virtme_ng_is_told_the_guests_architecture():
    cfg = vng.VmConfig(vmlinuz=Path("/r/boot/vmlinuz-6.1.0-57-arm64"), root=Path("/r"), run_dir=Path("/t"),
                       project_dir=Path("/p"), accel=Accel.TCG, arch="arm64")
    argv = vng.vng_argv("vng", cfg, "true")
    assert argv[argv.index("--arch") + 1] == "arm64"


def test_a_missing_system_emulator_names_its_package(monkeypatch):
    monkeypatch.setattr(vng.shutil, "which", lambda name: None)
    with pytest.raises(InfraError) as e:
        vng.check_qemu(arches.ARCHES["arm64"])
    assert "qemu-system-aarch64 not found" in str(e.value) and "qemu-system-arm" in e.value.hint


def test_matrix_entries_take_an_arch(tmp_path):
    from harness import matrix
    p = tmp_path / "k.toml"
    p.write_text('[[kernel]]\nspec = "debian:bookworm"\n\n[[kernel]]\nspec = "debian:bookworm"\narch = "arm64"\n')
    assert [e.spec for e in matrix.load_matrix(p)] == ["debian:bookworm", "debian:bookworm:arm64"]
    assert [e.spec for e in matrix.for_arch(matrix.load_matrix(p), "arm64")] == ["debian:bookworm:arm64"]
    p.write_text('[[kernel]]\nspec = "debian:bookworm"\narch = "sparc"\n')
    with pytest.raises(UsageError, match=r"k\.toml:1: kernel\[1\]: .*'sparc'"):
        matrix.load_matrix(p)


@pytest.mark.parametrize("argv, words", [
    (["run", "--arch", "sparc"], "'sparc': unknown architecture"),
    (["run", "--arch", "arm64", "--accel", "kvm"], "KVM runs only the host's architecture"),
    (["run", "--kernel", "debian-src:trixie+kasan", "--arch", "arm64"], "only debian: kernels"),
])
def test_bad_architecture_requests_are_usage_errors(argv, words, capsys, tmp_path):
    code = cli.main(argv + ["--results", str(tmp_path / "r")])
    assert code == 2 and words in capsys.readouterr().err


@pytest.mark.parametrize("merged", [True, False])
def test_a_foreign_roots_udev_shim_loads_modules_by_modalias(tmp_path, merged):
    """bookworm on: /lib links to usr/lib, so lib/systemd is usr/lib/systemd (relinked once);
    bullseye: udevadm in /bin, systemd-udevd in /lib/systemd."""
    if merged:
        (tmp_path / "usr/lib/systemd").mkdir(parents=True)
        (tmp_path / "lib").symlink_to("usr/lib")
        (tmp_path / "usr/bin").mkdir()
        real = tmp_path / "usr/bin/udevadm"
    else:
        (tmp_path / "lib/systemd").mkdir(parents=True)
        (tmp_path / "bin").mkdir()
        real = tmp_path / "bin/udevadm"
    real.write_bytes(b"\x7fELF real")
    (tmp_path / "lib/systemd/systemd-udevd").symlink_to("/" + str(real.relative_to(tmp_path)))
    cuts.install_udev_shim(tmp_path, foreign=True)
    shim = real.read_text()
    assert "modprobe -qab $(cat /sys/bus/*/devices/*/modalias" in shim and "trigger) exit 0" not in shim
    assert "exec /usr/lib/kmod-harness/udevadm" in shim
    udevd = tmp_path / "lib/systemd/systemd-udevd"
    assert udevd.read_bytes() == b"\x7fELF real"  # through a relative link that stays inside the root
    assert not os.readlink(udevd).startswith("/")
    target = os.path.normpath(udevd.parent.resolve() / os.readlink(udevd))
    assert target == str(tmp_path / "usr/lib/kmod-harness/udevadm")

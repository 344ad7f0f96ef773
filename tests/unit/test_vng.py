import dataclasses
from pathlib import Path

from harness import resources
from harness.guest import vng
from harness.guest.contract import GUEST_RUN_DIR
from harness.model import Accel

COMMAND = "python3 /harness/runner.py /harness/plan.json"


def cfg(accel: Accel) -> vng.VmConfig:
    return vng.VmConfig(vmlinuz=Path("/c/root/boot/vmlinuz-6.1.0-56-amd64"), root=Path("/c/root"),
                        run_dir=Path("/tmp/run"), project_dir=Path("/src/proj"), accel=accel)


def test_tcg_disables_kvm_and_kvm_does_not():
    assert "--disable-kvm" in vng.vng_argv("vng", cfg(Accel.TCG), COMMAND)
    assert "--disable-kvm" not in vng.vng_argv("vng", cfg(Accel.KVM), COMMAND)


def test_the_machine_is_q35_under_kvm_and_tcg_alike():
    """virtme-ng leaves KVM guests on QEMU's default machine (i440fx) and gives TCG q35: a step that
    reads ACPI or PCI (acpi_call's \\_SB.PCI0) would then depend on the accelerator."""
    for accel in Accel:
        argv = vng.vng_argv("vng", cfg(accel), COMMAND)
        assert "--qemu-opts=-machine q35" in argv, accel
    foreign = dataclasses.replace(cfg(Accel.TCG), arch="arm64")  # its own machine (virt): left to virtme-ng
    assert not any(a.startswith("--qemu-opts") for a in vng.vng_argv("vng", foreign, COMMAND))


def test_argv_is_a_list_with_the_exec_command_as_one_element():
    argv = vng.vng_argv("/venv/bin/vng", cfg(Accel.TCG), COMMAND)
    assert argv[0] == "/venv/bin/vng"
    assert argv[argv.index("--exec") + 1] == "python3 /harness/runner.py /harness/plan.json"
    assert argv[argv.index("--run") + 1] == "/c/root/boot/vmlinuz-6.1.0-56-amd64"
    assert argv[argv.index("--root") + 1] == "/c/root"
    assert "--rwdir" in argv and argv[argv.index("--rwdir") + 1] == "/harness=/tmp/run"
    assert argv[argv.index("--rodir") + 1] == "/project=/src/proj"
    assert "--verbose" in argv  # the console is the only record when a guest dies


def test_guest_paths_are_the_contracts():
    assert GUEST_RUN_DIR == "/harness" and vng.GUEST_PROJECT_DIR == "/project"
    assert vng.SSH_GUEST_COMMAND == "sh /harness/ssh-up.sh"
    assert "ssh-up.sh" in resources.GUEST_FILES  # the script SSH_GUEST_COMMAND runs is put into the run dir


def test_large_log_buffer_is_requested():
    argv = vng.vng_argv("vng", cfg(Accel.TCG), COMMAND)
    appends = [argv[i + 1] for i, a in enumerate(argv) if a == "--append"]
    assert "log_buf_len=8M" in appends


def test_console_level_follows_virtme_ngs_own_and_can_be_raised():
    argv = vng.vng_argv("vng", cfg(Accel.TCG), COMMAND)
    appends = [argv[i + 1] for i, a in enumerate(argv) if a == "--append"]
    assert "loglevel=7" in appends
    argv = vng.vng_argv("vng", dataclasses.replace(cfg(Accel.TCG), console_level=8), COMMAND)
    assert "loglevel=8" in [argv[i + 1] for i, a in enumerate(argv) if a == "--append"]


def test_a_tree_kernels_modules_are_shared_at_lib_modules():
    assert "/lib/modules=" not in " ".join(vng.vng_argv("vng", cfg(Accel.TCG), COMMAND))
    c = dataclasses.replace(cfg(Accel.TCG), modules_dir=Path("/c/tree-modules/ab/lib/modules"))
    argv = vng.vng_argv("vng", c, COMMAND)
    rodirs = [argv[i + 1] for i, a in enumerate(argv) if a == "--rodir"]
    assert "/lib/modules=/c/tree-modules/ab/lib/modules" in rodirs


def test_a_kasan_kernel_pages_with_four_levels():
    fragment = resources.config_fragment("kasan").read_text()  # vm/configs/kasan.config, as packaged
    assert vng.config_params(fragment + "CONFIG_X86_5LEVEL=y\n") == ("no5lvl",)
    assert vng.config_params(fragment + "# CONFIG_X86_5LEVEL is not set\n") == ()


def test_a_kernel_without_kasan_gets_no_extra_parameters():
    stock = "CONFIG_X86_5LEVEL=y\n# CONFIG_KASAN is not set\nCONFIG_KASAN_SHADOW_OFFSET=0xdffffc0000000000\n"
    assert vng.config_params(stock) == ()


def test_parameters_come_in_order_the_users_last():
    c = dataclasses.replace(cfg(Accel.TCG), append=("no5lvl", "quiet"))
    argv = vng.vng_argv("vng", c, COMMAND)
    appended = [argv[i + 1] for i, a in enumerate(argv) if a == "--append"]
    assert appended == list(vng.appended(c))
    assert appended[:len(vng.BASE_APPEND)] == list(vng.BASE_APPEND)
    assert appended[-2:] == ["no5lvl", "quiet"]
    assert appended.index("oops=panic") < appended.index("no5lvl")


def test_console_log_keeps_the_first_32_mi_and_the_last_2_mi(tmp_path):
    with vng.console_log(tmp_path / "console.log") as log:
        assert (log.head, log.tail) == (32 << 20, 2 << 20) == (vng.CONSOLE_HEAD, vng.CONSOLE_TAIL)
        log.write("virtme-ng command line\n")
    assert (tmp_path / "console.log").read_text() == "virtme-ng command line\n"

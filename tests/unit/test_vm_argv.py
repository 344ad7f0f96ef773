import dataclasses
from pathlib import Path

from harness import vm
from harness.model import Accel


def cfg(accel: Accel) -> vm.VmConfig:
    return vm.VmConfig(vmlinuz=Path("/c/root/boot/vmlinuz-6.1.0-56-amd64"), root=Path("/c/root"),
                       run_dir=Path("/tmp/run"), project_dir=Path("/src/proj"), accel=accel,
                       command="python3 /harness/runner.py /harness/plan.json")


def test_tcg_disables_kvm_and_kvm_does_not():
    assert "--disable-kvm" in vm.vng_argv("vng", cfg(Accel.TCG))
    assert "--disable-kvm" not in vm.vng_argv("vng", cfg(Accel.KVM))


def test_argv_is_a_list_with_the_exec_command_as_one_element():
    argv = vm.vng_argv("/venv/bin/vng", cfg(Accel.TCG))
    assert argv[0] == "/venv/bin/vng"
    assert argv[argv.index("--exec") + 1] == "python3 /harness/runner.py /harness/plan.json"
    assert argv[argv.index("--run") + 1] == "/c/root/boot/vmlinuz-6.1.0-56-amd64"
    assert argv[argv.index("--root") + 1] == "/c/root"
    assert "--rwdir" in argv and argv[argv.index("--rwdir") + 1] == "/harness=/tmp/run"
    assert argv[argv.index("--rodir") + 1] == "/project=/src/proj"
    assert "--verbose" in argv  # the console is the only record when a guest dies


def test_large_log_buffer_is_requested():
    argv = vm.vng_argv("vng", cfg(Accel.TCG))
    appends = [argv[i + 1] for i, a in enumerate(argv) if a == "--append"]
    assert "log_buf_len=8M" in appends


def test_console_level_follows_virtme_ngs_own_and_can_be_raised():
    argv = vm.vng_argv("vng", cfg(Accel.TCG))
    appends = [argv[i + 1] for i, a in enumerate(argv) if a == "--append"]
    assert "loglevel=7" in appends
    argv = vm.vng_argv("vng", dataclasses.replace(cfg(Accel.TCG), console_level=8))
    assert "loglevel=8" in [argv[i + 1] for i, a in enumerate(argv) if a == "--append"]


def test_a_tree_kernels_modules_are_shared_at_lib_modules():
    assert "/lib/modules=" not in " ".join(vm.vng_argv("vng", cfg(Accel.TCG)))
    argv = vm.vng_argv("vng", dataclasses.replace(cfg(Accel.TCG), modules_dir=Path("/c/tree-modules/ab/lib/modules")))
    rodirs = [argv[i + 1] for i, a in enumerate(argv) if a == "--rodir"]
    assert "/lib/modules=/c/tree-modules/ab/lib/modules" in rodirs


REPO = Path(__file__).resolve().parents[2]


def test_a_kasan_kernel_pages_with_four_levels():
    fragment = (REPO / "vm" / "configs" / "kasan.config").read_text()
    assert vm.config_params(fragment + "CONFIG_X86_5LEVEL=y\n") == ("no5lvl",)
    assert vm.config_params(fragment + "# CONFIG_X86_5LEVEL is not set\n") == ()


def test_a_kernel_without_kasan_gets_no_extra_parameters():
    stock = "CONFIG_X86_5LEVEL=y\n# CONFIG_KASAN is not set\nCONFIG_KASAN_SHADOW_OFFSET=0xdffffc0000000000\n"
    assert vm.config_params(stock) == ()


def test_parameters_come_in_order_the_users_last():
    c = dataclasses.replace(cfg(Accel.TCG), append=("no5lvl", "quiet"))
    argv = vm.vng_argv("vng", c)
    appended = [argv[i + 1] for i, a in enumerate(argv) if a == "--append"]
    assert appended == list(vm.appended(c))
    assert appended[-2:] == ["no5lvl", "quiet"]
    assert appended.index("oops=panic") < appended.index("no5lvl")

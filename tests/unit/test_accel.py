import pytest

from harness.accel import AccelFacts, choose, probe
from harness.errors import UsageError
from harness.model import Accel

NESTED_PVM = AccelFacts(kvm_rw=True, cpu_flags=frozenset({"hypervisor", "sse2"}))  # these machines
HOSTED_RUNNER = AccelFacts(kvm_rw=True, cpu_flags=frozenset({"vmx", "sse2"}))  # GitHub after the udev rule
NO_DEV = AccelFacts(kvm_rw=False, cpu_flags=frozenset({"svm"}))


def test_auto_refuses_a_kvm_without_vmx_or_svm():
    accel, why = choose("auto", NESTED_PVM)
    assert accel is Accel.TCG
    assert "neither vmx nor svm" in why


def test_auto_uses_kvm_with_rw_device_and_hardware_flags():
    assert choose("auto", HOSTED_RUNNER)[0] is Accel.KVM


def test_auto_needs_a_read_writable_device():
    accel, why = choose("auto", NO_DEV)
    assert accel is Accel.TCG and "/dev/kvm" in why


def test_explicit_kvm_on_unusable_host_is_a_usage_error():
    with pytest.raises(UsageError, match="KVM is not usable"):
        choose("kvm", NESTED_PVM)


def test_explicit_tcg_always_wins():
    assert choose("tcg", HOSTED_RUNNER)[0] is Accel.TCG


def test_probe_reads_flags(tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor : 0\nflags\t\t: fpu svm sse2\n")
    facts = probe(dev=str(tmp_path / "nokvm"), cpuinfo=str(cpuinfo))
    assert facts == AccelFacts(kvm_rw=False, cpu_flags=frozenset({"fpu", "svm", "sse2"}))

"""Kernel specs: what the user typed, checked and parsed (harness.kernel.spec)."""

import pytest

from harness import resources
from harness.errors import UsageError
from harness.kernel import spec
from harness.model import KernelSpec


@pytest.mark.parametrize("text, kspec", [
    ("debian:bookworm", KernelSpec("debian", "bookworm")),
    ("debian:bookworm@6.1.0-56", KernelSpec("debian", "bookworm", "6.1.0-56")),
    (" debian:trixie@6.12.57+deb13 ", KernelSpec("debian", "trixie", "6.12.57+deb13")),
])
def test_valid_specs(text, kspec):
    assert spec.parse_spec(text) == kspec
    assert str(kspec) == text.strip()


@pytest.mark.parametrize("text, words", [
    ("bookworm", "valid forms"),
    ("debian:bookwurm", "unknown Debian suite 'bookwurm'"),
    ("ubuntu:noble", "unknown kernel source 'ubuntu'"),
    ("debian:bookworm@", "valid forms"),
])
def test_invalid_specs_name_the_valid_forms(text, words):
    with pytest.raises(UsageError, match=words):
        spec.parse_spec(text)


def test_specs_for_trees_parse_and_print_back(tmp_path):
    s = spec.parse_spec("debian-src:trixie+kasan")
    assert (s.source, s.suite, s.flavour) == ("debian-src", "trixie", "kasan")
    assert str(s) == "debian-src:trixie+kasan"
    local = spec.parse_spec(f"local:{tmp_path}/./")
    assert (local.source, local.path, local.suite) == ("local", str(tmp_path), spec.LOCAL_ROOT_SUITE)
    assert str(local) == f"local:{tmp_path}"


@pytest.mark.parametrize("text, words", [
    ("debian-src:trixie+nosuch", "unknown kernel flavour 'nosuch'.*known flavours: kasan"),
    ("debian-src:trixie", "valid forms"),
    ("debian-src:bookwurm+kasan", "unknown Debian suite 'bookwurm'"),
    ("local:", "needs the path of a kernel build tree"),
    ("local:/no/such/tree", "/no/such/tree is not a directory"),
])
def test_bad_tree_specs_say_what_is_wrong(text, words):
    with pytest.raises(UsageError, match=words):
        spec.parse_spec(text)


def test_flavours_are_the_packaged_config_fragments():
    """debian-src: flavours come from vm/configs/*.config, read as package data (harness.vm)."""
    assert "kasan" in resources.flavours()
    assert "CONFIG_KASAN=y" in resources.config_fragment("kasan").read_text()
    assert spec.parse_spec("debian-src:trixie+kasan").flavour == "kasan"

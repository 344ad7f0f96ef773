"""Kernel specs: what the user typed, checked and parsed (harness.kernel.spec)."""

import pytest

from harness import resources
from harness.errors import UsageError
from harness.kernel import spec, trees
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
    ("debian-src:trixie+nosuch", "unknown kernel flavour 'nosuch'.*known flavours: debug, gcov, kasan, kunit"),
    ("debian-src:trixie+kunit+nosuch", "unknown kernel flavour 'nosuch'"),
    ("debian-src:trixie+kunit+kunit", "names a flavour twice"),
    ("debian-src:trixie+kunit+", "valid forms"),
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


def test_flavours_join_and_their_configuration_is_theirs_in_order():
    s = spec.parse_spec("debian-src:trixie+kunit+gcov")
    assert s.flavour == "kunit+gcov" and str(s) == "debian-src:trixie+kunit+gcov"
    text = trees.fragment_text("kunit+gcov")
    assert text == resources.config_fragment("kunit").read_text() + resources.config_fragment("gcov").read_text()
    opts = trees.fragment_options(text)
    assert opts["CONFIG_KUNIT"] == "y" and opts["CONFIG_GCOV_KERNEL"] == "y" and opts["CONFIG_GCOV_PROFILE_ALL"] == "n"
    # One flavour's configuration (and so its cache key) is its fragment alone, as before flavours joined.
    assert trees.fragment_text("kasan") == resources.config_fragment("kasan").read_text()
    assert trees.config_hash("kunit+gcov") != trees.config_hash("gcov+kunit") != trees.config_hash("kunit")

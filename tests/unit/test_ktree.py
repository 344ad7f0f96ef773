"""Kernel trees: local: and debian-src: specs, tree checks, source resolution, config fragments."""

import io
from pathlib import Path

import pytest
from test_kernels import RecordedIndex

from harness import buildroot, kbuild, kernels, ktree
from harness.errors import InfraError, UsageError
from harness.progress import Printer

REPO = Path(__file__).resolve().parents[2]


def fake_tree(tmp_path: Path, modules: bool = True, release: str = "6.12.118-virtme") -> Path:
    """The files a built tree is checked for (contents are stand-ins)."""
    tree = tmp_path / "linux"
    for part in ktree._TREE_PARTS:
        (tree / part).parent.mkdir(parents=True, exist_ok=True)
        (tree / part).write_text("x")
    (tree / ".config").write_text("CONFIG_MODULES=y\n" if modules else "# CONFIG_MODULES is not set\n")
    (tree / "include/config/kernel.release").write_text(release + "\n")
    return tree


def test_specs_for_trees_parse_and_print_back(tmp_path):
    s = kernels.parse_spec("debian-src:trixie+kasan")
    assert (s.source, s.suite, s.flavour) == ("debian-src", "trixie", "kasan")
    assert str(s) == "debian-src:trixie+kasan"
    local = kernels.parse_spec(f"local:{tmp_path}/./")
    assert (local.source, local.path, local.suite) == ("local", str(tmp_path), kernels.LOCAL_ROOT_SUITE)
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
        kernels.parse_spec(text)


def test_a_built_tree_resolves_to_its_release(tmp_path):
    tree = fake_tree(tmp_path)
    k = ktree.local_kernel(kernels.parse_spec(f"local:{tree}"))
    assert (k.release, k.tree, k.compiler) == ("6.12.118-virtme", tree, "gcc")
    assert k.kernel_id == "local-6.12.118-virtme"
    assert k.package_version.startswith("local tree")


@pytest.mark.parametrize("missing, words", [
    ("arch/x86/boot/bzImage", "bzImage is missing; build it"),
    ("Module.symvers", "Module.symvers is missing; build its modules"),
    (".config", r"\.config is missing"),
])
def test_an_unbuilt_tree_is_a_usage_error_naming_the_part(tmp_path, missing, words):
    tree = fake_tree(tmp_path)
    (tree / missing).unlink()
    with pytest.raises(UsageError, match=words):
        ktree.local_kernel(kernels.parse_spec(f"local:{tree}"))


def test_a_kernel_without_module_support_is_refused(tmp_path):
    tree = fake_tree(tmp_path, modules=False)
    with pytest.raises(UsageError, match="CONFIG_MODULES is not y"):
        ktree.local_kernel(kernels.parse_spec(f"local:{tree}"))


def test_tree_kernels_boot_the_bzimage_and_build_against_the_tree(tmp_path):
    tree = fake_tree(tmp_path)
    k = ktree.local_kernel(kernels.parse_spec(f"local:{tree}"))
    root = buildroot.Root(tmp_path / "root", k)
    assert root.vmlinuz == tree / "arch/x86/boot/bzImage"
    argv = kbuild.make_argv(root, "/b")
    assert argv[:3] == ["make", "-C", str(tree)] and "CC=gcc" in argv and "W=1" in argv


def test_tree_kernels_share_their_suites_base_root(tmp_path):
    a = ktree.local_kernel(kernels.parse_spec(f"local:{fake_tree(tmp_path / 'a')}"))
    b = ktree.local_kernel(kernels.parse_spec(f"local:{fake_tree(tmp_path / 'b', release='7.0.0')}"))
    assert buildroot.root_key(a) == buildroot.root_key(b)
    assert buildroot.root_key(a).startswith("base-bookworm-")
    assert not any(p.startswith(("linux-", "gcc")) for p in buildroot.root_packages(a))


def test_a_base_root_needs_no_kernel_inside(tmp_path):
    k = ktree.local_kernel(kernels.parse_spec(f"local:{fake_tree(tmp_path)}"))
    root = tmp_path / "root"
    for rel in ("usr/bin/python3", "usr/bin/udevadm", buildroot.BLACKLIST_FILE, buildroot.CUTS_FILE):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text("x")
    for d in buildroot.mount_points(k):
        (root / d).mkdir(parents=True)
    buildroot.write_manifest(root, k)
    assert buildroot.check_root(root, k) is None
    (root / "lib/modules").rmdir()  # where the tree's modules are mounted
    assert "mount point /lib/modules is missing" in buildroot.check_root(root, k)
    (root / "lib/modules").mkdir()
    (root / "usr/bin/python3").unlink()
    assert "python3 is missing" in buildroot.check_root(root, k)


def test_a_rebuilt_tree_changes_the_module_cache_key(tmp_path):
    tree = fake_tree(tmp_path)
    before = ktree.tree_fingerprint(tree)
    (tree / "Module.symvers").write_text("y")
    assert ktree.tree_fingerprint(tree) != before


def test_source_package_resolves_from_the_recorded_trixie_index():
    src = ktree.resolve_source(kernels.parse_spec("debian-src:trixie+kasan"), RecordedIndex("trixie"))
    assert (src.package, src.version) == ("linux-source-6.12", "6.12.118-1")
    assert src.key == f"trixie-linux-source-6.12-6.12.118-1-kasan-{src.config_hash}"


def test_config_hash_follows_the_fragment(monkeypatch, tmp_path):
    before = ktree.config_hash("kasan")
    (tmp_path / "kasan.config").write_text(ktree.fragment_path("kasan").read_text() + "CONFIG_KCSAN=y\n")
    monkeypatch.setattr(ktree, "CONFIGS_DIR", tmp_path)
    assert ktree.config_hash("kasan") != before


def test_fragment_options_read_both_forms():
    opts = ktree.fragment_options((REPO / "vm/configs/kasan.config").read_text())
    assert opts["CONFIG_KASAN"] == "y"
    assert opts["CONFIG_DEBUG_KMEMLEAK_AUTO_SCAN"] == "n"
    assert opts["CONFIG_DEBUG_KMEMLEAK_MEM_POOL_SIZE"] == "16000"


def test_config_mismatches_name_what_kconfig_did_not_take():
    wanted = {"CONFIG_KASAN": "y", "CONFIG_DEBUG_INFO_NONE": "y", "CONFIG_DRM": "n"}
    config = "CONFIG_KASAN=y\n# CONFIG_DEBUG_INFO_NONE is not set\nCONFIG_DEBUG_INFO_DWARF_TOOLCHAIN_DEFAULT=y\n"
    assert ktree.config_mismatches(wanted, config) == {"CONFIG_DEBUG_INFO_NONE": "n"}


def tree_with_install(tmp_path: Path, recipe: str) -> Path:
    """A fake tree whose ``make modules_install`` runs ``recipe`` (a shell line)."""
    tree = fake_tree(tmp_path)
    (tree / "Makefile").write_text(f"modules_install:\n\t{recipe}\n")
    return tree


INSTALL = ("mkdir -p $(INSTALL_MOD_PATH)/lib/modules/6.12.118-virtme/kernel && "
           "touch $(INSTALL_MOD_PATH)/lib/modules/6.12.118-virtme/kernel/m.ko "
           "$(INSTALL_MOD_PATH)/lib/modules/6.12.118-virtme/modules.dep")


def test_tree_modules_are_installed_once_into_the_cache(tmp_path):
    tree = tree_with_install(tmp_path, INSTALL)
    got = kbuild.tree_modules(tree, tmp_path / "cache", Printer(io.StringIO()))
    assert (got / "6.12.118-virtme/kernel/m.ko").is_file()
    assert got.parent.parent.name == ktree.tree_fingerprint(tree)
    (tree / "Makefile").write_text("modules_install:\n\tfalse\n")  # not run again: the install is kept
    assert kbuild.tree_modules(tree, tmp_path / "cache", Printer(io.StringIO())) == got


@pytest.mark.parametrize("recipe, words", [
    ("mkdir -p $(INSTALL_MOD_PATH)/lib/modules && echo no modpost >&2 && false", "no modpost"),
    ("touch $(CURDIR)/written-into-the-tree", "Read-only file system"),  # the tree is never written
    ("mkdir -p $(INSTALL_MOD_PATH)/lib/modules", "failed"),  # exit 0 but no modules.dep
])
def test_a_failed_module_install_says_why_and_leaves_nothing(tmp_path, recipe, words):
    tree = tree_with_install(tmp_path, recipe)
    with pytest.raises(InfraError) as e:
        kbuild.tree_modules(tree, tmp_path / "cache", Printer(io.StringIO()))
    assert words in str(e.value) and str(tree) in str(e.value)
    assert [p.name for p in (tmp_path / "cache" / kbuild.TREE_MODULES).iterdir() if not p.name.endswith(".lock")] == []
    assert not (tree / "written-into-the-tree").exists()

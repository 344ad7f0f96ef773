"""Kernel trees: local: and debian-src: kernels, tree checks, source resolution, config fragments
(harness.kernel.trees), and the cache keys `harness kernels resolve` prints (harness.kernels_cmd)."""

from pathlib import Path

import pytest
from test_apt import RecordedIndex

from harness import arches, events, resources
from harness import kernels_cmd as manage
from harness.errors import InfraError, UsageError
from harness.kernel import cuts, debian_src, local, modbuild, roots, spec, trees
from harness.kernel.debian import DebianSpec
from harness.kernel.source import Resolution
from harness.model import ResolvedKernel

X86 = arches.ARCHES["amd64"]


def fake_tree(tmp_path: Path, modules: bool = True, release: str = "6.12.118-virtme") -> Path:
    """The files a built tree is checked for (contents are stand-ins)."""
    tree = tmp_path / "linux"
    for part in (*trees._TREE_PARTS, X86.tree_image):
        (tree / part).parent.mkdir(parents=True, exist_ok=True)
        (tree / part).write_text("x")
    (tree / ".config").write_text("CONFIG_MODULES=y\n" if modules else "# CONFIG_MODULES is not set\n")
    (tree / "include/config/kernel.release").write_text(release + "\n")
    return tree


def test_a_built_tree_resolves_to_its_release(tmp_path):
    tree = fake_tree(tmp_path)
    k = local.local_kernel(spec.parse_spec(f"local:{tree}"))
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
    problem = trees.check_tree(tree, X86)
    assert problem is not None and words.replace("\\", "") in problem
    with pytest.raises(UsageError, match=words):
        local.local_kernel(spec.parse_spec(f"local:{tree}"))


def test_a_kernel_without_module_support_is_refused(tmp_path):
    tree = fake_tree(tmp_path, modules=False)
    with pytest.raises(UsageError, match="CONFIG_MODULES is not y"):
        local.local_kernel(spec.parse_spec(f"local:{tree}"))


def test_tree_kernels_boot_the_bzimage_and_build_against_the_tree(tmp_path):
    tree = fake_tree(tmp_path)
    k = local.local_kernel(spec.parse_spec(f"local:{tree}"))
    root = roots.Root(tmp_path / "root", k)
    assert root.vmlinuz == tree / "arch/x86/boot/bzImage"
    argv = modbuild.make_argv(root, "/b")
    assert argv[:3] == ["make", "-C", str(tree)] and "CC=gcc" in argv and "W=1" in argv


def test_tree_kernels_share_their_suites_base_root(tmp_path):
    a = local.local_kernel(spec.parse_spec(f"local:{fake_tree(tmp_path / 'a')}"))
    b = local.local_kernel(spec.parse_spec(f"local:{fake_tree(tmp_path / 'b', release='7.0.0')}"))
    assert roots.root_key(a) == roots.root_key(b)
    assert roots.root_key(a).startswith("base-bookworm-")
    assert not any(p.startswith(("linux-", "gcc")) for p in roots.root_packages(a))


def test_a_base_root_needs_no_kernel_inside(tmp_path):
    k = local.local_kernel(spec.parse_spec(f"local:{fake_tree(tmp_path)}"))
    root = tmp_path / "root"
    for rel in ("usr/bin/python3", "usr/bin/udevadm", cuts.BLACKLIST_FILE, cuts.CUTS_FILE):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text("x")
    for d in roots.mount_points(k):
        (root / d).mkdir(parents=True)
    roots.write_manifest(root, k)
    assert roots.check_root(root, k) is None
    (root / "lib/modules").rmdir()  # where the tree's modules are mounted
    problem = roots.check_root(root, k)
    assert problem is not None and "mount point /lib/modules is missing" in problem
    (root / "lib/modules").mkdir()
    (root / "usr/bin/python3").unlink()
    problem = roots.check_root(root, k)
    assert problem is not None and "python3 is missing" in problem


def test_a_rebuilt_tree_changes_the_module_cache_key(tmp_path):
    tree = fake_tree(tmp_path)
    before = trees.tree_fingerprint(local.local_kernel(spec.parse_spec(f"local:{tree}")))
    (tree / "Module.symvers").write_text("y")
    assert trees.tree_fingerprint(local.local_kernel(spec.parse_spec(f"local:{tree}"))) != before


def test_source_package_resolves_from_the_recorded_trixie_index():
    src = debian_src.resolve_source(spec.parse_spec("debian-src:trixie+kasan"), RecordedIndex("trixie"))
    assert (src.package, src.version) == ("linux-source-6.12", "6.12.118-1")
    assert src.key == f"trixie-linux-source-6.12-6.12.118-1-kasan-{src.config_hash}"


def test_config_hash_follows_the_fragment(monkeypatch, tmp_path):
    before = debian_src.config_hash("kasan")
    (tmp_path / "kasan.config").write_text(resources.config_fragment("kasan").read_text() + "CONFIG_KCSAN=y\n")
    monkeypatch.setattr(resources, "config_fragment", lambda flavour: tmp_path / f"{flavour}.config")
    assert debian_src.fragment_path("kasan") == tmp_path / "kasan.config"
    assert debian_src.config_hash("kasan") != before


def test_fragment_options_read_both_forms():
    opts = trees.fragment_options(resources.config_fragment("kasan").read_text())
    assert opts["CONFIG_KASAN"] == "y"
    assert opts["CONFIG_DEBUG_KMEMLEAK_AUTO_SCAN"] == "n"
    assert opts["CONFIG_DEBUG_KMEMLEAK_MEM_POOL_SIZE"] == "16000"


def test_config_mismatches_name_what_kconfig_did_not_take():
    wanted = {"CONFIG_KASAN": "y", "CONFIG_DEBUG_INFO_NONE": "y", "CONFIG_DRM": "n"}
    config = "CONFIG_KASAN=y\n# CONFIG_DEBUG_INFO_NONE is not set\nCONFIG_DEBUG_INFO_DWARF_TOOLCHAIN_DEFAULT=y\n"
    assert trees.config_mismatches(wanted, config) == {"CONFIG_DEBUG_INFO_NONE": "n"}


FRAGMENT = "CONFIG_KASAN=y\n# CONFIG_DRM is not set\nCONFIG_NR_CPUS=4\nCONFIG_TEST_LKM=m\n"


def _configure(tmp_path: Path, after_kconfig: str, after_fix: str):
    """configure() with a fake step: vng --kconfig writes ``after_kconfig``, scripts/config ``after_fix``."""
    tree = tmp_path / "linux"
    tree.mkdir()
    fragment = tmp_path / "flav.config"
    fragment.write_text(FRAGMENT)
    calls = []

    def step(argv, what, cwd):
        calls.append((argv, what, cwd))
        if what == "vng --kconfig":
            (tree / ".config").write_text(after_kconfig)
        elif what == "scripts/config":
            (tree / ".config").write_text(after_fix)

    trees.configure("/usr/bin/vng", tree, fragment, step)
    return calls, tree, fragment


def test_configure_keeps_what_virtme_ng_left_as_the_fragment_asked(tmp_path):
    calls, tree, fragment = _configure(tmp_path, FRAGMENT, "")
    assert calls == [(["/usr/bin/vng", "--kconfig", "--config", str(fragment)], "vng --kconfig", tree)]


def test_configure_sets_again_what_virtme_ng_overrode(tmp_path):
    overridden = "CONFIG_KASAN=y\nCONFIG_DRM=y\nCONFIG_NR_CPUS=64\n"
    calls, tree, _ = _configure(tmp_path, overridden, FRAGMENT)
    assert [c[1] for c in calls] == ["vng --kconfig", "scripts/config", "make olddefconfig"]
    assert calls[1][0] == ["./scripts/config", "-d", "DRM", "--set-val", "NR_CPUS", "4", "-m", "TEST_LKM"]
    assert calls[2][0] == ["make", "olddefconfig"] and all(c[2] == tree for c in calls)


def test_configure_names_what_kconfig_refused(tmp_path):
    with pytest.raises(InfraError, match=r"flav\.config: Kconfig refused CONFIG_KASAN=y \(got n\)"):
        _configure(tmp_path, "CONFIG_NR_CPUS=4\nCONFIG_TEST_LKM=m\n", "CONFIG_NR_CPUS=4\nCONFIG_TEST_LKM=m\n")


def test_cache_keys_change_when_and_only_when_the_kernel_does(tmp_path):
    """`harness kernels resolve` prints manage.cache_key: what CI caches a kernel's root under."""
    bookworm = ResolvedKernel(DebianSpec("debian", "bookworm"), "6.1.0-56-amd64", "6.1.192-2",
                              ("linux-image-6.1.0-56-amd64", "linux-headers-6.1.0-56-amd64"), "gcc-12")
    assert manage.cache_key(Resolution(bookworm)) == "debian-bookworm-6.1.0-56-amd64-6.1.192-2"
    rebuilt = ResolvedKernel(bookworm.spec, bookworm.release, "6.1.192-3", bookworm.packages, bookworm.compiler)
    assert manage.cache_key(Resolution(rebuilt)) != manage.cache_key(Resolution(bookworm))

    src = debian_src.resolve_source(spec.parse_spec("debian-src:trixie+kasan"), RecordedIndex("trixie"))
    assert manage.cache_key(Resolution(pending=src)) == f"debian-src-{src.key}"

    tree = fake_tree(tmp_path)
    mine = local.local_kernel(spec.parse_spec(f"local:{tree}"))
    key = manage.cache_key(Resolution(mine))
    assert key == f"local-6.12.118-virtme-{trees.tree_fingerprint(mine)}"
    assert manage.cache_key(Resolution(local.local_kernel(spec.parse_spec(f"local:{tree}")))) == key
    (tree / ".config").write_text("CONFIG_MODULES=y\nCONFIG_KASAN=y\n")  # reconfigured (and rebuilt)
    assert manage.cache_key(Resolution(local.local_kernel(spec.parse_spec(f"local:{tree}")))) != key


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
    kernel = local.local_kernel(spec.parse_spec(f"local:{tree}"))
    got = trees.tree_modules(kernel, tmp_path / "cache", events.discard)
    assert (got / "6.12.118-virtme/kernel/m.ko").is_file()
    assert got.parent.parent.name == trees.tree_fingerprint(kernel)
    (tree / "Makefile").write_text("modules_install:\n\tfalse\n")  # not run again: the install is kept
    assert trees.tree_modules(kernel, tmp_path / "cache", events.discard) == got


@pytest.mark.parametrize("recipe, words", [
    ("mkdir -p $(INSTALL_MOD_PATH)/lib/modules && echo no modpost >&2 && false", "no modpost"),
    ("touch $(CURDIR)/written-into-the-tree", "Read-only file system"),  # the tree is never written
    ("mkdir -p $(INSTALL_MOD_PATH)/lib/modules", "failed"),  # exit 0 but no modules.dep
])
def test_a_failed_module_install_says_why_and_leaves_nothing(tmp_path, recipe, words):
    tree = tree_with_install(tmp_path, recipe)
    with pytest.raises(InfraError) as e:
        trees.tree_modules(local.local_kernel(spec.parse_spec(f"local:{tree}")), tmp_path / "cache", events.discard)
    assert words in str(e.value) and str(tree) in str(e.value)
    assert [p.name for p in (tmp_path / "cache" / trees.TREE_MODULES).iterdir() if not p.name.endswith(".lock")] == []
    assert not (tree / "written-into-the-tree").exists()

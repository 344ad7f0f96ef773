"""The kernel sources behind one interface (harness/kernel/source.py), by one registry
(harness/kernel/registry.py): each parses and writes its own specs and answers for its kernels;
a new source is a module of its own and a line in the registry."""

import ast
from dataclasses import dataclass
from pathlib import Path

import pytest
from test_apt import RecordedIndex

from harness import arches, events, phases
from harness import kernels_cmd as manage
from harness.errors import UsageError
from harness.kernel import apt, debian, debian_src, modbuild, registry, roots, spec, trees
from harness.kernel.apt import Mirror
from harness.kernel.source import Archive, Resolution
from harness.model import BuildIn, KernelSpec, ResolvedKernel

from conftest import REPO

HARNESS = REPO / "harness"
SOURCE_MODULES = {"debian.py", "debian_src.py", "local.py", "registry.py"}


@pytest.mark.parametrize("text", [
    "debian:bookworm", "debian:sid@7.2.13+deb14", "debian:trixie:arm64", "debian-src:trixie+kunit+gcov",
])
def test_each_source_writes_back_what_it_parsed(text):
    s = spec.parse_spec(text)
    assert str(s) == text and spec.parse_spec(str(s)) == s
    assert registry.of(s).name == text.split(":", 1)[0]


def test_a_local_spec_is_written_with_its_resolved_path(tmp_path):
    s = spec.parse_spec(f"local:{tmp_path}/.")
    assert str(s) == f"local:{tmp_path}" and s.arch == arches.host().name


def test_the_spec_forms_are_every_sources_own():
    for source in registry.SOURCES.values():
        assert source.forms in spec.SPEC_FORMS
        assert all(line.startswith((f"{source.name}:", " ")) for line in source.forms.splitlines())


def test_an_unknown_source_names_the_known_ones():
    with pytest.raises(UsageError, match="unknown kernel source 'kernelorg'.*known: debian, debian-src, local"):
        spec.parse_spec("kernelorg:6.12.5")


def test_no_module_but_the_sources_and_their_registry_names_a_source():
    """`source == "local"` branches are what the registry replaced: a source's name as a string
    appears in its own module only."""
    names = set(registry.SOURCES)
    found = []
    for path in HARNESS.rglob("*.py"):
        if path.name in SOURCE_MODULES and path.parent.name == "kernel":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Constant) and node.value in names:
                found.append(f"{path.relative_to(REPO)}:{node.lineno}: {node.value!r}")
    assert found == []


def test_a_packaged_kernel_needs_its_packages_and_compiler_in_its_root(tmp_path):
    kernel = apt.resolve(debian.DebianSpec("debian", "bookworm"), RecordedIndex("bookworm"))
    need = debian.SOURCE.root(kernel)
    assert need.base is False and kernel.compiler in need.packages and set(kernel.packages) <= set(need.packages)
    assert debian.SOURCE.headers(kernel) == f"/usr/src/linux-headers-{kernel.release}"
    assert debian.SOURCE.config(kernel, tmp_path) == tmp_path / "boot" / f"config-{kernel.release}"


# ---- a source the harness does not have: kernel.org releases, built here ---------------------------------------


@dataclass(frozen=True)
class OrgSpec(KernelSpec):
    def __str__(self) -> str:
        return f"{self.source}:{self.pin}"

    def kernel_id(self, release: str) -> str:
        return f"{self.source}-{release}"


@dataclass(frozen=True)
class OrgBuild:
    """What resolve gives for a kernel still to build; ``build`` makes a stand-in tree."""

    spec: KernelSpec
    tree: Path

    @property
    def key(self) -> str:
        return f"linux-{self.spec.pin}"

    def describe(self) -> str:
        return f"linux-{self.spec.pin}.tar.xz built with {trees.HOST_COMPILER}"

    def cached(self, cache: Path) -> bool:
        return False

    def build(self, cache: Path, sink, timeout: float) -> ResolvedKernel:
        arch = arches.get(self.spec.arch)
        for part in (*trees._TREE_PARTS, arch.tree_image):
            (self.tree / part).parent.mkdir(parents=True, exist_ok=True)
            (self.tree / part).write_text("x")
        (self.tree / ".config").write_text("CONFIG_MODULES=y\n")
        (self.tree / "include/config/kernel.release").write_text(f"{self.spec.pin}\n")
        return ResolvedKernel(self.spec, self.spec.pin or "", "kernel.org", (), trees.HOST_COMPILER, tree=self.tree)


class KernelOrg(trees.TreeKernels):
    name = "kernelorg"
    forms = "kernelorg:VERSION       a kernel.org release, built here"

    def __init__(self, tree: Path):
        self.tree_dir = tree

    def parse(self, text: str) -> KernelSpec:
        return OrgSpec(self.name, "bookworm", pin=text.split(":", 1)[1], arch=arches.host().name)

    def resolve(self, spec: KernelSpec, archive: Archive) -> Resolution:
        return Resolution(pending=OrgBuild(spec, self.tree_dir))


def test_a_new_source_is_one_class_and_a_registry_entry(tmp_path, monkeypatch):
    """Everything a run asks of a kernel goes through the registry: a source registered there (and
    nowhere else) is parsed, resolved and built, gets its root, boots and builds modules."""
    monkeypatch.setitem(registry.SOURCES, "kernelorg", KernelOrg(tmp_path / "linux"))
    s = spec.parse_spec("kernelorg:6.12.5")
    assert str(s) == "kernelorg:6.12.5"
    assert phases._build_in("auto", phases.Accel.KVM, s) is BuildIn.HOST  # a tree: built on the host
    with pytest.raises(UsageError, match="kernelorg: kernels come for this host's architecture only"):
        spec.with_arch("kernelorg:6.12.5", next(a for a in arches.ARCHES if a != arches.host().name))
    got = phases.resolve_spec(s, Mirror(), tmp_path / "cache", 0)
    assert got.kernel is None and got.pending is not None
    assert manage.cache_key(got) == "kernelorg-linux-6.12.5"
    kernel = got.pending.build(tmp_path / "cache", events.discard, 60)
    assert kernel.kernel_id == "kernelorg-6.12.5"
    assert roots.root_key(kernel).startswith("base-bookworm-")  # the suite's base root
    root = roots.Root(tmp_path / "root", kernel)
    assert root.vmlinuz == tmp_path / "linux" / arches.host().tree_image
    argv = modbuild.make_argv(root, "/b")
    assert argv[:3] == ["make", "-C", str(tmp_path / "linux")] and f"CC={trees.HOST_COMPILER}" in argv


def test_a_debian_src_kernel_is_still_to_build_and_says_what(tmp_path):
    src = debian_src.resolve_source(spec.parse_spec("debian-src:trixie+kasan"), RecordedIndex("trixie"))
    assert src.describe() == f"linux-source-6.12 6.12.118-1 built with {trees.HOST_COMPILER}"
    assert not src.cached(tmp_path)

"""A project's description of its module(s): ``harness.toml``, or ``[tool.harness]`` in pyproject.toml.

The file is checked against ``schema.ProjectFile`` before anything runs (every wrong value
is an error naming the file, the line and the key); what the schema cannot know (that the
source directory exists, inside the project, that a known failure names a valid kernel)
is checked here.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from harness import schema, tomlload, userfile
from harness.errors import UsageError
from harness.fuzzdecl import FuzzDecl
from harness.model import BuildOptions
from harness.verdict.compare import Expected
from harness.verdict.trail import Allowance


@dataclass(frozen=True)
class GuestStep:
    name: str
    argv: tuple[str, ...]
    timeout: float = 60.0
    expect_rc: int = 0
    when: str = "loaded"  # "before" insmod, while "loaded", or "after" rmmod
    env: tuple[tuple[str, str], ...] = ()
    cwd: Optional[str] = None  # None: the guest's writable work directory


@dataclass(frozen=True)
class ModuleLoad:
    """One module the project builds and loads: its .ko's name and its insmod parameters."""

    name: str  # the .ko file's name without .ko, e.g. "hello-5"
    params: tuple[str, ...] = ()

    @property
    def module(self) -> str:
        """The name the kernel (lsmod, rmmod, /sys/module) knows it by: dashes become underscores."""
        return self.name.replace("-", "_")


@dataclass(frozen=True)
class KUnit:
    """``[kunit]``: test modules built from the source directory, loaded after the project's own
    modules on kernels with CONFIG_KUNIT; loading one runs its suites, which print KTAP."""

    modules: tuple[str, ...] = ()
    timeout: float = 300.0  # for each test module's insmod, which returns when its suites ran


@dataclass(frozen=True)
class Project:
    root: Path  # the directory the guest sees at /project
    source: Path
    trail: Path
    modules: tuple[ModuleLoad, ...]  # loaded in this order, unloaded in reverse
    requires: tuple[str, ...] = ()  # the kernel's own modules, modprobe'd before the first insmod
    steps: tuple[GuestStep, ...] = ()
    build: BuildOptions = BuildOptions()
    where: str = ""  # the file this came from, for messages
    known_failures: tuple[Expected, ...] = ()  # [[known_failure]]: kernels this module is known to fail on
    kunit: KUnit = KUnit()
    packages: tuple[str, ...] = ()  # [guest] packages: extra Debian packages in the guest's root
    files: tuple[Path, ...] = ()  # the project's own files (the description, the trail): not build input
    allow: tuple[Allowance, ...] = ()  # [[allow]]: intended kernel records (complaints), with why
    bound: Optional[Path] = None  # what the build may read: the git work tree, else the directory (``boundary``)
    fuzz: Optional[FuzzDecl] = None  # [fuzz]: the interfaces `harness fuzz` sends inputs to (None: not declared)

    @property
    def module(self) -> str:
        """The first (for most projects, the only) module's kernel name."""
        return self.modules[0].module


def load_project(path: Path) -> Project:
    """A directory with harness.toml (or [tool.harness] in pyproject.toml), or a .toml file itself:
    several descriptions can then share one directory (and the files in it the guest sees)."""
    path = path.resolve()
    if path.is_file():
        return from_document(tomlload.load_document(path), path.parent, path)
    if not path.is_dir():
        raise UsageError(f"project {path} does not exist",
                         hint="--project takes a directory with harness.toml, or such a .toml file")
    toml = path / "harness.toml"
    if toml.is_file():
        return from_document(tomlload.load_document(toml), path, toml)
    pp = path / "pyproject.toml"
    if not pp.is_file():
        raise UsageError(f"no harness.toml (or [tool.harness] in pyproject.toml) in {path}",
                         hint="`harness init` writes one for a kbuild module directory; see README.md")
    doc = tomlload.load_document(pp)
    tool = doc.data.get("tool", {})
    data = tool.get("harness") if isinstance(tool, dict) else None
    if data is None:
        raise UsageError(f"no harness.toml in {path}, and {pp} has no [tool.harness] table",
                         hint="`harness init` writes a harness.toml for a kbuild module directory; see README.md")
    if not isinstance(data, dict):
        raise UsageError(f"{pp}: [tool] harness must be a table ([tool.harness]), got {type(data).__name__}")
    return from_document(userfile.Document(data, doc.text, str(pp), prefix=("tool", "harness")), path, pp)


def parse_project(data: dict[str, Any], directory: Path, where: str) -> Project:
    """A project from already-parsed data (no file text, so errors name no line)."""
    return from_document(userfile.Document(data, "", where), directory)


def from_document(doc: userfile.Document, directory: Path, file: Optional[Path] = None) -> Project:
    m = userfile.check(schema.ProjectFile, doc)
    where = doc.where + (" [tool.harness]" if doc.prefix else "")
    bound = boundary(directory)
    source = inside(bound, directory, m.module.source, f"{where}: [module] source")
    if not source.is_dir():
        raise UsageError(f"{where}: [module] source: directory {source} does not exist")
    trail = inside(bound, directory, m.module.trail, f"{where}: [module] trail")
    modules = ((ModuleLoad(m.module.name, tuple(m.module.params)),) if m.module.name is not None
               else tuple(ModuleLoad(x.name, tuple(x.params)) for x in m.module.load or ()))
    steps = tuple(GuestStep(s.name, tuple(s.run), s.timeout, s.expect_rc, s.when, tuple(sorted(s.env.items())),
                            s.cwd) for s in m.step)
    b = m.build
    return Project(root=directory, source=source, trail=trail, modules=modules, requires=tuple(m.module.requires),
                   steps=steps, build=BuildOptions(b.w1, tuple(b.args), tuple(b.command) if b.command else None),
                   where=where, known_failures=tuple(_known(k, where) for k in m.known_failure),
                   kunit=KUnit(tuple(m.kunit.modules), m.kunit.timeout), packages=tuple(m.guest.packages),
                   files=tuple(p for p in (file, trail) if p is not None), bound=bound,
                   allow=tuple(Allowance(re.compile(a.pattern), a.reason) for a in m.allow), fuzz=m.fuzz)


def boundary(directory: Path) -> Path:
    """What the project is, for what the harness may read of it: the git work tree the description
    lies in (a repository may keep its module beside its tests), else the description's directory."""
    here = directory.resolve()
    for d in (here, *here.parents):
        if (d / ".git").exists():
            return d
    return here


def inside(bound: Path, directory: Path, rel: str, what: str) -> Path:
    """``rel`` resolved against the description's directory; it must not leave the project (no
    ``..`` out of it, no absolute path elsewhere, no symlink that points out)."""
    if os.path.isabs(rel):
        raise UsageError(f"{what}: {rel!r} is an absolute path", hint="give a path relative to the project directory")
    resolved = (directory.resolve() / rel).resolve()
    if resolved != bound and bound not in resolved.parents:
        raise UsageError(f"{what}: {rel!r} leaves the project {bound} (it is {resolved})",
                         hint="everything the harness reads of a project lies inside it: its directory, or the "
                         "git work tree the description is in")
    return resolved


def _known(k: schema.ProjectKnownFailure, where: str) -> Expected:
    from harness.kernel.spec import parse_spec

    try:
        parse_spec(k.kernel)
    except UsageError as e:
        raise UsageError(f"{where}: [[known_failure]] kernel: {e.message}") from None
    return Expected(k.kernel, k.verdict, k.why, k.match)

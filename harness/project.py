"""A project's description of its module(s): ``harness.toml``, or ``[tool.harness]`` in pyproject.toml.

Every wrong value is an error naming the file and the key, and saying what would do.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from harness import tomlload
from harness.errors import UsageError
from harness.guest.contract import WHEN
from harness.verdict.compare import Expected, parse_expected

_MODULE_NAME = re.compile(r"[A-Za-z0-9_-]+")
_PARAM = re.compile(r"[A-Za-z0-9_.-]+=\S.*|[A-Za-z0-9_.-]+")
_PLACEHOLDERS = ("{headers}", "{cc}", "{release}", "{src}")


@dataclass(frozen=True)
class GuestStep:
    name: str
    argv: tuple[str, ...]
    timeout: float = 60.0
    expect_rc: int = 0
    when: str = "loaded"  # "before" insmod, while "loaded", or "after" rmmod


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
class BuildOptions:
    w1: bool = True  # build with W=1 (extra warnings); off for projects whose flags make warnings errors
    args: tuple[str, ...] = ()  # extra make arguments (VAR=value)
    # The project's own build command instead of kbuild's, run in the source directory, with
    # {headers}, {cc}, {release} and {src} replaced; None: make -C {headers} M={src} modules.
    command: Optional[tuple[str, ...]] = None


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

    @property
    def module(self) -> str:
        """The first (for most projects, the only) module's kernel name."""
        return self.modules[0].module


def load_project(path: Path) -> Project:
    """A directory with harness.toml (or [tool.harness] in pyproject.toml), or a .toml file itself:
    several descriptions can then share one directory (and the files in it the guest sees)."""
    path = path.resolve()
    if path.is_file():
        return parse_project(tomlload.load(path), path.parent, str(path))
    if not path.is_dir():
        raise UsageError(f"project {path} does not exist",
                         hint="--project takes a directory with harness.toml, or such a .toml file")
    toml = path / "harness.toml"
    if toml.is_file():
        return parse_project(tomlload.load(toml), path, str(toml))
    pp = path / "pyproject.toml"
    data = tomlload.load(pp).get("tool", {}).get("harness") if pp.is_file() else None
    if not data:
        raise UsageError(f"no harness.toml (or [tool.harness] in pyproject.toml) in {path}",
                         hint="`harness init` writes one for a kbuild module directory; see README.md")
    return parse_project(data, path, f"{pp} [tool.harness]")


def parse_project(data: dict[str, Any], directory: Path, where: str) -> Project:
    mod = data.get("module")
    if not isinstance(mod, dict):
        raise UsageError(f"{where}: missing [module] table", hint="[module] needs source, trail and a name")
    for key in ("source", "trail"):
        if not isinstance(mod.get(key), str):
            raise UsageError(f"{where}: [module] needs a string '{key}'")
    unknown = set(mod) - {"name", "source", "trail", "params", "requires", "load"}
    if unknown:
        raise UsageError(f"{where}: [module] has unknown keys {sorted(unknown)}",
                         hint="known: name, params, load, requires, source, trail")
    source = (directory / mod["source"]).resolve()
    if not source.is_dir():
        raise UsageError(f"{where}: [module] source: directory {source} does not exist")
    steps = tuple(_step(s, i, where) for i, s in enumerate(_list(data, "step", where)))
    requires = _names(mod.get("requires", []), f"{where}: [module] requires")
    known = tuple(_known(k, i, where) for i, k in enumerate(_list(data, "known_failure", where)))
    modules = _modules(mod, where)
    return Project(root=directory, source=source, trail=(directory / mod["trail"]).resolve(),
                   modules=modules, requires=requires, steps=steps,
                   build=_build(data.get("build", {}), where), where=where, known_failures=known,
                   kunit=_kunit(data.get("kunit", {}), modules, where))


def _kunit(d: Any, modules: tuple[ModuleLoad, ...], where: str) -> KUnit:
    if not isinstance(d, dict):
        raise UsageError(f"{where}: [kunit] must be a table", hint='e.g. [kunit] modules = ["mymod_test"]')
    unknown = set(d) - {"modules", "timeout"}
    if unknown:
        raise UsageError(f"{where}: [kunit] has unknown keys {sorted(unknown)}; known: modules, timeout")
    names = d.get("modules", [])
    if not isinstance(names, list) or not all(isinstance(n, str) and _MODULE_NAME.fullmatch(n) for n in names):
        raise UsageError(f"{where}: [kunit] modules must be a list of .ko names without .ko, got {names!r}",
                         hint='the KUnit test modules your Kbuild builds, e.g. modules = ["mymod_test"]')
    clash = sorted(set(names) & {m.name for m in modules})
    if clash or len(set(names)) != len(names):
        raise UsageError(f"{where}: [kunit] modules names {clash or names} twice (or as a [module] too)",
                         hint="list each KUnit test module once, and not the module under test")
    timeout = d.get("timeout", 300)
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or timeout <= 0:
        raise UsageError(f"{where}: [kunit] timeout must be a positive number of seconds, got {timeout!r}")
    return KUnit(tuple(names), float(timeout))


def _known(d: dict[str, Any], i: int, where: str) -> Expected:
    from harness.kernel.spec import parse_spec

    kernel = d.get("kernel")
    if not isinstance(kernel, str):
        raise UsageError(f"{where}: [[known_failure]] #{i + 1} needs a kernel spec, e.g. kernel = \"debian:sid\"")
    parse_spec(kernel)
    return parse_expected({k: v for k, v in d.items() if k != "kernel"}, kernel, f"{where}: [[known_failure]] #{i + 1}")


def _list(data: dict[str, Any], key: str, where: str) -> list[dict[str, Any]]:
    value = data.get(key, [])
    if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
        raise UsageError(f"{where}: '{key}' must be an array of tables ([[{key}]])")
    return value


def _modules(mod: dict[str, Any], where: str) -> tuple[ModuleLoad, ...]:
    if ("name" in mod) == ("load" in mod):
        raise UsageError(f"{where}: [module] needs exactly one of 'name' (one module) or [[module.load]] (several)")
    if "name" in mod:
        return (_module({"name": mod["name"], "params": mod.get("params", [])}, f"{where}: [module]"),)
    if "params" in mod:
        raise UsageError(f"{where}: [module] params goes inside each [[module.load]] when there are several")
    loads = _list(mod, "load", where)
    if not loads:
        raise UsageError(f"{where}: [[module.load]] is empty: name at least one module")
    out = tuple(_module(m, f"{where}: [[module.load]] #{i + 1}") for i, m in enumerate(loads))
    seen = [m.module for m in out]
    if len(set(seen)) != len(seen):
        raise UsageError(f"{where}: [[module.load]] names a module twice: {seen}")
    return out


def _module(d: dict[str, Any], where: str) -> ModuleLoad:
    name = d.get("name")
    if not isinstance(name, str) or not _MODULE_NAME.fullmatch(name):
        raise UsageError(f"{where} name {name!r} is not a module name",
                         hint="the .ko file's name without .ko: letters, digits, '_' and '-'")
    unknown = set(d) - {"name", "params"}
    if unknown:
        raise UsageError(f"{where} has unknown keys {sorted(unknown)}; known: name, params")
    params = d.get("params", [])
    if not isinstance(params, list) or not all(isinstance(p, str) and _PARAM.fullmatch(p) for p in params):
        raise UsageError(f"{where} params must be a list of strings like \"devices=2\", got {params!r}")
    return ModuleLoad(name, tuple(params))


def _names(value: Any, where: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) and _MODULE_NAME.fullmatch(v) for v in value):
        raise UsageError(f"{where} must be a list of module names like \"nf_conntrack\", got {value!r}")
    return tuple(value)


def _build(d: Any, where: str) -> BuildOptions:
    if not isinstance(d, dict):
        raise UsageError(f"{where}: [build] must be a table")
    unknown = set(d) - {"w1", "args", "command"}
    if unknown:
        raise UsageError(f"{where}: [build] has unknown keys {sorted(unknown)}; known: w1, args, command")
    w1 = d.get("w1", True)
    if not isinstance(w1, bool):
        raise UsageError(f"{where}: [build] w1 must be true or false, got {w1!r}")
    args = d.get("args", [])
    if not isinstance(args, list) or not all(isinstance(a, str) for a in args):
        raise UsageError(f"{where}: [build] args must be a list of strings like \"KCFLAGS=-DDEBUG\", got {args!r}")
    command = d.get("command")
    if command is not None and (not isinstance(command, list) or not command
                                or not all(isinstance(a, str) for a in command)):
        raise UsageError(f"{where}: [build] command must be a non-empty list of strings, got {command!r}",
                         hint=f"e.g. [\"make\", \"KDIR={{headers}}\", \"CC={{cc}}\"]; placeholders: {_PLACEHOLDERS}")
    return BuildOptions(w1, tuple(args), tuple(command) if command is not None else None)


def _step(s: dict[str, Any], i: int, where: str) -> GuestStep:
    run = s.get("run")
    if not isinstance(s.get("name"), str) or not isinstance(run, list) or not run \
            or not all(isinstance(a, str) for a in run):
        raise UsageError(f"{where}: [[step]] #{i + 1} needs a 'name' and a 'run' list of strings")
    name = s["name"]
    if name.startswith("kunit ") or name == "coverage":
        raise UsageError(f"{where}: [[step]] {name!r}: names 'kunit ...' and 'coverage' are the harness's own steps",
                         hint="name the step otherwise; KUnit test modules go in [kunit] modules")
    when = s.get("when", "loaded")
    if when not in WHEN:
        raise UsageError(f"{where}: [[step]] {name!r}: when = {when!r}; use one of {', '.join(WHEN)}")
    timeout, expect_rc = s.get("timeout", 60), s.get("expect_rc", 0)
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or timeout <= 0:
        raise UsageError(f"{where}: [[step]] {name!r}: timeout must be a positive number of seconds, got {timeout!r}")
    if isinstance(expect_rc, bool) or not isinstance(expect_rc, int) or not 0 <= expect_rc <= 255:
        raise UsageError(f"{where}: [[step]] {name!r}: expect_rc must be an exit status 0-255, got {expect_rc!r}")
    return GuestStep(name, tuple(run), float(timeout), expect_rc, when)

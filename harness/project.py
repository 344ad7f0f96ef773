"""A project's description of its module: harness.toml or [tool.harness] in pyproject.toml."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness import tomlload
from harness.errors import UsageError

WHEN = ("before", "loaded", "after")


@dataclass(frozen=True)
class GuestStep:
    name: str
    argv: tuple[str, ...]
    timeout: float = 60.0
    expect_rc: int = 0
    when: str = "loaded"  # "before" insmod, while "loaded", or "after" rmmod


@dataclass(frozen=True)
class Project:
    root: Path
    module: str
    source: Path
    trail: Path
    steps: tuple[GuestStep, ...]


def load_project(path: Path) -> Project:
    """A directory with harness.toml (or [tool.harness] in pyproject.toml), or a .toml file itself:
    several descriptions can then share one directory (and the files in it the guest sees)."""
    path = path.resolve()
    if path.is_file():
        return parse_project(tomlload.load(path), path.parent, str(path))
    directory = path
    toml = directory / "harness.toml"
    if toml.is_file():
        data, where = tomlload.load(toml), str(toml)
    else:
        pp = directory / "pyproject.toml"
        data = tomlload.load(pp).get("tool", {}).get("harness") if pp.is_file() else None
        where = f"{pp} [tool.harness]"
        if not data:
            raise UsageError(
                f"no harness.toml (or [tool.harness] in pyproject.toml) in {directory}",
                hint="describe the module: [module] name, source, trail; see README.md",
            )
    return parse_project(data, directory, where)


def parse_project(data: dict[str, Any], directory: Path, where: str) -> Project:
    mod = data.get("module")
    if not isinstance(mod, dict):
        raise UsageError(f"{where}: missing [module] table")
    for key in ("name", "source", "trail"):
        if not isinstance(mod.get(key), str):
            raise UsageError(f"{where}: [module] needs a string '{key}'")
    if not re.fullmatch(r"[A-Za-z0-9_-]+", mod["name"]):
        raise UsageError(f"{where}: module name {mod['name']!r} is not a valid module name")
    source = (directory / mod["source"]).resolve()
    trail = (directory / mod["trail"]).resolve()
    if not source.is_dir():
        raise UsageError(f"{where}: module source directory {source} does not exist")
    if not trail.is_file():
        raise UsageError(f"{where}: trail file {trail} does not exist")
    steps = []
    for i, s in enumerate(data.get("step", [])):
        run = s.get("run")
        run_ok = isinstance(run, list) and run and all(isinstance(a, str) for a in run)
        if not isinstance(s.get("name"), str) or not run_ok:
            raise UsageError(f"{where}: [[step]] #{i + 1} needs a 'name' and a 'run' list of strings")
        when = s.get("when", "loaded")
        if when not in WHEN:
            raise UsageError(f"{where}: [[step]] {s['name']!r}: when = {when!r}; use one of {', '.join(WHEN)}")
        steps.append(GuestStep(s["name"], tuple(run), float(s.get("timeout", 60)), int(s.get("expect_rc", 0)),
                               when))
    return Project(directory, mod["name"], source, trail, tuple(steps))

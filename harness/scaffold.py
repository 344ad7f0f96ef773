"""``harness init``: a harness.toml for an existing kbuild module directory.

The module names come from the directory's ``obj-m`` lines (its Kbuild file, or
its Makefile when that is what kbuild reads). The file is a starting point:
``harness run --record-trail`` then records the trail from a passing run.
"""

from __future__ import annotations

import re
from pathlib import Path

from harness import schema, tomlload
from harness.errors import UsageError
from harness.locks import write_atomic
from harness.schema import MODULE_NAME_RE
from harness.verdict.record import toml_str

KBUILD_FILES = ("Kbuild", "Makefile", "makefile", "GNUmakefile")  # the order kbuild reads them in
_ASSIGN = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_]*)\s*[:?]?=\s*(.*?)\s*$")
_OBJ = re.compile(r"^\s*obj-(?:m|\$\((CONFIG_[A-Za-z0-9_]+)\))\s*[:+]?=\s*(.*?)\s*$")


def _lines(text: str) -> list[str]:
    """Make lines with their continuations joined and comments dropped."""
    return [ln.split("#", 1)[0] for ln in re.sub(r"\\\n", " ", text).splitlines()]


def obj_m(text: str) -> list[str]:
    """Module names of a Kbuild file's or Makefile's ``obj-m`` (and ``obj-$(CONFIG_X)`` with
    ``CONFIG_X = m`` set in the same file), with simple ``$(VAR)`` references expanded."""
    variables: dict[str, str] = {}
    names: list[str] = []
    for line in _lines(text):
        m = _OBJ.match(line)
        if m:
            config, objs = m.groups()
            if config is not None and variables.get(config) != "m":
                continue
            for word in _expand(objs, variables).split():
                if word.endswith(".o") and word[:-2] not in names:
                    names.append(word[:-2])
            continue
        a = _ASSIGN.match(line)
        if a:
            variables[a.group(1)] = _expand(a.group(2), variables)
    return names


def _expand(text: str, variables: dict[str, str]) -> str:
    return re.sub(r"\$[({]([A-Za-z_][A-Za-z0-9_]*)[)}]", lambda m: variables.get(m.group(1), m.group(0)), text)


def find_modules(directory: Path) -> tuple[Path, list[str]]:
    for name in KBUILD_FILES:
        f = directory / name
        if f.is_file():
            names = [n for n in obj_m(f.read_text(errors="replace")) if re.fullmatch(MODULE_NAME_RE, n)]
            if names:
                return f, names
    raise UsageError(f"no obj-m module names in {directory}'s {' or '.join(KBUILD_FILES[:2])}",
                     hint="give `harness init` the directory kbuild builds (the one with obj-m += NAME.o)")


def project_toml(kbuild_file: Path, names: list[str]) -> str:
    out = [f"# Written by `harness init` from {kbuild_file.name} (obj-m: {' '.join(n + '.o' for n in names)}).",
           "# Next: `harness run --project . --record-trail` writes trail.toml from a passing run;",
           "# then edit both files (README.md of kmod-harness, \"Your own module\").", "",
           "[module]", 'source = "."', 'trail = "trail.toml"']
    if len(names) == 1:
        out += [f"name = {toml_str(names[0])}", '# params = ["key=value"]      # insmod parameters']
    out += ['# requires = ["videodev"]       # the kernel\'s own modules, modprobe\'d first', ""]
    if len(names) > 1:
        out += ["# Loaded in this order, unloaded in reverse: remove the ones a run should not load."]
        for n in names:
            out += ["[[module.load]]", f"name = {toml_str(n)}", '# params = ["key=value"]', ""]
    out += ["# [build]", "# w1 = false                     # no W=1, for Makefiles that make warnings errors", "",
            "# Guest commands while the module is loaded. The project is at /project (read-only); each step",
            "# runs in $HARNESS_WORK, a writable directory of the guest; cc and gcc are the kernel's compiler.",
            "# [[step]]", '# name = "smoke"', '# run = ["sh", "-c", "ls /dev"]', "# timeout = 60",
            '# env = { MYVAR = "1" }', "",
            "# Extra Debian packages in the guest (from the kernel's suite), e.g. for a test program:",
            '# [guest]', '# packages = ["libssl-dev"]', ""]
    return "\n".join(out)


def init(directory: Path, force: bool = False) -> tuple[Path, str]:
    """Write ``directory/harness.toml``; returns its path and text. Nothing is written over an
    existing one unless ``force``."""
    if not directory.is_dir():
        raise UsageError(f"{directory} is not a directory", hint="harness init takes a kbuild module directory")
    dest = directory / "harness.toml"
    if dest.exists() and not force:
        raise UsageError(f"{dest} exists; nothing was written", hint="--force replaces it")
    kbuild_file, names = find_modules(directory)
    text = project_toml(kbuild_file, names)
    schema.check(schema.ProjectFile, schema.Document(tomlload.loads(text, str(dest)), text, str(dest)))
    try:
        write_atomic(dest, text)
    except OSError as e:
        raise UsageError(f"cannot write {dest}: {e.strerror or e}", hint="run harness init in a directory you can "
                         "write to (or copy the module there)") from None
    return dest, text

"""The schema of every file a user writes: harness.toml (or `[tool.harness]`), trail files,
matrix files and splat rules. Pure: documents in, typed models or one UsageError out.

Built on pydantic v2 rather than hand-written checks: `extra="forbid"` makes an unknown
key an error, strict mode refuses `strict = "false"` and `level = true` instead of
coercing them, and each error comes with the location of the value, which `check` turns
into `file:line: key: message` with the closest valid key suggested. (msgspec would do
the same faster, but its errors carry no location list to map to a line.) The reference in
docs/REFERENCE.md is generated from these models (`reference_markdown`), so it cannot drift.

The guest runner never reads these: it gets a plan (`contract.Plan`) written from them.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal, Optional

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator, model_validator

from harness.fuzzdecl import FuzzDecl

MAX_STEP_SECONDS = 86400.0  # a day: a longer limit is a typo, and the guest's own limit (--timeout) cuts it anyway
MAX_COUNT = 10000  # one expectation repeated; the whole trail is bounded by MAX_TRAIL_RECORDS
MAX_TRAIL_RECORDS = 100000
MAX_STEPS = 500
MAX_TEXT = 4096  # a record's text, a reason, a name: the kernel's records hold ~1 KiB
MODULE_NAME_RE = r"^[A-Za-z0-9_-]{1,56}$"  # MODULE_NAME_LEN is 56 (64 - sizeof(unsigned long))
# The harness's own steps' names (plan.py): "build", "coverage", and "insmod", "rmmod", "modprobe X",
# "kunit X" with or without a module's name after them.
RESERVED_STEPS = ("insmod", "rmmod", "modprobe", "kunit", "coverage", "build")
_RESERVED = re.compile(r"(build|coverage|(insmod|rmmod)( \S+)?|(modprobe|kunit) \S+)")


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


def _regex(value: str) -> str:
    try:
        re.compile(value)
    except re.error as e:
        raise ValueError(f"not a valid regular expression ({e})") from None
    return value


def _printable(value: str) -> str:
    if any(ord(c) < 32 and c not in "\t" for c in value):
        raise ValueError("must be one line with no control characters")
    return value


Seconds = Annotated[float, Field(gt=0, le=MAX_STEP_SECONDS, allow_inf_nan=False,
                                 description=f"seconds, more than 0 and at most {MAX_STEP_SECONDS:.0f}")]
ModuleName = Annotated[str, Field(pattern=MODULE_NAME_RE, description="a module name: letters, digits, _ and -")]
Regex = Annotated[str, Field(min_length=1, max_length=MAX_TEXT, description="a Python regular expression"),
                  AfterValidator(_regex)]
Text = Annotated[str, Field(max_length=MAX_TEXT)]
Line = Annotated[str, Field(min_length=1, max_length=MAX_TEXT), AfterValidator(_printable)]
Arg = Annotated[str, Field(max_length=MAX_TEXT, pattern=r"^[^\x00]*$", description="an argument (no NUL)")]
Param = Annotated[str, Field(pattern=r"^[A-Za-z0-9_.-]+(=\S.*)?$", max_length=MAX_TEXT,
                             description='an insmod parameter, "name" or "name=value"')]
EnvName = Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,127}$",
                               description="an environment variable's name: letters, digits and _")]
GuestPath = Annotated[str, Field(pattern=r"^/[^\x00\n]*$", max_length=1024, description="an absolute guest path")]
RelPath = Annotated[str, Field(min_length=1, max_length=1024, pattern=r"^[^\x00\n]*$",
                               description="a path relative to the project directory, inside it")]
DebPackage = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9+.-]{1,99}$", description="a Debian package name")]
VerdictName = Literal["fail", "error", "infra", "crash", "timeout", "interrupted"]


# ---- harness.toml / [tool.harness] --------------------------------------------------------------


class Load(Strict):
    """One module of several (`[[module.load]]`), loaded in order."""

    name: ModuleName = Field(description="the .ko file's name without .ko")
    params: list[Param] = Field(default=[], description="insmod parameters")


class Module(Strict):
    """`[module]`: what the project builds and loads, and its expected trail."""

    source: RelPath = Field(description="the kbuild directory (Kbuild or Makefile with obj-m), relative to the file")
    trail: RelPath = Field(description="the trail file, relative to the file")
    name: Optional[ModuleName] = Field(default=None, description="one module: the .ko's name without .ko")
    params: list[Param] = Field(default=[], description="its insmod parameters (with name)")
    load: Optional[Annotated[list[Load], Field(min_length=1, max_length=64)]] = Field(
        default=None, description="several modules instead of name: loaded in order, unloaded in reverse")
    requires: list[ModuleName] = Field(default=[], description="the kernel's own modules, modprobe'd first")

    @model_validator(mode="after")
    def _one_way(self) -> "Module":
        if (self.name is None) == (self.load is None):
            raise ValueError("give exactly one of 'name' (one module) or [[module.load]] (several)")
        if self.load is not None and self.params:
            raise ValueError("with [[module.load]], params go inside each [[module.load]]")
        if self.load is not None:
            seen = [m.name.replace("-", "_") for m in self.load]
            if len(set(seen)) != len(seen):
                raise ValueError(f"[[module.load]] names a module twice: {seen}")
        return self


class Step(Strict):
    """`[[step]]`: a command run in the guest, in order."""

    name: Annotated[str, Field(min_length=1, max_length=100), AfterValidator(_printable)] = Field(
        description="unique among the steps")
    run: Annotated[list[Arg], Field(min_length=1, max_length=1000)] = Field(description="argv, no shell")
    timeout: Seconds = Field(default=60.0)
    expect_rc: Annotated[int, Field(ge=0, le=255)] = Field(default=0, description="the exit status that passes")
    when: Literal["before", "loaded", "after"] = Field(
        default="loaded", description="before insmod, while loaded (between insmod and rmmod), or after rmmod")
    env: dict[EnvName, Annotated[str, Field(max_length=MAX_TEXT, pattern=r"^[^\x00]*$")]] = Field(
        default={}, description="environment variables added for this step")
    cwd: Optional[GuestPath] = Field(default=None, description="working directory (default: the writable work "
                                     "directory $HARNESS_WORK)")

    @field_validator("name")
    @classmethod
    def _not_reserved(cls, v: str) -> str:
        if _RESERVED.fullmatch(v):
            raise ValueError(f"{v!r} is the name of one of the harness's own steps (build, coverage, insmod, rmmod, "
                             "modprobe NAME, kunit NAME): name it otherwise")
        return v


class Build(Strict):
    """`[build]`: how the module is built."""

    w1: bool = Field(default=True, description="build with W=1 (extra warnings)")
    args: list[Arg] = Field(default=[], description='extra make arguments, e.g. "KCFLAGS=-DDEBUG"')
    command: Optional[Annotated[list[Arg], Field(min_length=1)]] = Field(
        default=None, description="your own build command instead of kbuild's; {headers}, {cc}, {release} and "
        "{src} are replaced")


class KUnitTable(Strict):
    """`[kunit]`: KUnit test modules, loaded on kernels with CONFIG_KUNIT."""

    modules: list[ModuleName] = Field(default=[], description="test modules built from the source directory")
    timeout: Seconds = Field(default=300.0, description="for each test module's insmod")


class KnownFailure(Strict):
    """`[[known_failure]]` (and a matrix entry's `expect`): a failure known on a kernel."""

    verdict: VerdictName
    why: Line
    match: Optional[Regex] = Field(default=None, description="a regex the verdict's reason must match")


class ProjectKnownFailure(KnownFailure):
    """`[[known_failure]]`: a kernel this module is known to fail on, and how."""

    kernel: Line = Field(description="the kernel spec, e.g. debian:sid")


class GuestTable(Strict):
    """`[guest]`: the guest's userspace."""

    packages: Annotated[list[DebPackage], Field(max_length=200)] = Field(
        default=[], description="extra Debian packages from the root's suite, installed into a root of their own "
        "(made once per package list; the base root is untouched)")


class ProjectFile(Strict):
    """harness.toml, or `[tool.harness]` in pyproject.toml."""

    module: Module
    step: Annotated[list[Step], Field(max_length=MAX_STEPS)] = Field(default=[])
    build: Build = Field(default=Build())
    kunit: KUnitTable = Field(default=KUnitTable())
    known_failure: list[ProjectKnownFailure] = Field(default=[])
    guest: GuestTable = Field(default=GuestTable())
    allow: list["Allow"] = Field(default=[], description="kernel records that may appear without failing the run "
                                 "(a kernel complaint about the module that is intended), each with the reason; as "
                                 "a trail file's [[allow]], but kept when --record-trail rewrites the trail")
    fuzz: Optional[FuzzDecl] = Field(default=None, description="the interfaces `harness fuzz` sends inputs to "
                                     "(README: Fuzzing); without it, inferred from the module's sources")

    @model_validator(mode="after")
    def _names(self) -> "ProjectFile":
        names = [s.name for s in self.step]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ValueError(f"[[step]] names must be unique: {twice} named twice")
        mods = {self.module.name} if self.module.name else {m.name for m in self.module.load or ()}
        clash = sorted(set(self.kunit.modules) & mods)
        if clash or len(set(self.kunit.modules)) != len(self.kunit.modules):
            raise ValueError(f"[kunit] modules names {clash or self.kunit.modules} twice (or as a [module] too)")
        return self


# ---- trail files ---------------------------------------------------------------------------------


class Expect(Strict):
    """`[[expect]]`: one record the module must log, in order."""

    text: Optional[Text] = Field(default=None, description="the record's whole text, exactly")
    pattern: Optional[Regex] = Field(default=None, description="a regex the record's whole text matches")
    level: Optional[Annotated[int, Field(ge=0, le=7)]] = Field(default=None, description="0-7, checked when given")
    count: Annotated[int, Field(ge=1, le=MAX_COUNT)] = Field(default=1, description="how many times in a row")

    @model_validator(mode="after")
    def _one(self) -> "Expect":
        if (self.text is None) == (self.pattern is None):
            raise ValueError("give exactly one of 'text' or 'pattern'")
        return self


class Allow(Strict):
    """`[[allow]]`: records that may appear, or not, without failing the run (kernel complaints
    about the module among them), each with the reason."""

    pattern: Regex = Field(description="a regex searched in the record's text")
    reason: Line


class TrailFile(Strict):
    strict: bool = Field(default=False, description="records that match no expectation fail the run")
    expect: Annotated[list[Expect], Field(max_length=MAX_TRAIL_RECORDS)] = Field(
        description="the records, in order; `expect = []` for a module that logs nothing")
    allow: list[Allow] = Field(default=[])

    @model_validator(mode="before")
    @classmethod
    def _has_expect(cls, data: Any) -> Any:
        if isinstance(data, dict) and "expect" not in data:
            raise ValueError("a trail needs [[expect]] entries (or `expect = []` for a module that logs nothing)")
        return data

    @model_validator(mode="after")
    def _bounded(self) -> "TrailFile":
        total = sum(e.count for e in self.expect)
        if total > MAX_TRAIL_RECORDS:
            raise ValueError(f"the trail expects {total} records in all; at most {MAX_TRAIL_RECORDS}")
        return self


ProjectFile.model_rebuild()


# ---- matrix files --------------------------------------------------------------------------------


AptOption = Annotated[str, Field(max_length=512, description="KEY=VALUE")]


class KernelEntry(Strict):
    """`[[kernel]]`: one kernel of the matrix."""

    spec: Line = Field(description="a kernel spec (see `harness run --help`)")
    arch: Optional[Annotated[str, Field(pattern=r"^[a-z0-9]{1,16}$")]] = Field(
        default=None, description="the guest's architecture, Debian's name")
    apt_options: Annotated[list[AptOption], Field(max_length=32)] = Field(default=[])
    note: Text = Field(default="")
    expect: Optional[KnownFailure] = Field(default=None, description="a failure known on this kernel")


class MatrixFile(Strict):
    kernel: Annotated[list[KernelEntry], Field(min_length=1, max_length=1000)]


# ---- splat rules ---------------------------------------------------------------------------------


class SplatRuleEntry(Strict):
    """`[[splat]]`: kernel records that make a run a crash."""

    name: Annotated[str, Field(pattern=r"^[a-z0-9-]{1,40}$")]
    pattern: Regex = Field(description="a regex matched at the start of a kernel record's text")
    reason: Line
    scope: Literal["always", "module"] = Field(
        default="always", description="always: any such record fails the run; module: only when the module's "
        "frames are in its call trace (or the record names the module)")
    source: Line = Field(description="where the kernel prints what the pattern matches (file and function)")
    once_unless: Optional[Annotated[str, Field(pattern=r"^[a-z0-9_.]{1,64}$")]] = Field(
        default=None, description="the kernel prints such a report only once per boot unless booted with this "
        "parameter: one while booting leaves the run blind (an otherwise passing run is then infra)")


class SplatRulesFile(Strict):
    splat: Annotated[list[SplatRuleEntry], Field(min_length=1)]


def reference_markdown() -> str:
    """docs/REFERENCE.md: every key of every user file, from the models above."""
    from harness.schema_doc import render

    return render([("harness.toml (or [tool.harness] in pyproject.toml)", ProjectFile),
                   ("trail files", TrailFile), ("matrix files", MatrixFile), ("splat rules", SplatRulesFile)])

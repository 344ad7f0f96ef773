"""Plain data shared by every stage of a run: statuses, kernels, records, results.

Nothing in here does I/O. Stages take and return these values, so they can be
built by hand in tests and serialised into ``result.json`` as they are.
"""

from __future__ import annotations

import enum
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Optional

from harness.guest.contract import StepReport


class Verdict(enum.Enum):
    """Outcome of a run, ordered from best to worst (see ``severity``)."""

    PASS = "pass"
    FAIL = "fail"  # the module under test misbehaved: build, trail, client
    ERROR = "error"  # usage or configuration error, nothing was run
    INFRA = "infra"  # the harness could not do its job: download, root, QEMU, boot
    CRASH = "crash"  # kernel splat: Oops, BUG, WARNING, panic
    TIMEOUT = "timeout"
    INTERRUPTED = "interrupted"  # SIGINT / SIGTERM

    @property
    def exit_code(self) -> int:
        return EXIT_CODES[self]

    @property
    def severity(self) -> int:
        return _SEVERITY[self]

    @property
    def meaning(self) -> str:
        """What the verdict (and its exit code) means, as --help says it."""
        return _MEANING[self]


# The one place verdicts become process exit codes (README documents them).
EXIT_CODES = {
    Verdict.PASS: 0,
    Verdict.FAIL: 1,
    Verdict.ERROR: 2,
    Verdict.INFRA: 3,
    Verdict.CRASH: 4,
    Verdict.TIMEOUT: 5,
    Verdict.INTERRUPTED: 130,
}

_MEANING = {
    Verdict.PASS: "pass",
    Verdict.FAIL: "the module under test failed (build error, trail mismatch, client error)",
    Verdict.ERROR: "usage or configuration error",
    Verdict.INFRA: "infrastructure error (download, root, QEMU missing, boot)",
    Verdict.CRASH: "kernel crash or splat (Oops, BUG, WARNING, panic)",
    Verdict.TIMEOUT: "timeout",
    Verdict.INTERRUPTED: "interrupted (Ctrl-C, SIGTERM)",
}

_SEVERITY = {
    Verdict.PASS: 0,
    Verdict.FAIL: 1,
    Verdict.TIMEOUT: 2,
    Verdict.INFRA: 3,
    Verdict.CRASH: 4,
    Verdict.ERROR: 5,
    Verdict.INTERRUPTED: 6,
}


def worst(verdicts: "list[Verdict]") -> Verdict:
    return max(verdicts, key=lambda v: v.severity, default=Verdict.PASS)


@dataclass(frozen=True)
class Timeouts:
    """Every limit a run has, in seconds: one place for them all."""

    resolve: float = 300  # apt-get update of one suite's index
    download: float = 1800  # one package download (a kernel source package is over 100 MB)
    kernel: float = 5400  # building a debian-src: kernel (docs/PERFORMANCE.md has measured builds)
    root: float = 1800  # making a root with mmdebstrap
    build: float = 600  # building the module
    guest: float = 600  # boot + every guest step + shutdown
    module_step: float = 60  # insmod, modprobe, rmmod in the guest
    modules_install: float = 600  # a kernel tree's modules_install
    guest_command: float = 60  # one command in a live guest
    shutdown: float = 30  # a guest asked to power off
    tool: float = 60  # short host commands (apt-cache show, ssh-keygen)


class Accel(enum.Enum):
    KVM = "kvm"
    TCG = "tcg"


class BuildIn(enum.Enum):
    HOST = "host"
    GUEST = "guest"


@dataclass(frozen=True)
class KernelSpec:
    """A kernel as the user named it: ``debian:bookworm``, ``debian:bookworm@6.1.0-56``,
    ``debian-src:trixie+kasan`` (built here from the suite's source) or ``local:PATH``."""

    source: str  # "debian", "debian-src" or "local"
    suite: str  # "bookworm"; for local: the suite of the guest root
    pin: Optional[str] = None  # ABI name without flavour, e.g. "6.1.0-56"
    flavour: Optional[str] = None  # debian-src: the configuration fragment, vm/configs/FLAVOUR.config
    path: Optional[str] = None  # local: the kernel build tree, absolute
    arch: str = "amd64"  # Debian's name of the guest's architecture (see harness.arches)

    def __str__(self) -> str:
        if self.source == "local":
            return f"local:{self.path}"
        if self.source == "debian-src":
            return f"debian-src:{self.suite}+{self.flavour}"
        tail = "" if self.arch == "amd64" else f":{self.arch}"
        return f"{self.source}:{self.suite}" + (f"@{self.pin}" if self.pin else "") + tail


@dataclass(frozen=True)
class ResolvedKernel:
    """A spec resolved against the archive to concrete packages."""

    spec: KernelSpec
    release: str  # uname -r, e.g. "6.1.0-41-amd64"
    package_version: str  # Debian version of the image package, e.g. "6.1.158-1"
    packages: tuple[str, ...]  # what the root must contain for this kernel
    compiler: str  # e.g. "gcc-12"; "gcc" (the host's) for a kernel tree
    # A kernel build tree (local:, debian-src:): booted from its bzImage, modules built
    # against it on the host; the root is then the suite's base root, with no kernel.
    tree: Optional[Path] = None
    extra_packages: tuple[str, ...] = ()  # a project's [guest] packages, part of packages: a root of their own

    @property
    def kernel_id(self) -> str:
        """Stable, filesystem-safe name: used for cache and results directories."""
        if self.spec.source == "local":
            return f"local-{self.release}"
        if self.spec.source == "debian-src":
            return f"debian-src-{self.spec.suite}-{self.spec.flavour}-{self.release}"
        return f"{self.spec.source}-{self.spec.suite}-{self.release}"


@dataclass(frozen=True)
class KmsgRecord:
    """One ``/dev/kmsg`` record. ``text`` keeps the kernel's escaping (``\\x0a``)."""

    level: int
    facility: int
    seq: int
    usec: int
    text: str
    flags: str = "-"
    caller: Optional[str] = None
    fields: tuple[tuple[str, str], ...] = ()

    @property
    def prio(self) -> int:
        return self.facility << 3 | self.level

    @property
    def seconds(self) -> float:
        return self.usec / 1e6

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["fields"] = dict(self.fields)
        return d


@dataclass(frozen=True)
class Phase:
    name: str
    seconds: float
    ok: bool = True
    detail: str = ""


@dataclass(frozen=True)
class RunResult:
    """Everything ``result.json`` holds, assembled once when the run ends (``run.assemble``)."""

    kernel: str  # the spec as given
    verdict: Verdict
    reason: str
    harness_version: str
    started_at: str
    seconds: float
    kernel_release: Optional[str] = None
    package_version: Optional[str] = None
    accel: Optional[str] = None
    build_in: Optional[str] = None
    transport: Optional[str] = None
    phases: tuple[Phase, ...] = ()
    steps: tuple[StepReport, ...] = ()
    kmsg: tuple[KmsgRecord, ...] = ()
    marker_seq: Optional[int] = None  # the guest runner's record before the first step
    trail: tuple[dict[str, Any], ...] = ()
    expected_trail: tuple[str, ...] = ()  # each expectation of the trail file, as its report describes it
    trail_diff: str = ""
    splats: tuple[dict[str, Any], ...] = ()
    boot_splats: tuple[dict[str, Any], ...] = ()  # before the first guest step: not the module's
    kernel_params: tuple[str, ...] = ()  # what the harness appended, base ones first
    build_warnings: tuple[str, ...] = ()
    build_log: str = ""
    boot: dict[str, float] = field(default_factory=dict)  # where the vm phase's time went
    vm: dict[str, Any] = field(default_factory=dict)  # the virtme-ng command line, how the guest ended
    evidence: dict[str, str] = field(default_factory=dict)  # what each kept file holds, by file name
    read_first: Optional[str] = None  # the evidence file that explains a non-pass verdict best
    kunit: tuple[dict[str, Any], ...] = ()  # KUnit cases of the [kunit] test modules (kernels with KUnit)
    kmsg_dropped: int = 0  # records of an endless kernel log left out between the kept head and tail
    complaints: tuple[dict[str, Any], ...] = ()  # the kernel's complaints about the module, allowed ones with why
    coverage: dict[str, Any] = field(default_factory=dict)  # the module's coverage (kernels with gcov)
    # --repeat and retries (harness/repeat.py), and results merged from many machines (harness/fanin.py):
    attempts: tuple[dict[str, Any], ...] = ()  # every attempt: n, verdict, reason, seconds, counted, machine
    classification: Optional[str] = None  # over the attempts that count: pass, fail or flaky
    machine: Optional[str] = None  # the host name of the machine that ran it

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["verdict"] = self.verdict.value
        d["exit_code"] = self.verdict.exit_code
        d["kmsg"] = [r.to_json() for r in self.kmsg]
        d["schema"] = "kmod-harness/result/v2"
        return d


def result_from_json(d: dict[str, Any]) -> RunResult:
    """A RunResult read back from its result.json (a report regenerated from kept results)."""
    known = {f for f in RunResult.__dataclass_fields__}
    plain = {k: v for k, v in d.items() if k in known and k not in ("verdict", "phases", "steps", "kmsg")}
    for key in ("trail", "splats", "boot_splats", "kernel_params", "build_warnings", "expected_trail", "kunit",
                "complaints", "attempts"):
        if key in plain:
            plain[key] = tuple(plain[key])
    records = tuple(KmsgRecord(**{k: v for k, v in r.items() if k != "fields"},
                               fields=tuple(r.get("fields", {}).items())) for r in d.get("kmsg", []))
    return RunResult(verdict=Verdict(d["verdict"]), phases=tuple(Phase(**p) for p in d.get("phases", [])),
                     steps=tuple(StepReport.from_dict(st) for st in d.get("steps", [])), kmsg=records,
                     **{"harness_version": "?", "started_at": "", "seconds": 0.0, "reason": "", **plain})

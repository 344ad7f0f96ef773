"""The phases of a run as typed steps: each takes what the earlier ones returned and returns its own.

``harness run`` (``run.py``) composes all of them; live sessions (``guest/session.py``),
and through them the pytest plugin and ``harness shell``, compose the first ones
and boot with the SSH transport; the matrix runs ``run.run`` per kernel.

    setup -> resolve (+ kernel, for debian-src:) -> root -> build -> boot and run -> judge

Each phase that takes time is timed with ``events.phase``: it emits PhaseStarted and
PhaseEnded and appends its ``Phase`` to the list the caller keeps.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Optional

from harness import accel as accel_mod
from harness import arches, resources, tomlload
from harness.cache import usable_cache
from harness.errors import HarnessError, InfraError, UsageError
from harness.events import Note, Sink, phase
from harness.guest import contract, plan, vng
from harness.guest.transport import GuestRequest, GuestRun, Transport
from harness.kernel import apt, modbuild, roots, spec, symbolize, trees
from harness.kernel.roots import foreign_root
from harness.model import Accel, BuildIn, KernelSpec, Phase, ResolvedKernel, Timeouts, Verdict
from harness.project import Project, load_project
from harness.verdict import judge, splat, trace, trail

Phases = list[Phase]


CPUS_ENV = "HARNESS_CPUS"


def default_cpus(fallback: int = 2) -> int:
    """Guest vCPUs when none are asked for: $HARNESS_CPUS, else ``fallback`` (2; the matrix, which
    runs several guests at once, 1). Under TCG each vCPU is a host thread: a test suite that runs
    guests side by side on a small machine gets more from 1 each."""
    text = os.environ.get(CPUS_ENV, "").strip()
    if not text:
        return fallback
    return parse_cpus(text, f"${CPUS_ENV}")


def parse_cpus(text: str, where: str) -> int:
    try:
        n = int(text)
    except ValueError:
        n = 0
    if not 1 <= n <= 64:
        raise UsageError(f"{where}={text!r}: give a number of guest vCPUs from 1 to 64")
    return n


@dataclass(frozen=True)
class RunRequest:
    kernel: str = spec.DEFAULT_KERNEL
    project: Path = Path(".")
    results: Path = Path("results")
    accel: str = "auto"
    build_in: str = "auto"
    timeouts: Timeouts = field(default_factory=Timeouts)
    mirror: Optional[str] = None
    apt_options: tuple[str, ...] = ()
    splats: Optional[Path] = None  # another splat rules file than vm/splats.toml
    cache: Optional[Path] = None
    cpus: int = field(default_factory=lambda: default_cpus())  # guest vCPUs
    refresh: bool = False  # download the package index even when it is fresh
    transport: str = "exec"  # how the guest runner is started: virtme-ng's exec channel, or "ssh"
    append: tuple[str, ...] = ()  # extra kernel parameters
    console_level: int = 7  # see guest.vng.VmConfig.console_level
    record_trail: bool = False  # write the project's trail from this run instead of checking it


@dataclass(frozen=True)
class Setup:
    """Everything decided before any phase runs: all of it checked, none of it slow."""

    spec: KernelSpec
    project: Project
    expected: Optional[trail.Trail]  # None when the trail is being recorded
    rules: tuple[splat.SplatRule, ...]
    accel: Accel
    accel_why: str
    build_in: BuildIn
    vng: str
    mirror: apt.Mirror
    cache: Path


def setup(req: RunRequest) -> Setup:
    kspec = spec.parse_spec(req.kernel)
    project = load_project(req.project)
    arch = arches.get(kspec.arch)
    chosen, why = accel_mod.choose(req.accel, accel_mod.probe(), foreign=arch.name if arches.foreign(arch) else None)
    vng.check_qemu(arch)
    arches.check_binfmt(arch)  # a foreign root's build runs its gcc through qemu-user
    return Setup(spec=kspec, project=project, expected=None if req.record_trail else load_trail(project),
                 rules=load_rules(req.splats), accel=chosen, accel_why=why,
                 build_in=_build_in(req.build_in, chosen, kspec), vng=vng.find_vng(),
                 mirror=apt.Mirror.from_env(req.mirror, req.apt_options), cache=usable_cache(req.cache))


def check_request(req: RunRequest) -> None:
    """Every input of a run a user can get wrong, checked at once and cheaply, before anything is
    written or started: the spec, the project and its trail, the splat rules, the mirrors and apt
    options, the environment, the cache. Front ends call it first, so that bad input is one
    usage error (exit 2) and not a run that fails later."""
    spec.parse_spec(req.kernel)
    project = load_project(req.project)
    if not req.record_trail:
        load_trail(project)
    load_rules(req.splats)
    apt.Mirror.from_env(req.mirror, req.apt_options)
    apt.index_ttl()
    default_cpus()
    usable_cache(req.cache)


def load_trail(project: Project) -> trail.Trail:
    if not project.trail.is_file():
        raise UsageError(f"{project.where}: [module] trail: {project.trail} does not exist",
                         hint="`harness run --record-trail` writes it from a passing run's own records")
    doc = tomlload.load_document(project.trail)
    return trail.parse_trail(doc.data, doc.where, doc.text)


def load_rules(path: Optional[Path] = None) -> tuple[splat.SplatRule, ...]:
    doc = tomlload.load_document(path or resources.data("splats.toml"))
    return splat.parse_rules(doc.data, doc.where, doc.text)


def _build_in(requested: str, chosen: Accel, kspec: KernelSpec) -> BuildIn:
    if kspec.source in ("local", "debian-src"):
        # The tree is on the host; the guest sees only the root.
        if requested == "guest":
            raise UsageError(f"--build-in guest does not work with {kspec}: its kernel tree is on the host",
                             hint="leave --build-in at auto (or host)")
        return BuildIn.HOST
    if requested == "auto":  # in-guest builds are far slower under emulation (docs/PERFORMANCE.md)
        return BuildIn.GUEST if chosen is Accel.KVM else BuildIn.HOST
    return BuildIn(requested)


def resolve(s: Setup, req: RunRequest, sink: Sink, done: Phases) -> ResolvedKernel:
    """The spec, resolved to concrete packages (and for ``debian-src:``, built)."""
    where = "" if s.spec.source == "local" else f" at {s.mirror.debian}"
    with phase(sink, done, "resolve", f"{s.spec}{where}"):
        kernel, src, index = resolve_spec(s.spec, s.mirror, s.cache, 0 if req.refresh else apt.index_ttl(),
                                          req.timeouts)
    if src is not None:
        assert index is not None
        with phase(sink, done, "kernel", f"{s.spec}: {src.package} {src.version} built with {trees.HOST_COMPILER}"):
            kernel = trees.ensure_built(src, index, s.cache, sink, req.timeouts.kernel)
    assert kernel is not None
    sink(Note(f"    {s.spec} is {kernel.release} ({kernel.package_version}, {kernel.compiler})"))
    return kernel


def resolve_spec(kspec: KernelSpec, mirror: apt.Mirror, cache: Path, ttl: float, timeouts: Timeouts = Timeouts()
                 ) -> tuple[Optional[ResolvedKernel], Optional[trees.SourceKernel], Optional[apt.AptIndex]]:
    """A spec -> (the kernel, or the source kernel still to build, and the index used)."""
    if kspec.source == "local":
        return trees.local_kernel(kspec), None, None
    index = apt.AptIndex(cache, kspec.suite, mirror, timeouts, arch=kspec.arch)
    index.update(ttl=ttl)
    if kspec.source == "debian-src":
        return None, trees.resolve_source(kspec, index), index
    return apt.resolve(kspec, index), None, index


def root(s: Setup, kernel: ResolvedKernel, req: RunRequest, sink: Sink, done: Phases) -> roots.Root:
    what = (f"Debian {s.spec.suite} root for {kernel.release}" if kernel.tree is None
            else f"Debian {s.spec.suite} base root (kernel from {kernel.tree})")
    with phase(sink, done, "root", what):
        if s.project.packages:
            sink(Note(f"    with the project's [guest] packages: {' '.join(s.project.packages)}"))
        r = roots.ensure_root(roots.with_packages(kernel, s.project.packages), s.mirror, sink, req.timeouts.root,
                              s.cache)
        if kernel.tree is None:
            return r
        try:
            return replace(r, modules=trees.tree_modules(kernel.tree, s.cache, sink, req.timeouts.modules_install))
        except InfraError as e:
            # The module under test is loaded by path: without the tree's own modules
            # the run still means something, but say what the guest lacks.
            sink(Note(f"    warning: {e}\n    the guest gets no /lib/modules/{kernel.release}"))
            return r


def build(s: Setup, r: roots.Root, run_dir: Path, req: RunRequest, sink: Sink, done: Phases
          ) -> Optional[modbuild.BuildResult]:
    """Copy the source into ``run_dir/build`` and, on the host, build it (None: built in the guest)."""
    breq = build_request(s, r, req)
    modbuild.prepare_source(breq, run_dir / "build")
    resources.install_guest_files(run_dir)
    if s.build_in is BuildIn.GUEST:
        return None
    names = ", ".join(f"{m}.ko" for m in breq.modules)
    with phase(sink, done, "build", f"{names} with {r.kernel.compiler}") as mark:
        if coverage_on(r):
            sink(Note("    built with GCOV_PROFILE=y: the kernel has gcov (CONFIG_GCOV_KERNEL)"))
        built = modbuild.build_cached(breq, run_dir / "build", s.cache, sink)
        mark.ok = built.ok
        mark.detail = ("reused: sources, kernel and compiler unchanged" if built.cached and built.ok
                       else "\n".join(built.errors[-20:]))
    return built


def kunit_modules(s: Setup, r: roots.Root) -> tuple[str, ...]:
    """The project's KUnit test modules, when its kernel has KUnit (else they are not built)."""
    return s.project.kunit.modules if r.has("KUNIT") else ()


def coverage_on(r: roots.Root) -> bool:
    """A kernel with gcov (``+gcov``): the module is built for coverage and its counters collected."""
    return r.has("GCOV_KERNEL")


def build_request(s: Setup, r: roots.Root, req: RunRequest) -> modbuild.BuildRequest:
    options = s.project.build
    if coverage_on(r):
        options = replace(options, args=options.args + (modbuild.GCOV_ARG,))
    return modbuild.BuildRequest(r, s.project.source, tuple(m.name for m in s.project.modules) + kunit_modules(s, r),
                                 options, req.timeouts.build, within=s.project.bound or s.project.root,
                                 exclude=(req.results,) + s.project.files)


class BuildFailed(HarnessError):
    """The module did not build: the project's failure (exit 1), with gcc's errors."""

    verdict = Verdict.FAIL

    def __init__(self, built: modbuild.BuildResult):
        super().__init__("the module does not build:\n" + "\n".join(built.errors[-20:]))
        self.log = built.log


@dataclass(frozen=True)
class Prepared:
    """Everything a boot needs, the module built into ``run_dir/build`` (unless built in the guest)."""

    setup: Setup
    root: roots.Root
    built: Optional[modbuild.BuildResult]
    run_dir: Path


def prepare(req: RunRequest, sink: Sink, run_dir: Path, done: Phases) -> Prepared:
    """setup, resolve, root and build, for front ends that boot on their own (sessions, benchmarks)."""
    s = setup(req)
    r = root(s, resolve(s, req, sink, done), req, sink, done)
    built = build(s, r, run_dir, req, sink, done)
    if built is not None and not built.ok:
        raise BuildFailed(built)
    return Prepared(s, r, built, run_dir)


def vm_config(s: Setup, r: roots.Root, run_dir: Path, req: RunRequest, sink: Sink) -> vng.VmConfig:
    return vng.VmConfig(vmlinuz=r.image, root=r.path, run_dir=run_dir, project_dir=s.project.root,
                        accel=s.accel, cpus=req.cpus, append=config_params(r, sink) + req.append,
                        console_level=req.console_level, modules_dir=r.modules,
                        arch=r.kernel.spec.arch if foreign_root(r.kernel) else None)


def config_params(r: roots.Root, sink: Sink) -> tuple[str, ...]:
    """Parameters the kernel's own configuration calls for (``vng.config_params``): a tree's
    ``.config`` is read; Debian's packaged kernels need none."""
    tree = r.kernel.tree
    if tree is None or not (tree / ".config").is_file():
        return ()
    params = vng.config_params((tree / ".config").read_text(errors="replace"))
    if params:
        sink(Note(f"    kernel parameters for this kernel's configuration: {' '.join(params)}"))
    return params


def guest_plan(s: Setup, r: roots.Root, built: Optional[modbuild.BuildResult], req: RunRequest) -> contract.Plan:
    guest_build = None
    if s.build_in is BuildIn.GUEST:
        guest_build = (modbuild.make_argv(r, plan.BUILD_DIR, s.project.build), req.timeouts.build)
    kos = plan.ko_paths(s.project, built.kos if built is not None else None, kunit_modules(s, r))
    return plan.build_plan(s.project, kos, req.timeouts.module_step, guest_build,
                           kunit=kunit_modules(s, r), coverage=coverage_on(r))


def boot_and_run(greq: GuestRequest, transport: Transport, sink: Sink, done: Phases, name: str = "vm") -> GuestRun:
    what = (f"boot {greq.config.vmlinuz.name} ({greq.config.accel.value}) and run {len(greq.plan.steps)} guest steps"
            f" over {transport.name}")
    with phase(sink, done, name, what) as mark:
        g = transport.run(greq, sink)
        # The runner's whole report is what counts; virtme-ng's exit status is 255 also when it ran
        # the runner on the console, having found no port for it (a slow boot), and lost its status.
        mark.ok = not g.timed_out and g.report is not None and g.report.complete
        mark.detail = f"{transport.name}: {g.how_it_ended}" + (f"; {g.problem}" if g.problem else "")
    return g


def judge_run(s: Setup, p: contract.Plan, g: GuestRun, console: str) -> judge.Judgement:
    ended = g.how_it_ended + (f"; {g.problem}" if g.problem else "")
    ev = judge.Evidence(report=g.report, console=console, timed_out=g.timed_out, ended=ended,
                        running=g.running, marker=contract.marker_text(p.run_id), overflow=g.overflow)
    return judge.judge(ev, s.expected, s.rules, p.steps, module_names(s.project), s.project.allow)


def module_names(project: Project) -> tuple[str, ...]:
    """Every name the project's modules go by in kernel records: the .ko's and the kernel's."""
    names = [m.name for m in project.modules] + [m.module for m in project.modules] + list(project.kunit.modules)
    return tuple(dict.fromkeys(names + [n.replace("-", "_") for n in project.kunit.modules]))


def symbolize_splats(s: Setup, r: roots.Root, j: judge.Judgement, build_dir: Path,
                     kos: Optional[dict[str, str]], console: str = "") -> tuple[Optional[dict[str, Any]], ...]:
    """For each splat of the run: its call trace as frames, those of the project's modules resolved
    to file:line with the .ko that was loaded (and the kernel's, for a kernel tree with its vmlinux),
    and the source lines around the first one that resolved. None for a splat without a trace."""
    kos = kos or {m.name: f"{m.name}.ko" for m in s.project.modules}
    by_module = {m.module: kos[m.name] for m in s.project.modules if (build_dir / kos.get(m.name, "-")).is_file()}
    modules = [m.module for m in s.project.modules]
    tools = symbolize.Binutils.for_root(r, build_dir)
    tree = r.kernel.tree
    vmlinux = tree / "vmlinux" if tree is not None and (tree / "vmlinux").is_file() else None
    prefixes = ("/tmp/build", str(build_dir), plan.BUILD_DIR)  # where the module was built: root, host, guest
    out: list[Optional[dict[str, Any]]] = []
    for sp in j.splats:
        frames = (trace.of_splat(j.records, sp.seq) if sp.seq is not None
                  else trace.of_console(console.splitlines(), sp.text))
        if not frames:
            out.append(None)
            continue
        frames = symbolize.resolve(frames, by_module, tools, vmlinux)
        mine = trace.in_modules(frames, modules)
        source = next((x for x in (symbolize.source_excerpt(f, s.project.source, prefixes) for f in mine) if x), None)
        out.append({"trace": [f.to_json() for f in frames], "module_frames": trace.describe_all(mine),
                    "source": source})
    return tuple(out)

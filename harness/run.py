"""``harness run``: resolve, root, build, boot, guest steps, judge, report.

Each phase has its own timeout and appears in the result with its duration.
Whatever happens (an error, a timeout, Ctrl-C, SIGTERM), the VM's process
group is ended and the result written with what was gathered so far.
"""

from __future__ import annotations

import json
import re
import shutil
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator, Optional

from harness import accel as accel_mod
from harness import analyze, buildroot, kbuild, kernels, ktree, procs, report, splat, ssh, trail, vm
from harness.errors import HarnessError, InfraError, PhaseTimeout, UsageError
from harness.model import Accel, BuildIn, KernelSpec, Phase, ResolvedKernel, RunResult, Verdict
from harness.progress import Printer
from harness.project import Project, load_project

DATA_DIR = Path(__file__).resolve().parent.parent / "vm"
RUNNER = Path(__file__).resolve().parent / "guest" / "runner.py"
RESULT_FILES = ("result.json", "console.log", "exec.log", "guest-result.json", "build.log")


@dataclass(frozen=True)
class Timeouts:
    resolve: float = 300
    kernel: float = 5400  # building a debian-src: kernel (a KASAN 6.12 took ~13 min on 2 cores)
    root: float = 1800
    build: float = 600
    guest: float = 600  # boot + every guest step + shutdown


@dataclass(frozen=True)
class RunRequest:
    kernel: str = kernels.DEFAULT_KERNEL
    project: Path = Path(".")
    results: Path = Path("results")
    accel: str = "auto"
    build_in: str = "auto"
    timeouts: Timeouts = field(default_factory=Timeouts)
    mirror: Optional[str] = None
    apt_options: tuple[str, ...] = ()
    splats: Optional[Path] = None
    cache: Optional[Path] = None
    cpus: int = 2  # guest vCPUs
    refresh: bool = False  # download the package index even when it is fresh
    transport: str = "exec"  # how the guest runner is started: virtme-ng's exec channel, or "ssh"
    append: tuple[str, ...] = ()  # extra kernel parameters
    console_level: int = 7  # see vm.VmConfig.console_level


@dataclass(frozen=True)
class Prepared:
    """Everything a boot needs: the module is built in ``run_dir/build`` (unless built in the guest)."""

    project: Project
    expected: trail.Trail
    rules: tuple[splat.SplatRule, ...]
    accel: Accel
    build_in: BuildIn
    vng: str
    root: buildroot.Root
    run_dir: Path


def results_id(spec_text: str) -> str:
    """Directory name for a kernel's results: the spec, filesystem-safe."""
    return re.sub(r"[^A-Za-z0-9._+-]+", "-", spec_text.strip()).strip("-") or "kernel"


class _Run:
    def __init__(self, req: RunRequest, printer: Printer):
        self.req = req
        self.printer = printer
        self.result = RunResult(kernel=req.kernel, started_at=datetime.now(timezone.utc).isoformat())
        self.out_dir = req.results / results_id(req.kernel)
        self.cache = req.cache or buildroot.cache_dir()

    @contextmanager
    def phase(self, name: str, what: str = "") -> Iterator[Phase]:
        ph = Phase(name, 0.0)
        t0 = time.monotonic()
        try:
            with self.printer.phase(name, what) as mark:
                yield ph
                mark.ok = ph.ok
        except BaseException as e:
            ph.ok = False
            ph.detail = ph.detail or str(e)
            raise
        finally:
            ph.seconds = round(time.monotonic() - t0, 3)
            self.result.phases.append(ph)

    def prepare(self, run_dir: Path) -> Optional["Prepared"]:
        """Resolve, make the root, build the module into ``run_dir/build``.

        Returns None when the module did not build (the result already says so).
        """
        req, res = self.req, self.result
        spec = kernels.parse_spec(req.kernel)
        project = load_project(req.project)
        expected = trail.load_trail(project.trail)
        rules = splat.load_rules(req.splats or DATA_DIR / "splats.toml")
        chosen, why = accel_mod.choose(req.accel, accel_mod.probe())
        build_in = _build_in(req.build_in, chosen, spec)
        res.accel, res.build_in = chosen.value, build_in.value
        self.printer.line(f"kernel {spec}; {why}; module built in the {build_in.value}")
        vm.check_qemu()
        vng = vm.find_vng()
        mirror = kernels.Mirror.from_env(req.mirror, req.apt_options)

        with self.phase("resolve", f"{spec}" + ("" if spec.source == "local" else f" at {mirror.debian}")):
            kernel, src, index = resolve_spec(spec, mirror, self.cache, 0 if req.refresh else kernels.INDEX_TTL)
        if src is not None:
            assert index is not None
            with self.phase("kernel", f"{spec}: {src.package} {src.version} built with {ktree.HOST_COMPILER}"):
                kernel = ktree.ensure_built(src, index, self.cache, self.printer, req.timeouts.kernel)
        assert kernel is not None
        res.kernel_release, res.package_version = kernel.release, kernel.package_version
        self.printer.line(f"    {spec} is {kernel.release} ({kernel.package_version}, {kernel.compiler})")

        with self.phase("root", f"Debian {spec.suite} " + (f"root for {kernel.release}" if kernel.tree is None
                                                           else f"base root (kernel from {kernel.tree})")):
            root = buildroot.ensure_root(kernel, mirror, self.printer, req.timeouts.root, self.cache)
            if kernel.tree is not None:
                try:
                    root = replace(root, modules=kbuild.tree_modules(kernel.tree, self.cache, self.printer))
                except InfraError as e:
                    # The module under test is loaded by path: without the tree's own modules
                    # the run still means something, but say what the guest lacks.
                    self.printer.line(f"    warning: {e}\n    the guest gets no /lib/modules/{kernel.release}")

        kbuild.prepare_source(project.source, run_dir / "build")
        if build_in is BuildIn.HOST:
            with self.phase("build", f"{project.module}.ko with {kernel.compiler}") as ph:
                built = kbuild.build_cached(root, project.source, run_dir / "build", project.module,
                                            req.timeouts.build, self.printer, self.cache)
                if built.cached:
                    ph.detail = "reused: sources, kernel and compiler unchanged"
                res.build_log, res.build_warnings = built.log, built.warnings
                self.out_dir.mkdir(parents=True, exist_ok=True)
                report.write_atomic(self.out_dir / "build.log", built.log)
                ph.ok = built.ok
                if not built.ok:
                    ph.detail = "\n".join(built.errors[-20:])
            if not built.ok:
                res.verdict = Verdict.FAIL
                res.reason = "the module does not build:\n" + "\n".join(built.errors[-20:])
                return None
        shutil.copy(RUNNER, run_dir / "runner.py")
        shutil.copy(vm.SSH_UP, run_dir / "ssh-up.sh")
        return Prepared(project, expected, rules, chosen, build_in, vng, root, run_dir)

    def execute(self) -> None:
        for stale in RESULT_FILES:  # a previous run's evidence must not pass for this one's
            (self.out_dir / stale).unlink(missing_ok=True)
        run_dir = Path(tempfile.mkdtemp(prefix="kmod-harness-run-"))
        try:
            prep = self.prepare(run_dir)
            if prep is not None:
                self._guest(prep)
        finally:
            shutil.rmtree(run_dir, ignore_errors=True)

    def _plan(self, project: Project, root: buildroot.Root, build_in: BuildIn) -> dict:
        ko = f"{vm.GUEST_RUN_DIR}/build/{project.module}.ko"
        steps = []
        if build_in is BuildIn.GUEST:
            steps.append({"name": "build", "argv": kbuild.make_argv(root, f"{vm.GUEST_RUN_DIR}/build"),
                          "timeout": self.req.timeouts.build, "required": True})

        def project_steps(when: str) -> list[dict]:
            return [{"name": s.name, "argv": list(s.argv), "timeout": s.timeout, "expect_rc": s.expect_rc}
                    for s in project.steps if s.when == when]

        steps += project_steps("before")
        steps.append({"name": "insmod", "argv": ["insmod", ko], "timeout": 60, "required": True})
        steps += project_steps("loaded")
        steps.append({"name": "rmmod", "argv": ["rmmod", project.module], "timeout": 60, "always": True})
        steps += project_steps("after")
        return {"steps": steps, "result_path": f"{vm.GUEST_RUN_DIR}/guest-result.json",
                "env": {"PYTHONDONTWRITEBYTECODE": "1"}}

    def _guest(self, prep: "Prepared") -> None:
        res = self.result
        project, root, run_dir, chosen = prep.project, prep.root, prep.run_dir, prep.accel
        plan = self._plan(project, root, prep.build_in)
        (run_dir / "plan.json").write_text(json.dumps(plan, indent=1))
        runner_cmd = f"python3 {vm.GUEST_RUN_DIR}/runner.py {vm.GUEST_RUN_DIR}/plan.json"
        ssh_keys = ssh.ensure_keys(self.cache) if self.req.transport == "ssh" else None
        cfg = vm.VmConfig(
            vmlinuz=root.vmlinuz, root=root.path, run_dir=run_dir, project_dir=project.root, accel=chosen,
            cpus=self.req.cpus, append=config_params(root, self.printer) + self.req.append,
            console_level=self.req.console_level,
            # Over SSH the exec channel only keeps the guest up; the runner comes through sshd.
            command=runner_cmd if ssh_keys is None else vm.SSH_GUEST_COMMAND,
            ssh_port=ssh.free_port() if ssh_keys is not None else None, modules_dir=root.modules,
        )
        argv = vm.vng_argv(prep.vng, cfg)
        res.kernel_params = list(vm.appended(cfg))
        self.out_dir.mkdir(parents=True, exist_ok=True)
        console_path = self.out_dir / "console.log"
        res.console_log = str(console_path)
        timed_out = False
        exec_lines: list[str] = []  # the exec channel, kept as it arrives: a timeout or signal loses nothing

        marks: dict[str, float] = {"start": time.monotonic()}  # host-side moments, for the boot breakdown

        def on_line(stream: str, line: str) -> None:
            if stream == "stdout":
                exec_lines.append(line)
                if line.startswith("HARNESS-STEP "):
                    self.printer.status("guest step " + line.split(" ", 1)[1])
                elif line.startswith("HARNESS-RESULT "):
                    marks.setdefault("result", time.monotonic())
            elif stream == "stderr":
                if "Linux version" in line:
                    marks.setdefault("kernel", time.monotonic())
                self.printer.status(line)
                self.printer.detail(line)

        what = (f"boot {root.kernel.release} ({chosen.value}) and run {len(plan['steps'])} guest steps"
                f" over {self.req.transport}")
        with self.phase("vm", what) as ph:
            with vm.console_log(console_path) as console:
                console.write(f"# {' '.join(argv)}\n")
                try:
                    if ssh_keys is None:
                        done = procs.run(argv, timeout=self.req.timeouts.guest, what="the VM", log=console,
                                         on_line=on_line, env=vm.vng_env(), keep=False)
                        rc = done.returncode
                    else:
                        stdout, rc = self._over_ssh(argv, cfg, ssh_keys, runner_cmd, console, on_line)
                        exec_lines.extend(stdout.splitlines())
                    marks["end"] = time.monotonic()
                    ph.ok = rc == 0
                    ph.detail = f"{self.req.transport}: exit {rc}" + (
                        "" if ph.ok else " (255: the guest died; 1: a required guest step failed)")
                except PhaseTimeout as e:
                    timed_out = True
                    ph.ok = False
                    ph.detail = str(e)
                finally:
                    (self.out_dir / "exec.log").write_text("".join(ln + "\n" for ln in exec_lines))
        guest = None
        gpath = run_dir / "guest-result.json"
        if gpath.is_file():
            guest = json.loads(gpath.read_text())
            shutil.copy(gpath, self.out_dir / "guest-result.json")  # raw records: the evidence
        j = analyze.judge(guest, console_path.read_text(errors="replace"), prep.expected, prep.rules,
                          {s["name"]: s.get("expect_rc", 0) for s in plan["steps"]}, vm_timed_out=timed_out,
                          last_step=next((ln.split(" ", 1)[1] for ln in reversed(exec_lines)
                                          if ln.startswith("HARNESS-STEP ")), None))
        res.verdict, res.reason = j.verdict, j.reason
        res.kmsg, res.steps = j.records, j.steps
        res.boot = analyze.boot_breakdown(marks, guest, j.records)
        res.splats = [s.to_json() for s in j.splats]
        res.boot_splats = [s.to_json() for s in j.boot_splats]
        if j.trail is not None:
            res.trail = [{"seq": r.seq, "level": r.level, "usec": r.usec, "text": r.text} for r in j.trail.matched]
            res.trail_diff = j.trail.diff()
        if j.console_excerpt:
            res.reason += "\n" + j.console_excerpt


    def _over_ssh(self, argv, cfg, keys, runner_cmd, console, on_line) -> tuple[str, int]:
        """Boot with sshd, run the runner through paramiko, power the guest off."""
        deadline = time.monotonic() + self.req.timeouts.guest
        with procs.Background(argv, what="the VM", log=console, on_line=on_line,
                              env=vm.vng_env(home=keys.home)) as bg:
            guest = ssh.GuestSsh(cfg.ssh_port, keys)
            try:
                took = guest.connect(timeout=deadline - time.monotonic(), alive=bg.alive)
                self.printer.detail(f"ssh: connected to 127.0.0.1:{cfg.ssh_port} after {took:.1f}s")
                res = guest.run(runner_cmd, timeout=max(1.0, deadline - time.monotonic()))
                console.write(res.stdout)
                guest.poweroff()
            finally:
                guest.close()
            try:
                bg.wait(min(30.0, max(1.0, deadline - time.monotonic())))
            except PhaseTimeout:
                pass  # the group is ended on leaving the block
            return res.stdout, res.status


def config_params(root: buildroot.Root, printer: Printer) -> tuple[str, ...]:
    """Parameters the kernel's own configuration calls for (vm.config_params): a tree's
    ``.config`` is read; Debian's packaged kernels need none."""
    tree = root.kernel.tree
    if tree is None or not (tree / ".config").is_file():
        return ()
    params = vm.config_params((tree / ".config").read_text(errors="replace"))
    if params:
        printer.line(f"    kernel parameters for this kernel's configuration: {' '.join(params)}")
    return params


def resolve_spec(spec: KernelSpec, mirror: kernels.Mirror, cache: Path, ttl: float
                 ) -> tuple[Optional[ResolvedKernel], Optional[ktree.SourceKernel], Optional[kernels.AptIndex]]:
    """A spec -> (the kernel, or the source kernel still to build, and the index used)."""
    if spec.source == "local":
        return ktree.local_kernel(spec), None, None
    index = kernels.AptIndex(cache, spec.suite, mirror)
    index.update(ttl=ttl)
    if spec.source == "debian-src":
        return None, ktree.resolve_source(spec, index), index
    return kernels.resolve(spec, index), None, index


def _build_in(requested: str, chosen: Accel, spec: KernelSpec) -> BuildIn:
    if spec.source in ("local", "debian-src"):
        # The tree is on the host; the guest sees only the root.
        if requested == "guest":
            raise UsageError(f"--build-in guest does not work with {spec}: its kernel tree is on the host",
                             hint="leave --build-in at auto (or host)")
        return BuildIn.HOST
    if requested == "auto":
        # In-guest builds are ~80x slower under emulation.
        return BuildIn.GUEST if chosen is Accel.KVM else BuildIn.HOST
    return BuildIn(requested)


def run(req: RunRequest, printer: Printer) -> RunResult:
    r = _Run(req, printer)
    t0 = time.monotonic()
    try:
        with procs.SignalGuard():
            r.execute()
    except HarnessError as e:
        r.result.verdict, r.result.reason = e.verdict, str(e)
    except KeyboardInterrupt:
        r.result.verdict, r.result.reason = Verdict.INTERRUPTED, "interrupted by SIGINT (Ctrl-C)"
    finally:
        # Every process this run started was ended by procs.run on its way out; other runs'
        # processes (matrix threads) are not this run's to end.
        r.result.seconds = round(time.monotonic() - t0, 3)
    with procs.SignalGuard():
        report.write_atomic(r.out_dir / "result.json", report.result_json(r.result))
    return r.result

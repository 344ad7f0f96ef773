"""Build the project's module(s) against a kernel's own headers with that kernel's own compiler.

On the host the build runs inside the kernel's root with bubblewrap: the root
is bound read-only at /, only a copy of the module source is writable, there
is no network, and the headers sit at the absolute paths their Makefiles name.
The same command line runs in the guest for ``--build-in guest``.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from harness import procs
from harness.events import Note, Progress, Sink
from harness.kernel import trees
from harness.kernel.roots import Root
from harness.kernel.sandbox import sandbox_argv
from harness.kernel.sources import copy_sources, source_files
from harness.locks import atomic_dir
from harness.project import BuildOptions

_WARNING = re.compile(r"(\bwarning: |^WARNING: )")
_IGNORE = ("Skipping BTF generation",)  # headers-only builds have no vmlinux for BTF: not the module's fault
# What says why a build failed: gcc's and ld's errors, modpost's (an undefined symbol), make's.
_ERROR = re.compile(r"\berror\b|^ERROR: |No such file or directory|undefined!|\bError \d|cannot find|"
                    r"not found|No rule to make target", re.I)
GCOV_ARG = "GCOV_PROFILE=y"  # kbuild: compile the module for gcov (kernels with CONFIG_GCOV_KERNEL)
CACHE_FORMAT = 2  # bump when what a build cache entry holds changes (2: several modules, built.json)


@dataclass(frozen=True)
class BuildRequest:
    root: Root
    source: Path  # the project's source directory (only read)
    modules: tuple[str, ...]  # the .ko files wanted, by name
    options: BuildOptions = BuildOptions()
    timeout: float = 600
    within: Optional[Path] = None  # the project directory the sources may not leave (default: source)
    exclude: tuple[Path, ...] = ()  # not build input: the results directory, the project's own files

    def files(self) -> list[tuple[str, Path]]:
        return source_files(self.source, self.within or self.source, self.exclude)


@dataclass(frozen=True)
class BuildResult:
    ok: bool
    log: str
    kos: dict[str, str] = field(default_factory=dict)  # module name -> .ko path relative to the build dir
    warnings: tuple[str, ...] = ()
    errors: tuple[str, ...] = ()
    cached: bool = False


def make_argv(root: Root, build_dir: str, options: BuildOptions = BuildOptions()) -> list[str]:
    """The build command: kbuild on the directory (its Kbuild, or its Makefile's obj-m), or the
    project's own command with the placeholders filled in."""
    if options.command is not None:
        values = {"{headers}": root.headers, "{cc}": root.kernel.compiler, "{release}": root.kernel.release,
                  "{src}": build_dir}
        return [_fill(a, values) for a in options.command] + list(options.args)
    return (["make", "-C", root.headers, f"M={build_dir}"] + (["W=1"] if options.w1 else [])
            + [f"CC={root.kernel.compiler}", *options.args, "modules"])


def _fill(arg: str, values: dict[str, str]) -> str:
    for k, v in values.items():
        arg = arg.replace(k, v)
    return arg


def prepare_source(req: BuildRequest, dest: Path) -> None:
    """Copy the build input (``sources.source_files``) into ``dest``: the user's tree is never written."""
    copy_sources(req.files(), dest)


def source_key(req: BuildRequest) -> str:
    """What the built modules depend on: every source file, the kernel and its compiler, the command."""
    h = hashlib.sha256()
    for rel, real in req.files():
        h.update(rel.encode() + b"\0" + real.read_bytes() + b"\0")
    root, tree = req.root, req.root.kernel.tree
    h.update(json.dumps([CACHE_FORMAT, list(req.modules), root.path.name, root.kernel.release,
                         root.kernel.package_version, root.kernel.compiler, make_argv(root, "/tmp/build", req.options),
                         trees.tree_fingerprint(tree) if tree is not None else None]).encode())
    return h.hexdigest()[:16]


def build_cached(req: BuildRequest, build: Path, cache: Path, sink: Sink) -> BuildResult:
    """Build into ``build`` (a copy of the source), or reuse the modules built from identical
    sources for the same kernel, root and command.

    Only successful builds are kept (with their log); entries are made whole or not at all.
    A coverage build (``GCOV_PROFILE=y``) is never cached: its .gcno notes name the sources
    of the directory it was built in, which must be this run's.
    """
    if GCOV_ARG in req.options.args:
        return build_on_host(req, build, sink)
    entry = cache / "builds" / f"{req.modules[0]}-{source_key(req)}"
    manifest = entry / "built.json"
    if manifest.is_file():
        kos = json.loads(manifest.read_text())
        for rel in kos.values():
            (build / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(entry / rel, build / rel)
        sink(Note(f"reusing the modules in {entry} (sources unchanged)", verbose=True))
        res = summarize(True, (entry / "build.log").read_text(), build, req.modules)
        return BuildResult(res.ok, res.log, res.kos, res.warnings, res.errors, cached=True)
    res = build_on_host(req, build, sink)
    if res.ok:
        try:
            with atomic_dir(entry) as tmp:
                for rel in res.kos.values():
                    (tmp / rel).parent.mkdir(parents=True, exist_ok=True)
                    shutil.copy(build / rel, tmp / rel)
                (tmp / "build.log").write_text(res.log)
                (tmp / "built.json").write_text(json.dumps(res.kos))
        except OSError:
            pass  # another run stored the same entry first (or the cache is full): this build stands
    return res


def build_on_host(req: BuildRequest, build: Path, sink: Sink) -> BuildResult:
    """Build in a sandbox: the root's toolchain and headers, or, for a kernel tree, the host's
    toolchain with the tree; either way read-only but for the build directory, no network."""
    bwrap = procs.require_tool("bwrap", "bubblewrap")
    if req.root.kernel.tree is None:
        inside, tmp = "/tmp/build", "/tmp"
        system = ["--ro-bind", str(req.root.path), "/", "--tmpfs", "/tmp"]
    else:
        # The host's / read-only, so the tree is where it is (even under /tmp); the build
        # directory at its own path and the only writable place (TMPDIR too).
        inside = tmp = str(build)
        system = ["--ro-bind", "/", "/"]
    argv = sandbox_argv(bwrap, system, build, inside, tmp) + make_argv(req.root, inside, req.options)
    res = procs.run(argv, timeout=req.timeout, what="module build", on_line=lambda _n, ln: sink(Progress(ln)))
    return summarize(res.returncode == 0, res.output, build, req.modules)


def find_kos(build: Path, modules: tuple[str, ...]) -> dict[str, str]:
    """Where each wanted .ko is under ``build`` (the shallowest one, when a tree has several)."""
    found: dict[str, str] = {}
    for ko in sorted(build.rglob("*.ko"), key=lambda p: (len(p.parts), str(p))):
        if ko.stem in modules and ko.stem not in found:
            found[ko.stem] = str(ko.relative_to(build))
    return found


def summarize(ok: bool, log: str, build: Path, modules: tuple[str, ...]) -> BuildResult:
    lines = log.splitlines()
    warnings = tuple(ln for ln in lines if _WARNING.search(ln) and not ln.startswith(_IGNORE))
    errors = [ln for ln in lines if _ERROR.search(ln)]
    kos = find_kos(build, modules) if ok else {}
    missing = [m for m in modules if m not in kos]
    if ok and missing:
        ok = False
        built = sorted(p.name for p in build.rglob("*.ko"))
        errors.append(f"the build succeeded but produced no {', '.join(m + '.ko' for m in missing)}"
                      f" (built: {', '.join(built) or 'none'}; is obj-m += NAME.o in the Kbuild file or Makefile?)")
    return BuildResult(ok=ok, log=log, kos=kos if ok else {}, warnings=warnings, errors=tuple(errors))

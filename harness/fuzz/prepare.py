"""Everything a fuzz guest needs, made once: the project's declarations, the kernel and its
root, the module built with kcov instrumentation, what its .ko says about kcov's PCs.

    setup -> [fuzz] (declared, or inferred) -> resolve -> root -> build (KCOV_INSTRUMENT=y)

The phases are ``harness run``'s (``phases``); only the build adds ``KCOV_INSTRUMENT=y``
to make's command line (scripts/Makefile.lib then compiles the module's objects with
scripts/Makefile.kcov's CFLAGS_KCOV), on kernels with CONFIG_KCOV only.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from harness import fuzzdecl as decl
from harness import resources
from harness.errors import UsageError
from harness.events import Note, Sink, phase
from harness.fuzz import elfko
from harness.fuzz.corpus import Corpus, default_dir
from harness.fuzz.request import DEBUG_KERNEL, FuzzRequest
from harness.fuzzdecl import FuzzDecl
from harness.kernel import modbuild, roots
from harness.model import Phase
from harness.phases import BuildFailed, Setup, build_request, check_request, resolve, root, setup
from harness.project import Project, load_project

KCOV_ARG = "KCOV_INSTRUMENT=y"  # kbuild: instrument the module's objects for kcov (kernels with CONFIG_KCOV)
TEXT_LINK = 0xFFFFFFFF81000000  # x86_64's _text at link time with the default PHYSICAL_START


@dataclass(frozen=True)
class FuzzPrep:
    setup: Setup
    root: roots.Root
    decl: FuzzDecl
    declared: bool  # False: inferred from the sources
    targets: list[dict[str, Any]]
    run_dir: Path  # build/ holds the instrumented module
    ko: str  # the module's .ko, relative to build/
    ko_info: elfko.KoInfo
    text_link: int
    corpus: Corpus
    notes: list[str] = field(default_factory=list)

    @property
    def project(self) -> Project:
        return self.setup.project


def check(freq: FuzzRequest) -> FuzzDecl:
    """Every input of ``harness fuzz`` a user can get wrong, before anything is written or started
    (``phases.check_request``, then what fuzzing adds): the declarations (or what can be inferred),
    the corpus directory, the numbers. Returns the declarations."""
    req = replace(freq.run, record_trail=True)  # the trail is not checked by fuzzing
    check_request(req)
    for name, value, least in (("--max-findings", freq.max_findings, 0), ("--minimize-rounds", freq.minimize_rounds, 0),
                               ("--execs-per-child", freq.execs_per_child, 1)):
        if value < least:
            raise UsageError(f"{name} {value}: give {least} or more")
    if freq.corpus is not None:
        Corpus(freq.corpus).check_writable()
    d, _, _ = declarations(load_project(req.project))
    return d


def declarations(project: Project) -> tuple[FuzzDecl, bool, list[str]]:
    """``[fuzz]`` as declared, else as inferred from the sources (with what it was inferred from)."""
    if project.fuzz is not None:
        return project.fuzz, True, []
    found, notes = decl.infer(project.source)
    if found is None:
        raise UsageError(f"{project.where}: no [fuzz] declarations, and none could be inferred from "
                         f"{project.source}", hint="declare what to fuzz: [[fuzz.netlink]] protocol = N, "
                         "[[fuzz.chardev]] path = \"/dev/X\", [[fuzz.file]] path = \"/proc/X\" (README: Fuzzing)")
    return found, False, notes


def text_link(r: roots.Root) -> int:
    """Where _text was linked: from a kernel tree's System.map, else x86_64's default."""
    tree = r.kernel.tree
    smap = tree / "System.map" if tree is not None else None
    if smap is not None and smap.is_file():
        m = re.search(r"^([0-9a-f]+) [Tt] _text$", smap.read_text(errors="replace"), re.M)
        if m:
            return int(m.group(1), 16)
    return TEXT_LINK


def with_debug_info(r: roots.Root, args: tuple[str, ...]) -> tuple[str, ...]:
    """Make arguments that compile the module with DWARF on a kernel built without (the debug
    flavour: CONFIG_DEBUG_INFO_NONE): kcov's PCs and a crash's frames resolve to lines with it.
    The project's own KCFLAGS are kept, ``-g`` appended."""
    if r.has("DEBUG_INFO"):
        return args
    own = [a for a in args if a.startswith("KCFLAGS=")]
    rest = tuple(a for a in args if not a.startswith("KCFLAGS="))
    return rest + ((own[-1] + " -g") if own else "KCFLAGS=-g",)


def prepare(freq: FuzzRequest, sink: Sink, run_dir: Path, done: list[Phase]) -> FuzzPrep:
    req = replace(freq.run, record_trail=True)  # the trail is not checked by fuzzing
    s = setup(req)
    d, declared, notes = declarations(s.project)
    corpus = Corpus(freq.corpus or default_dir(s.project.root, s.project.module))
    corpus.make()
    r = root(s, resolve(s, req, sink, done), req, sink, done)
    if freq.coverage and not r.has("KCOV"):
        raise UsageError(f"kernel {s.spec} has no kcov (CONFIG_KCOV): coverage-guided fuzzing needs it",
                         hint=f"--kernel {DEBUG_KERNEL} (built from source once), or --no-coverage for "
                         "blind fuzzing of the seeds")
    breq = build_request(s, r, req)
    modbuild.prepare_source(breq, run_dir / "build")
    resources.install_guest_files(run_dir)
    args = with_debug_info(r, breq.options.args) + ((KCOV_ARG,) if freq.coverage else ())
    breq = replace(breq, options=replace(breq.options, args=args))
    first = s.project.modules[0].name
    with phase(sink, done, "build", f"{first}.ko with {r.kernel.compiler}"
               + (f", {KCOV_ARG}" if freq.coverage else "")) as mark:
        built = modbuild.build_cached(breq, run_dir / "build", s.cache, sink)
        mark.ok = built.ok
        mark.detail = "\n".join(built.errors[-20:])
    if not built.ok:
        raise BuildFailed(built)
    info = elfko.read_ko(run_dir / "build" / built.kos[first])
    if freq.coverage and not info.instrumented:
        raise UsageError(f"{first}.ko was built with {KCOV_ARG} but calls no {elfko.KCOV_SYMBOL}: kcov would "
                         "see none of it", hint="a [build] command of the project's own must pass make's "
                         f"arguments on ({KCOV_ARG} is one); see build.log")
    if freq.coverage:
        sink(Note(f"    {first}.ko: {info.blocks} basic blocks instrumented for kcov"))
    return FuzzPrep(s, r, d, declared, d.targets(), run_dir, built.kos[first], info, text_link(r), corpus, notes)


def plan(prep: FuzzPrep, freq: FuzzRequest, run_id: str, duration: float, seed: int,
         splat_patterns: list[str]) -> dict[str, Any]:
    """What the guest fuzzer is told (``harness/guest/fuzzer.py``)."""
    from harness.guest import fuzzer
    from harness.plan import BUILD_DIR

    m = prep.project.modules[0]
    return {"version": fuzzer.VERSION, "run_id": run_id, "module": m.module, "ko": f"{BUILD_DIR}/{prep.ko}",
            "params": list(m.params), "requires": list(prep.project.requires),
            "sections": prep.ko_info.exec_sections, "text_link": prep.text_link, "coverage": freq.coverage,
            "duration": duration, "seed": seed, "targets": prep.targets, "corpus": prep.corpus.seeds(prep.targets),
            "splats": splat_patterns, "exec_timeout": freq.exec_timeout,
            "execs_per_child": freq.execs_per_child}

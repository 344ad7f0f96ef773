"""kcov's PCs as the module's source lines, and line coverage over time.

Every PC kcov can report is a call site of ``__sanitizer_cov_trace_pc`` in the
instrumented .ko (``elfko``); each resolves, through the .ko's DWARF (``addr2line``
with the binutils that built it: ``kernel.symbolize.Binutils``), to the source line of
the basic block it starts (the innermost one when inlined). The module's coverable
lines are those of all call sites; a line is covered once any of its PCs was reached.
Lines of the kernel's headers (inline helpers compiled into the module) are counted
apart from the module's own files.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Sequence

from harness.fuzz.elfko import KoInfo
from harness.symbolize import KO_DIR, Binutils

Pc = tuple[str, int]  # (section, offset of the return address)
Line = tuple[str, int]  # (file relative to the module's source, line)


@dataclass(frozen=True)
class LineMap:
    lines: dict[Pc, Line]  # every call site that resolved
    own: frozenset[str]  # the files that are the module's (the rest: the kernel's headers)

    def covered(self, pcs: Sequence[Pc]) -> set[Line]:
        return {self.lines[p] for p in pcs if p in self.lines}

    def total(self) -> set[Line]:
        return set(self.lines.values())


def own_files(source: Path) -> set[str]:
    """The module's own files, relative to its source directory."""
    return {str(p.relative_to(source)) for p in source.rglob("*") if p.is_file()}


def relative(path: str, own_files: set[str]) -> str:
    """The module's own file ``path`` names (the .ko names the directory it was built in, maybe
    another run's, its build reused), relative to its source; other paths as they are."""
    for rel in sorted(own_files, key=len, reverse=True):
        if path == rel or path.endswith("/" + rel):
            return rel
    return path.split("/./", 1)[-1]  # a kernel tree's header: include/linux/skbuff.h


def line_map(tools: Binutils, ko: str, info: KoInfo, own_files: set[str]) -> LineMap:
    """Resolve every call site of ``ko`` (relative to the tools' directory) to its line."""
    out: dict[Pc, Line] = {}
    for section, sites in info.callsites.items():
        # The return address follows the call: its line is the call's, one byte before.
        found = tools.lines(f"{KO_DIR}/{ko}", [s - 1 for s in sites], section)
        for s in sites:
            chain = found.get(s - 1)
            if chain:
                _, file, line = chain[0]
                out[(section, s)] = (relative(file, own_files), line)
    own = frozenset(f for f, _ in out.values() if f in own_files)
    return LineMap(out, own)


def figures(lm: LineMap, reached: Sequence[Pc]) -> dict[str, Any]:
    """Lines covered against lines coverable: the module's own files, then per file."""
    total, covered = lm.total(), lm.covered(reached)
    mine = {ln for ln in total if ln[0] in lm.own}
    got = covered & mine
    files = []
    for f in sorted({ln[0] for ln in total}):
        t = sorted(n for ff, n in total if ff == f)
        c = sorted(n for ff, n in covered if ff == f)
        files.append({"file": f, "own": f in lm.own, "covered": len(c), "total": len(t),
                      "lines_covered": c, "lines_missed": sorted(set(t) - set(c))})
    return {"covered": len(got), "total": len(mine), "percent": _pct(len(got), len(mine)),
            "headers": {"covered": len(covered - mine), "total": len(total - mine)}, "files": files}


def over_time(lm: Optional[LineMap], first_seen: dict[Pc, float], samples: Sequence[dict[str, Any]]
              ) -> list[dict[str, Any]]:
    """Each sample (t, execs, pcs) with the module's own lines covered by then."""
    out = []
    order = sorted(first_seen.items(), key=lambda kv: kv[1])
    for s in samples:
        reached = [pc for pc, t in order if t <= s["t"]]
        row = dict(s)
        if lm is not None:
            row["lines"] = len({ln for ln in lm.covered(reached) if ln[0] in lm.own})
        out.append(row)
    return out


def _pct(a: int, b: int) -> Optional[float]:
    return round(100.0 * a / b, 1) if b else None

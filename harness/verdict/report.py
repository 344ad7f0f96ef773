"""Reporters: small pure functions from run results to text (result.json, the terminal, summary.md)."""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import Any, Optional, Sequence

from harness.model import RunResult, Verdict, worst
from harness.verdict import compare


def result_json(result: RunResult) -> str:
    return json.dumps(result.to_json(), indent=1, sort_keys=False) + "\n"


def summary_lines(result: RunResult) -> list[str]:
    out = [f"kernel {result.kernel}" + (f" ({result.kernel_release}, package {result.package_version})"
                                         if result.kernel_release else "")]
    for p in result.phases:
        out.append(f"  {p.name:<8} {p.seconds:7.1f}s  {'ok' if p.ok else 'FAILED'}")
    if result.boot:
        out.append("  vm phase: " + ", ".join(f"{k.replace('_', ' ')} {v:.1f}s" for k, v in result.boot.items()))
    if result.build_warnings:
        out.append(f"  build warnings: {len(result.build_warnings)}")
        out += [f"    {w}" for w in result.build_warnings[:10]]
    if result.boot_splats:
        out.append(f"  kernel reports while booting (before any guest step, not the module's): "
                   f"{len(result.boot_splats)}")
        out += [f"    seq {s['seq']}: {s['text']}" for s in result.boot_splats[:5]]
    for sp in result.splats[:3]:
        out += splat_lines(sp)
    allowed = [c for c in result.complaints if c.get("allowed_by")]
    if allowed:
        out.append(f"  kernel complaints allowed: {len(allowed)}")
        for c in allowed[:10]:
            out += [f"    seq {c['seq']} <{c['level']}> {c['text']}", f"      allowed: {c['allowed_by']}"]
    if result.kunit:
        out += kunit_lines(result.kunit)
    if result.coverage:
        out.append("  " + coverage_line(result.coverage))
    if result.trail:
        out.append("  trail:")
        out += [f"    seq {t['seq']:>5} <{t['level']}> {t['text']}" for t in result.trail]
    if result.trail_diff:
        out.append("  trail diff:")
        out += ["    " + ln for ln in result.trail_diff.splitlines()]
    return out


def kunit_lines(cases: Sequence[dict[str, Any]]) -> list[str]:
    """Each KUnit case on a line, its diagnostics under a failing one."""
    counts: dict[str, int] = {}
    for c in cases:
        counts[c["status"]] = counts.get(c["status"], 0) + 1
    out = ["  kunit: " + ", ".join(f"{n} {s}" for s, n in counts.items())]
    for c in cases:
        name = f"{c['suite']}.{c['name']}" if c["suite"] else c["name"]
        out.append(f"    {c['status']:<7} {name}" + (f"  # {c['reason']}" if c.get("reason") else ""))
        if c["status"] in ("fail", "crashed"):
            out += [f"        {d}" for d in c.get("diagnostics", [])[-12:]]
    return out


def coverage_line(cov: dict[str, Any]) -> str:
    """``coverage: lines 92.1% (35/38), branches 75.0% (12/16)``, or why there is none."""
    if "error" in cov:
        return f"coverage: none ({cov['error']})"

    def one(kind: str) -> str:
        d = cov[kind]
        pct = "n/a" if d["percent"] is None else f"{d['percent']:.1f}%"
        return f"{kind} {pct} ({d['covered']}/{d['total']})"

    return f"coverage: {one('lines')}, {one('branches')} (report: {cov.get('reports', {}).get('index.html', '-')})"


def splat_lines(sp: dict[str, Any]) -> list[str]:
    """A splat for people: its line, the module's frames decoded (file:line, inlined chain), the source."""
    out = [f"  splat ({sp['rule']}): {sp['text']}"]
    frames = sp.get("module_frames") or []
    if frames:
        out.append("    in the module:")
        out += [f"      {f}" for f in frames]
    src = sp.get("source")
    if src:
        out.append(f"    {src['file']}:{src['line']}:")
        for n, text in enumerate(src["lines"], start=src["first"]):
            out.append(f"    {'>' if n == src['line'] else ' '}{n:5} {text}")
    return out


def _phase_seconds(r: RunResult) -> dict[str, float]:
    return {p.name: p.seconds for p in r.phases}


def matrix_json(results: Sequence[RunResult], wall: float, rows: Sequence[compare.Row] = (),
                extra: Optional[dict[str, Any]] = None) -> str:
    """matrix.json; ``extra``: more top-level keys (harness report: the run, the sources, the history)."""
    return json.dumps({
        "schema": "kmod-harness/matrix/v2",
        "verdict": worst([r.verdict for r in results]).value,
        "exit_code": compare.exit_code(rows) if rows else worst([r.verdict for r in results]).exit_code,
        "wall_seconds": round(wall, 3),
        "kernels": [dict(asdict(compare.Outcome.of(r)), exit_code=r.verdict.exit_code,
                         build_warnings=len(r.build_warnings), phases=_phase_seconds(r), seconds=r.seconds,
                         **({"attempts": list(r.attempts)} if r.attempts else {}))
                    for r in results],
        "compared": [row.to_json() for row in rows],
        **(extra or {}),
    }, indent=1) + "\n"


PHASES = ("resolve", "root", "build", "vm")


def summary_markdown(results: Sequence[RunResult], wall: float, rows: Sequence[compare.Row] = ()) -> str:
    """A Markdown table in the form GitHub's job summary shows."""
    head = "| kernel | package version | verdict | build warnings | "
    head += " | ".join(f"{p} (s)" for p in PHASES) + " | total (s) |"
    out = ["## kmod-harness matrix", "", head, "| --- | --- | --- | ---: | " + " | ".join("---:" for _ in PHASES)
           + " | ---: |"]
    for r in results:
        ph = _phase_seconds(r)
        version = (r.package_version or "-") + (f" ({r.kernel_release})" if r.kernel_release else "")
        mark = "pass" if r.verdict is Verdict.PASS else f"**{r.verdict.value}**"
        if r.classification == "flaky":
            counted = [a for a in r.attempts if a.get("counted", True)]
            mark = f"**flaky** ({r.verdict.value} in {sum(a.get('verdict') != 'pass' for a in counted)} of " \
                f"{len(counted)} attempts)"
        cells = [f"`{r.kernel}`", version, mark, str(len(r.build_warnings))]
        cells += [f"{ph[p]:.1f}" if p in ph else "-" for p in PHASES]
        cells.append(f"{r.seconds:.1f}")
        out.append("| " + " | ".join(cells) + " |")
    out += ["", f"Wall time {wall:.0f} s for {len(results)} kernels."]
    table = compare.markdown(rows)
    if table:
        out += ["", "### Against what was known (baseline, expected failures)", "", *table]
    for r in results:
        if r.verdict is not Verdict.PASS:
            fence = "~~~~"
            out += ["", f"<details><summary>{r.kernel}: {r.verdict.value}</summary>", "", fence,
                    r.reason[:4000], fence, "", "</details>"]
    return "\n".join(out) + "\n"

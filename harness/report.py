"""Reporters: small functions from a RunResult to text, and an atomic writer."""

from __future__ import annotations

import json
import os
import tempfile
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Sequence

from harness.model import RunResult, Verdict, worst


def result_json(result: RunResult) -> str:
    return json.dumps(result.to_json(), indent=1, sort_keys=False) + "\n"


def junit_xml(results: Sequence[RunResult]) -> str:
    """One <testsuite> per kernel; one <testcase> per phase and one for the verdict."""
    suites = ET.Element("testsuites", name="kmod-harness")
    for r in results:
        suite = ET.SubElement(suites, "testsuite", name=r.kernel, tests=str(len(r.phases) + 1),
                              time=f"{r.seconds:.3f}")
        failures = 0
        for p in r.phases:
            case = ET.SubElement(suite, "testcase", classname=r.kernel, name=p.name, time=f"{p.seconds:.3f}")
            if not p.ok:
                failures += 1
                ET.SubElement(case, "failure", message=p.detail[:500] or "failed").text = p.detail
        case = ET.SubElement(suite, "testcase", classname=r.kernel, name="verdict", time="0")
        if r.verdict is not Verdict.PASS:
            failures += 1
            tag = "failure" if r.verdict is Verdict.FAIL else "error"
            ET.SubElement(case, tag, message=f"{r.verdict.value}: {r.reason.splitlines()[0] if r.reason else ''}",
                          type=r.verdict.value).text = r.reason
        if r.trail_diff:
            ET.SubElement(case, "system-out").text = r.trail_diff
        suite.set("failures", str(failures))
    ET.indent(suites)
    return ET.tostring(suites, encoding="unicode", xml_declaration=True) + "\n"


def write_atomic(path: Path, text: str) -> None:
    """Write a whole file or nothing: a temp file beside it, renamed into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; reports are for everyone who can read the results dir
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


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
    if result.trail:
        out.append("  trail:")
        out += [f"    seq {t['seq']:>5} <{t['level']}> {t['text']}" for t in result.trail]
    if result.trail_diff:
        out.append("  trail diff:")
        out += ["    " + ln for ln in result.trail_diff.splitlines()]
    return out


def _phase_seconds(r: RunResult) -> dict[str, float]:
    return {p.name: p.seconds for p in r.phases}


def matrix_json(results: Sequence[RunResult], wall: float) -> str:
    return json.dumps({
        "schema": "kmod-harness/matrix/v1",
        "verdict": worst([r.verdict for r in results]).value,
        "wall_seconds": round(wall, 3),
        "kernels": [{
            "kernel": r.kernel, "kernel_release": r.kernel_release, "package_version": r.package_version,
            "verdict": r.verdict.value, "exit_code": r.verdict.exit_code, "reason": r.reason.split("\n")[0],
            "build_warnings": len(r.build_warnings), "phases": _phase_seconds(r), "seconds": r.seconds,
        } for r in results],
    }, indent=1) + "\n"


PHASES = ("resolve", "root", "build", "vm")


def summary_markdown(results: Sequence[RunResult], wall: float) -> str:
    """A Markdown table in the form GitHub's job summary shows."""
    head = "| kernel | package version | verdict | build warnings | "
    head += " | ".join(f"{p} (s)" for p in PHASES) + " | total (s) |"
    out = ["## kmod-harness matrix", "", head, "| --- | --- | --- | ---: | " + " | ".join("---:" for _ in PHASES)
           + " | ---: |"]
    for r in results:
        ph = _phase_seconds(r)
        version = (r.package_version or "-") + (f" ({r.kernel_release})" if r.kernel_release else "")
        mark = "pass" if r.verdict is Verdict.PASS else f"**{r.verdict.value}**"
        cells = [f"`{r.kernel}`", version, mark, str(len(r.build_warnings))]
        cells += [f"{ph[p]:.1f}" if p in ph else "-" for p in PHASES]
        cells.append(f"{r.seconds:.1f}")
        out.append("| " + " | ".join(cells) + " |")
    out += ["", f"Wall time {wall:.0f} s for {len(results)} kernels."]
    for r in results:
        if r.verdict is not Verdict.PASS:
            fence = "~~~~"
            out += ["", f"<details><summary>{r.kernel}: {r.verdict.value}</summary>", "", fence,
                    r.reason[:4000], fence, "", "</details>"]
    return "\n".join(out) + "\n"

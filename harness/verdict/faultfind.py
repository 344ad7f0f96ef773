"""The fault walk's findings, deduplicated, and its reports: faults.json, JUnit, the terminal. Pure.

A finding is one call site and one consequence: the same leak reached from three
points is one finding (its first point, the others listed). Its site is the
injected call, resolved to the module's file:line by the front end (``Decoded``);
points whose site could not be resolved are keyed by their frame as printed.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Optional, Sequence

from harness import faultplan
from harness.verdict import faultpoint
from harness.verdict.faultpoint import Consequence, PointOutcome

SCHEMA = "kmod-harness/faults/v1"
Key = tuple[str, int]  # (phase, n)


@dataclass(frozen=True)
class Decoded:
    """What symbolization made of a point: its site, and each consequence's trace (by record)."""

    site: Optional[str] = None  # "faulty.c:71": the injected call, in the module's source
    frame: Optional[str] = None  # the site's frame as the kernel printed it
    in_function: Optional[str] = None  # the module's function it is in
    source: Optional[dict[str, Any]] = None  # the lines around it (symbolize.source_excerpt)
    traces: Mapping[int, dict[str, Any]] = field(default_factory=dict)  # consequence seq -> trace

    @property
    def where(self) -> str:
        return self.site or self.frame or "(no injection logged)"


@dataclass
class Finding:
    site: str
    function: Optional[str]
    allocator: Optional[str]
    fault: str  # failslab, fail_page_alloc
    step: str
    n: int
    consequence: Consequence
    trace: dict[str, Any]
    decoded: Decoded
    reproduce: str
    also: list[Key] = field(default_factory=list)  # other points with the same site and consequence

    def to_json(self) -> dict[str, Any]:
        return {"site": self.site, "function": self.function, "allocator": self.allocator, "fault": self.fault,
                "step": self.step, "n": self.n, "consequence": self.consequence.kind,
                "headline": self.consequence.text, "detail": self.consequence.detail,
                "trace": self.trace.get("trace", []), "module_frames": self.trace.get("module_frames", []),
                "source": self.trace.get("source"), "site_frame": self.decoded.frame,
                "site_source": self.decoded.source, "also": [{"step": p, "n": n} for p, n in self.also],
                "reproduce": self.reproduce}


_OFFSET = re.compile(r"\+0x[0-9a-f]+/0x[0-9a-f]+")
_HEX = re.compile(r"0x[0-9a-f]+")
_NUMBERS = re.compile(r"\b(pid|PID|CPU|cpu|task \S+/)\s*:?\s*\d+")


def normalize(text: str) -> str:
    """A consequence's text without what changes between points: offsets, addresses, pids."""
    text = _OFFSET.sub("", text)
    text = _HEX.sub("0x", text)
    return _NUMBERS.sub(lambda m: m.group(1), text).strip().rstrip(":")


def findings(outcomes: Sequence[PointOutcome], decoded: Mapping[Key, Decoded],
             reproduce: Callable[[str, int], str]) -> list[Finding]:
    out: dict[tuple[str, str, str], Finding] = {}
    for o in outcomes:
        d = decoded.get((o.phase, o.n), Decoded())
        for c in o.consequences:
            key = (d.where, c.kind, normalize(c.text))
            if key in out:
                out[key].also.append((o.phase, o.n))
                continue
            inj = o.injection
            out[key] = Finding(site=d.where, function=inj.function if inj else None,
                               allocator=inj.allocator if inj else None, fault=inj.attr if inj else "",
                               step=o.phase, n=o.n, consequence=c,
                               trace=dict(d.traces.get(c.seq, {})) if c.seq is not None else {},
                               decoded=d, reproduce=reproduce(o.phase, o.n))
    return list(out.values())


def outcome_of(o: PointOutcome) -> list[str]:
    """The point's outcome for the table: its consequences' kinds, or how it ended cleanly."""
    return [c.kind for c in o.consequences] or [o.outcome]


def table(outcomes: Sequence[PointOutcome], decoded: Mapping[Key, Decoded]) -> list[dict[str, Any]]:
    """Call site x outcome: per site (in order of first appearance), how many points ended how."""
    rows: dict[str, dict[str, Any]] = {}
    for o in outcomes:
        if o.n == 0 or (not o.injected and not o.consequences):
            continue  # count passes and the passes that injected nothing have no site
        d = decoded.get((o.phase, o.n), Decoded())
        row = rows.setdefault(d.where, {"site": d.where, "function": o.injection.function if o.injection else None,
                                        "steps": [], "outcomes": {}})
        if o.phase not in row["steps"]:
            row["steps"].append(o.phase)
        for kind in outcome_of(o):
            row["outcomes"][kind] = row["outcomes"].get(kind, 0) + 1
    return list(rows.values())


def point_json(o: PointOutcome, d: Decoded) -> dict[str, Any]:
    armed = o.armed
    return {"step": o.phase, "n": o.n, "outcome": o.outcome, "injected": o.injected, "site": d.site,
            "site_frame": d.frame, "function": o.injection.function if o.injection else None,
            "fault": o.injection.attr if o.injection else None,
            "returncode": armed.returncode if armed else None, "calls": o.run.calls if o.run and o.n == 0 else None,
            "consequences": [c.to_json() for c in o.consequences], "guest": o.guest,
            "seconds": o.run.seconds if o.run else None, "problem": o.run.problem if o.run else "",
            "seq": [o.run.seq_before, o.run.seq_after] if o.run else None}


def walked(outcomes: Sequence[PointOutcome]) -> int:
    """Points walked: every point but the count passes."""
    return sum(1 for o in outcomes if o.n > 0)


def faults_json(head: Mapping[str, Any], outcomes: Sequence[PointOutcome], found: Sequence[Finding],
                decoded: Mapping[Key, Decoded], phases: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """faults.json: ``head`` (kernel, module, verdict, times...), the findings, the table, every point."""
    return dict(head, schema=SCHEMA, points_walked=walked(outcomes), phases=list(phases),
                findings=[f.to_json() for f in found], table=table(outcomes, decoded),
                points=[point_json(o, decoded.get((o.phase, o.n), Decoded())) for o in outcomes])


def point_name(phase: str, n: int) -> str:
    return f"{phase} point {n}" if n else f"{phase} count pass"


def junit_xml(kernel: str, outcomes: Sequence[PointOutcome], decoded: Mapping[Key, Decoded],
              seconds: float) -> str:
    """One <testcase> per point (classname ``KERNEL.faults.STEP``); a point with consequences fails."""
    suites = ET.Element("testsuites", name="kmod-harness faults")
    suite = ET.SubElement(suites, "testsuite", name=f"{kernel} faults", tests=str(len(outcomes)),
                          time=f"{seconds:.3f}")
    failures = 0
    for o in outcomes:
        d = decoded.get((o.phase, o.n), Decoded())
        case = ET.SubElement(suite, "testcase", classname=f"{kernel}.faults.{o.phase}", name=point_name(o.phase, o.n),
                             time=f"{o.run.seconds if o.run else 0:.3f}")
        where = f" at {d.where}" if o.injected else ""
        if o.consequences:
            failures += 1
            first = o.consequences[0]
            text = "\n".join(f"{c.kind}: {c.text}" + (f"\n{c.detail}" if c.detail else "") for c in o.consequences)
            ET.SubElement(case, "failure", message=f"{first.kind}{where}: {first.text}"[:500],
                          type=first.kind).text = text
        else:
            ET.SubElement(case, "system-out").text = f"{o.outcome}{where}"
    suite.set("failures", str(failures))
    ET.indent(suites)
    return ET.tostring(suites, encoding="unicode", xml_declaration=True) + "\n"


def finding_lines(f: Finding) -> list[str]:
    """A finding for the terminal: where, what, the decoded trace, and how to get it again."""
    called = f" calling {f.function}" if f.function else ""
    fault = f" ({f.fault}: {f.allocator})" if f.fault else ""
    out = [f"  {f.consequence.kind} at {f.site}{called}{fault}, {point_name(f.step, f.n)}",
           f"    {f.consequence.text}"]
    if f.also:
        out.append("    also at: " + ", ".join(point_name(p, n) for p, n in f.also))
    frames = f.trace.get("module_frames") or []
    if frames:
        out.append("    in the module:")
        out += [f"      {x}" for x in frames[:12]]
    src = f.decoded.source
    if src:
        out.append(f"    the injected call, {src['file']}:{src['line']}:")
        out += [f"    {'>' if n == src['line'] else ' '}{n:5} {text}" for n, text in enumerate(src["lines"],
                                                                                           start=src["first"])]
    out.append(f"    reproduce: {f.reproduce}")
    return out


def phase_rows(outcomes: Sequence[PointOutcome], order: Sequence[str], cut: int) -> list[dict[str, Any]]:
    """Per phase: calls the count pass saw, points walked, whether the walk reached a pass without an
    injection (``complete``), or was cut at ``cut`` points, and any problem."""
    out = []
    for phase in order:
        mine = [o for o in outcomes if o.phase == phase]
        count = next((o for o in mine if o.n == 0 and o.run is not None), None)
        walked_n = [o.n for o in mine if o.n > 0]
        complete = any(o.outcome == faultpoint.NOT_INJECTED for o in mine) or (
            count is not None and count.run is not None and count.run.calls == 0)
        problem = next((o.run.problem for o in mine if o.run is not None and o.run.problem), "")
        out.append({"step": phase, "calls": count.run.calls if count and count.run else None,
                    "points": len(walked_n), "complete": complete, "cut": max(walked_n, default=0) >= cut,
                    "problem": problem})
    return out


def is_init(phase: str) -> bool:
    return phase == faultplan.INIT

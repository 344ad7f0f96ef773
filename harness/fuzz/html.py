"""index.html of a fuzz run: what fuzz.json says, for people, in one static page. Pure.

The verdict and the figures (executions per second, corpus, coverage), each finding with
its consequence, the module's frames and source, the repro and its ``[[step]]``; the
module's line coverage over time as an inline SVG, and per file the lines reached and missed.
"""

from __future__ import annotations

from html import escape
from typing import Any, Optional

from harness.verdict.html import _CSS


def page(d: dict[str, Any], work: str) -> str:
    title = f"kmod-harness fuzz: {d.get('module', '?')} on {d['kernel']}"
    parts = [f"<!doctype html><html lang=en><head><meta charset=utf-8><title>{escape(title)}</title>"
             f"<style>{_CSS}</style></head><body>", f"<h1>{escape(title)}</h1>", _summary(d, work)]
    parts.append("<h2>Findings</h2>" + ("".join(_finding(f) for f in d["findings"]) or "<p>none</p>"))
    cov = d.get("coverage") or {}
    parts.append("<h2>Module line coverage over time</h2>" + _chart(cov.get("over_time") or []))
    if cov.get("lines"):
        parts.append("<h2>Lines per file</h2>" + _files(cov["lines"]))
    return "\n".join(parts) + "\n</body></html>\n"


def _summary(d: dict[str, Any], work: str) -> str:
    cov = d.get("coverage") or {}
    ln = cov.get("lines") or {}
    rows = [("verdict", f'<span class="v {escape(d["verdict"])}">{escape(d["verdict"])}</span> '
                        f"{escape(d.get('reason', ''))}"),
            ("kernel", escape(f"{d['kernel']} ({d.get('kernel_release', '?')})")),
            ("interfaces", escape(", ".join(d.get("targets", []))) + ("" if d.get("declared", True)
                                                                     else " (inferred from the sources)")),
            ("coverage feedback", "kcov" if d["coverage_feedback"] else "off"),
            ("executions", f"{d.get('execs', 0)} in {d.get('fuzz_seconds', 0):.0f}s of fuzzing: "
                           f"{d.get('execs_per_second') or 0} per second ({d['guests']} guest(s), "
                           f"{d['seconds']:.0f}s in all)"),
            ("corpus", escape(f"{(d.get('corpus') or {}).get('size', 0)} inputs in "
                              f"{(d.get('corpus') or {}).get('path', '-')}, "
                              f"{(d.get('corpus') or {}).get('added', 0)} added by this run")),
            ("module PCs reached", f"{cov.get('pcs', 0)} of {d.get('blocks', '?')} basic blocks"),
            ("module lines covered", f"{ln.get('covered', '-')} of {ln.get('total', '-')} "
                                     f"({ln.get('percent', '-')}%)" if ln else "-"),
            ("evidence", f'<a href="{escape(work)}/">{escape(work)}/</a>: guests\' consoles, confirmation runs')]
    return "<table>" + "".join(f"<tr><th>{k}</th><td>{v}</td></tr>" for k, v in rows) + "</table>"


def _finding(f: dict[str, Any]) -> str:
    cls = "crash" if f["confirmed"] else "infra"
    out = [f'<h3 class="{cls}">{escape(f["name"])}</h3><p>{escape(f["consequence"])}</p>']
    if f.get("duplicate_of"):
        out.append(f"<p class=muted>the same crash as {escape(f['duplicate_of'])}</p>")
    if f.get("where"):
        out.append(f"<p>in the module at <b>{escape(f['where'])}</b></p>")
    if f.get("trace"):
        out.append("<pre>" + escape("\n".join(f["trace"])) + "</pre>")
    src: Optional[dict[str, Any]] = f.get("source")
    if src:
        lines = [f"{'>' if n == src['line'] else ' '}{n:5} {t}" for n, t in enumerate(src["lines"], src["first"])]
        out.append(f"<pre>{escape(src['file'])}:{src['line']}\n" + escape("\n".join(lines)) + "</pre>")
    if f.get("repro"):
        out.append(f"<p>repro: <code>{escape(f['repro'])}</code> ({f['input_bytes']} bytes minimized to "
                   f"{f['minimized_bytes']}); add it as a step:</p><pre>{escape(f.get('step') or '')}</pre>")
    out.append(f"<p class=muted>found {f['found_at']:.0f}s after the start, confirmed at {f['confirmed_at']:.0f}s; "
               f"runs: {escape(', '.join(f.get('runs', [])))}</p>")
    return "".join(out)


def _chart(points: list[dict[str, Any]], w: int = 640, h: int = 200) -> str:
    key = "lines" if points and "lines" in points[-1] else "pcs"
    if not points:
        return "<p>no samples</p>"
    points = [{"t": 0.0, key: 0}] + list(points)  # nothing is covered before the first guest
    tmax = max(p["t"] for p in points) or 1.0
    ymax = max(p.get(key, 0) for p in points) or 1
    xy = " ".join(f"{40 + (w - 50) * p['t'] / tmax:.1f},{h - 20 - (h - 30) * p.get(key, 0) / ymax:.1f}"
                  for p in points)
    return (f'<svg width="{w}" height="{h}" role="img" aria-label="{key} covered over time">'
            f'<polyline fill="none" stroke="#4a7ab8" stroke-width="2" points="{xy}"/>'
            f'<text x="2" y="14" font-size="11">{ymax} {key}</text>'
            f'<text x="{w - 60}" y="{h - 4}" font-size="11">{tmax:.0f} s</text>'
            f'<line x1="40" y1="{h - 20}" x2="{w - 10}" y2="{h - 20}" stroke="#999"/></svg>')


def _files(ln: dict[str, Any]) -> str:
    rows = [f"<tr><td>{escape(f['file'])}{'' if f['own'] else ' (kernel header)'}</td>"
            f"<td>{f['covered']} / {f['total']}</td><td>{escape(_ranges(f['lines_missed']))}</td></tr>"
            for f in ln["files"]]
    return "<table><tr><th>file</th><th>lines</th><th>lines never reached</th></tr>" + "".join(rows) + "</table>"


def _ranges(nums: list[int]) -> str:
    out: list[str] = []
    for n in nums:
        if out and out[-1].split("-")[-1] == str(n - 1):
            out[-1] = out[-1].split("-")[0] + f"-{n}"
        else:
            out.append(str(n))
    return ", ".join(out) or "-"

"""results/index.html for a fault walk: the findings, the call site x outcome table, every point. Pure.

Built from faults.json's content, so the page says exactly what the file does.
"""

from __future__ import annotations

from html import escape
from typing import Any, Mapping

from harness.verdict import faultpoint
from harness.verdict.html import _CSS

_CLEAN = (faultpoint.ERROR_RETURNED, faultpoint.HANDLED, faultpoint.NOT_INJECTED, faultpoint.COUNTED)


def page(doc: Mapping[str, Any], prefix: str) -> str:
    """``prefix``: where the kernel's directory is, relative to the page (for the evidence links)."""
    title = f"kmod-harness faults: {doc.get('module') or '?'} on {doc['kernel']}"
    v = escape(doc["verdict"])
    parts = [f"<!doctype html><html lang=en><head><meta charset=utf-8><title>{escape(title)}</title>"
             f"<style>{_CSS}</style></head><body>", f"<h1>{escape(title)}</h1>",
             f'<p><span class="v {v}">{v}</span> {escape(doc["reason"])}: {doc["points_walked"]} points walked on '
             f'{doc["guests"]} guests in {doc["seconds"]:.0f}s. <a href="{escape(prefix)}faults.json">faults.json</a>,'
             f' <a href="{escape(prefix)}faults.log">faults.log</a>, <a href="{escape(prefix)}faults/">each guest\'s '
             "console and channel</a>.</p>", _phases(doc), _table(doc), _findings(doc), _points(doc)]
    return "\n".join(parts) + "\n</body></html>\n"


def _phases(doc: Mapping[str, Any]) -> str:
    rows = "".join(f"<tr><td>{escape(p['step'])}</td><td>{'' if p['calls'] is None else p['calls']}</td>"
                   f"<td>{p['points']}</td><td>{'yes' if p['complete'] else 'no'}{' (cut)' if p['cut'] else ''}</td>"
                   f"<td>{escape(p['problem'])}</td></tr>" for p in doc["phases"])
    return ("<h2>Phases</h2><table><tr><th>step</th><th>calls (count pass)</th><th>points walked</th>"
            f"<th>walked to a pass without injection</th><th>problem</th></tr>{rows}</table>")


def _table(doc: Mapping[str, Any]) -> str:
    kinds: list[str] = []
    for row in doc["table"]:
        kinds += [k for k in row["outcomes"] if k not in kinds]
    kinds.sort(key=lambda k: (k in _CLEAN, k))
    head = "".join(f"<th>{escape(k)}</th>" for k in kinds)
    body = ""
    for row in doc["table"]:
        cells = "".join(f'<td class="{"" if k in _CLEAN or not row["outcomes"].get(k) else "crash"}">'
                        f'{row["outcomes"].get(k, "")}</td>' for k in kinds)
        body += (f"<tr><td>{escape(row['site'])}</td><td>{escape(row['function'] or '')}</td>"
                 f"<td>{escape(', '.join(row['steps']))}</td>{cells}</tr>")
    return ("<h2>Call site &times; outcome</h2><p class=muted>Points per injected call site and how they ended; "
            "&ldquo;error returned&rdquo; and &ldquo;handled&rdquo; are passes.</p>"
            f"<table><tr><th>call site</th><th>calls</th><th>steps</th>{head}</tr>{body}</table>")


def _findings(doc: Mapping[str, Any]) -> str:
    if not doc["findings"]:
        return "<h2>Findings</h2><p>None.</p>"
    out = ["<h2>Findings</h2>"]
    for f in doc["findings"]:
        also = ", ".join(f"{a['step']} {a['n']}" for a in f["also"])
        out.append(f"<h3>{escape(f['consequence'])} at {escape(f['site'])}</h3><p>{escape(f['step'])} point "
                   f"{f['n']}: the module called <code>{escape(f['function'] or '?')}</code>"
                   f" ({escape(f['fault'])}: <code>{escape(f['allocator'] or '?')}</code> failed)"
                   f"{'; also at ' + escape(also) if also else ''}.</p>"
                   f"<pre>{escape(f['headline'])}</pre>")
        if f["module_frames"]:
            out.append("<pre>" + escape("\n".join(f["module_frames"])) + "</pre>")
        for src in (f["site_source"], f["source"]):
            if src:
                lines = "\n".join(f"{'>' if n == src['line'] else ' '}{n:5} {t}"
                                  for n, t in enumerate(src["lines"], start=src["first"]))
                out.append(f"<p class=muted>{escape(src['file'])}:{src['line']}</p><pre>{escape(lines)}</pre>")
        if f["detail"]:
            out.append(f"<pre>{escape(f['detail'])}</pre>")
        out.append(f"<p>Again: <code>{escape(f['reproduce'])}</code></p>")
    return "\n".join(out)


def _points(doc: Mapping[str, Any]) -> str:
    rows = ""
    for p in doc["points"]:
        what = ", ".join(c["kind"] for c in p["consequences"]) or p["outcome"]
        cls = "crash" if p["consequences"] else ""
        rows += (f"<tr><td>{escape(p['step'])}</td><td>{p['n']}</td><td>{escape(p['site'] or p['site_frame'] or '')}"
                 f"</td><td class='{cls}'>{escape(what)}</td><td>{p['guest'] + 1}</td>"
                 f"<td>{'' if p['seconds'] is None else format(p['seconds'], '.1f')}</td></tr>")
    return ("<h2>Points</h2><table><tr><th>step</th><th>n</th><th>call site</th><th>outcome</th><th>guest</th>"
            f"<th>seconds</th></tr>{rows}</table>")

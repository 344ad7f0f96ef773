"""results/index.html: one static page for a run or a matrix, nothing fetched from anywhere. Pure.

The grid of kernels by verdict; per kernel, a timeline of its phases and of its guest's
start-up, the expected trail beside the records that matched it, the splats with their
decoded frames and source lines, and links to the evidence files.
"""

from __future__ import annotations

from html import escape
from typing import Any, Callable, Mapping, Optional, Sequence

from harness.model import RunResult, Verdict
from harness.verdict import compare, output
from harness.verdict.report import PHASES

_CSS = """
body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#222}
h1{font-size:1.4em}h2{font-size:1.15em;margin-top:2em;border-bottom:1px solid #ccc}
table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ccc;padding:.25em .6em;text-align:left}
.v{font-weight:bold;text-transform:uppercase}.pass{background:#d6f5d6}.fail{background:#fde0c8}
.crash{background:#f8c0c0}.timeout{background:#fff2b3}.infra,.error{background:#e8d4f0}.interrupted{background:#eee}
.bar{display:flex;height:1.4em;width:100%;max-width:60em;margin:.2em 0 .8em;font-size:.8em}
.bar div{overflow:hidden;white-space:nowrap;color:#fff;padding:0 .3em;border-right:1px solid #fff}
.p0{background:#4a7ab8}.p1{background:#6a5acd}.p2{background:#2e8b57}.p3{background:#cd853f}.p4{background:#8b4513}
.miss{background:#fbd0d0}pre{background:#f6f6f6;padding:.5em;overflow:auto}.hot{background:#ffe08a}
.muted{color:#777}
"""


def page(results: Sequence[RunResult], rows: Sequence[compare.Row], title: str,
         link: Callable[[RunResult, str], str], wall: float = 0.0, notes: Optional[Mapping[str, str]] = None,
         sections: Optional[Mapping[str, str]] = None, css: str = "") -> str:
    """The page; ``link(result, file)`` is the href of one of a result's evidence files. ``notes``: per
    kernel, HTML for a last column of the grid; ``sections``: per kernel, HTML at the end of its section
    (harness report: attempts and history)."""
    status = {r.kernel: r for r in rows}
    parts = [f"<!doctype html><html lang=en><head><meta charset=utf-8><title>{escape(title)}</title>"
             f"<style>{_CSS}{css}</style></head><body>", f"<h1>{escape(title)}</h1>",
             _grid(results, status, wall, notes or {})]
    parts += [_kernel(r, link) + (sections or {}).get(r.kernel, "") for r in results]
    return "\n".join(parts) + "\n</body></html>\n"


def _verdict(v: str) -> str:
    return f'<span class="v {escape(v)}">{escape(v)}</span>'


def _grid(results: Sequence[RunResult], status: dict[str, compare.Row], wall: float,
          notes: Mapping[str, str]) -> str:
    head = ("<table id=grid><tr><th>kernel</th><th>release</th><th>package version</th><th>verdict</th>"
            "<th>against what was known</th><th>seconds</th>" + ("<th>attempts, history</th>" if notes else "")
            + "</tr>")
    rows = []
    for r in results:
        row = status.get(r.kernel)
        known = escape(row.status + (f": {'; '.join(row.changes) or row.why}" if row.changes or row.why else "")) \
            if row is not None else ""
        rows.append(f'<tr class="{r.verdict.value}"><td><a href="#{_anchor(r)}">{escape(r.kernel)}</a></td>'
                    f"<td>{escape(r.kernel_release or '-')}</td><td>{escape(r.package_version or '-')}</td>"
                    f"<td>{_verdict(r.verdict.value)}</td><td>{known}</td><td>{r.seconds:.0f}</td>"
                    + (f"<td>{notes.get(r.kernel, '')}</td>" if notes else "") + "</tr>")
    total = f"<p class=muted>{len(results)} kernels" + (f", {wall:.0f} s" if wall else "") + \
        (f", kmod-harness {escape(results[0].harness_version)}" if results else "") + "</p>"
    return head + "".join(rows) + "</table>" + total


def _anchor(r: RunResult) -> str:
    return "k-" + "".join(c if c.isalnum() else "-" for c in r.kernel)


def _bar(parts: Sequence[tuple[str, float]]) -> str:
    total = sum(max(s, 0.0) for _, s in parts) or 1.0
    cells = "".join(f'<div class="p{i % 5}" style="width:{100 * max(s, 0.0) / total:.1f}%" '
                    f'title="{escape(n)}: {s:.1f} s">{escape(n)} {s:.1f}s</div>' for i, (n, s) in enumerate(parts))
    return f'<div class="bar">{cells}</div>'


def _kernel(r: RunResult, link: Callable[[RunResult, str], str]) -> str:
    out = [f'<h2 id="{_anchor(r)}">{escape(r.kernel)} {_verdict(r.verdict.value)}</h2>',
           f"<p>{escape(r.kernel_release or '')} {escape(r.package_version or '')}; {escape(r.accel or '')},"
           f" {escape(r.transport or '')}</p>"]
    if r.verdict is not Verdict.PASS:
        out.append(f"<pre>{escape(r.reason)}</pre>")
        out.append(_failed_step(r))
    phases = [(p.name, p.seconds) for p in r.phases if p.name in PHASES or p.name == "kernel"]
    if phases:
        out += ["<h3>phases</h3>", _bar(phases)]
    if r.boot:
        out += ["<h3>the guest's start-up</h3>", _bar([(k.replace("_", " "), v) for k, v in r.boot.items()])]
    out.append(_trail(r))
    out += [_splat(sp) for sp in r.splats]
    files = [f'<a href="{escape(link(r, name))}">{escape(name)}</a>' for name in r.evidence]
    out.append(f"<p>evidence: {' · '.join(files)}" + (f" (read {escape(r.read_first)} first)" if r.read_first
                                                       else "") + "</p>")
    return "\n".join(out)


def _failed_step(r: RunResult) -> str:
    st = output.failing_step(r.steps)
    if st is None:
        return ""
    first = output.first_failure(st)
    out = [f"<h3>guest step {escape(st.name)}: exit {st.returncode}" + (" (timed out)" if st.timed_out else "")
           + f", expected {st.expect_rc}</h3>"]
    if first:
        out.append(f"<p>first failing line:</p><pre class=miss>{escape(first)}</pre>")
    for name, text in (("stderr", st.stderr), ("stdout", st.stdout)):
        lines = output.tail(text)
        if lines:
            out.append(f"<p>{name} (last {len(lines)} lines):</p><pre>{escape(chr(10).join(lines))}</pre>")
    return "\n".join(out)


def _trail(r: RunResult) -> str:
    if not r.expected_trail and not r.trail:
        return ""
    rows = []
    for i, want in enumerate(r.expected_trail or [""] * len(r.trail)):
        got = r.trail[i] if i < len(r.trail) else None
        cls = "" if got is not None else ' class="miss"'
        rec = f"seq {got['seq']} &lt;{got['level']}&gt; {escape(got['text'])}" if got else "(missing)"
        rows.append(f"<tr{cls}><td>{escape(want)}</td><td>{rec}</td></tr>")
    diff = f"<pre class=miss>{escape(r.trail_diff)}</pre>" if r.trail_diff else ""
    return ("<h3>trail</h3><table class=trail><tr><th>expected</th><th>record that matched</th></tr>"
            + "".join(rows) + "</table>" + diff)


def _splat(sp: dict[str, Any]) -> str:
    out = [f"<h3>splat: {escape(sp['rule'])}</h3><pre>{escape(sp['text'])}</pre>"]
    frames = sp.get("module_frames") or []
    if frames:
        out.append("<p>in the module:</p><pre class=frames>" + escape("\n".join(frames)) + "</pre>")
    src = sp.get("source")
    if src:
        lines = "\n".join(
            (f'<span class=hot>{n:5} {escape(t)}</span>' if n == src["line"] else f"{n:5} {escape(t)}")
            for n, t in enumerate(src["lines"], start=src["first"]))
        out.append(f"<p>{escape(src['file'])}:{src['line']}</p><pre class=source>{lines}</pre>")
    return "\n".join(out)

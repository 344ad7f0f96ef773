"""result.json: the one serializer of a RunResult, both ways. Typed values stay typed everywhere
else (``model.RunResult``, ``outcomes``); only here do they become JSON and back.

``load`` reads what any release wrote since the schema's version 1: keys a result lacks take
their defaults, keys it does not know are ignored, and a value of the wrong shape is a
ResultError naming the key (``harness report`` reads results from other machines).
"""

from __future__ import annotations

from dataclasses import asdict, fields
from typing import Any, Optional

from harness.contract import StepReport
from harness.model import KmsgRecord, Phase, RunResult, Verdict
from harness.outcomes import Case, CaseStatus, ComplaintReport, Frame, SourceExcerpt, SplatReport, TrailRecord

SCHEMA = "kmod-harness/result/v2"


class ResultError(ValueError):
    """A result.json that is not one (a key of the wrong shape)."""


def dump(r: RunResult) -> dict[str, Any]:
    d: dict[str, Any] = {}
    for f in fields(RunResult):
        d[f.name] = plain(getattr(r, f.name))
    d["verdict"] = r.verdict.value
    d["exit_code"] = r.verdict.exit_code
    d["kmsg"] = [_record(k) for k in r.kmsg]
    d["schema"] = SCHEMA
    return d


def plain(v: Any) -> Any:
    """A typed part of a result as JSON's types (a frame's inlined calls as objects)."""
    if isinstance(v, Frame):
        d = asdict(v)
        d["inlined"] = [{"function": f, "file": fi, "line": ln} for f, fi, ln in v.inlined]
        return d
    if isinstance(v, CaseStatus):
        return v.value
    if hasattr(v, "__dataclass_fields__"):
        return {f.name: plain(getattr(v, f.name)) for f in fields(v)}
    if isinstance(v, (list, tuple)):
        return [plain(x) for x in v]
    if isinstance(v, dict):
        return {k: plain(x) for k, x in v.items()}
    return v


def _record(k: KmsgRecord) -> dict[str, Any]:
    d = asdict(k)
    d["fields"] = dict(k.fields)
    return d


def load(d: dict[str, Any]) -> RunResult:
    """A RunResult read back from its result.json."""
    try:
        return _load(d)
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise ResultError(f"not a kmod-harness result.json ({type(e).__name__}: {e})") from None


_TYPED = ("verdict", "phases", "steps", "kmsg", "trail", "splats", "boot_splats", "kunit", "complaints")


def _load(d: dict[str, Any]) -> RunResult:
    known = {f.name for f in fields(RunResult)}
    plain = {k: v for k, v in d.items() if k in known and k not in _TYPED}
    for key in ("kernel_params", "build_warnings", "expected_trail", "attempts"):
        if key in plain:
            plain[key] = tuple(plain[key])
    records = tuple(KmsgRecord(**{k: v for k, v in r.items() if k != "fields"},
                               fields=tuple(r.get("fields", {}).items())) for r in d.get("kmsg", []))
    return RunResult(
        verdict=Verdict(d["verdict"]), phases=tuple(Phase(**p) for p in d.get("phases", [])),
        steps=tuple(StepReport.from_dict(st) for st in d.get("steps", [])), kmsg=records,
        trail=tuple(TrailRecord(t["seq"], t["level"], t["usec"], t["text"]) for t in d.get("trail", [])),
        splats=tuple(_splat(s) for s in d.get("splats", [])),
        boot_splats=tuple(_splat(s) for s in d.get("boot_splats", [])),
        kunit=tuple(Case(c["suite"], c["name"], CaseStatus(c["status"]), c.get("reason", ""),
                         tuple(c.get("diagnostics", ()))) for c in d.get("kunit", [])),
        complaints=tuple(ComplaintReport(c["seq"], c["level"], c["text"], c.get("why", ""), c.get("kind", ""),
                                         c.get("allowed_by")) for c in d.get("complaints", [])),
        **{"harness_version": "?", "started_at": "", "seconds": 0.0, "reason": "", **plain})


def _splat(s: dict[str, Any]) -> SplatReport:
    return SplatReport(s["rule"], s.get("reason", ""), s["text"], s.get("seq"),
                       trace=tuple(_frame(f) for f in s.get("trace") or ()),
                       module_frames=tuple(s.get("module_frames") or ()), source=_source(s.get("source")))


def _frame(f: dict[str, Any]) -> Frame:
    inlined = tuple((i["function"], i["file"], i["line"]) for i in f.get("inlined", ()))
    return Frame(f["function"], f["offset"], f["size"], f.get("module"), f["reliable"], f["where"], f["seq"],
                 f.get("file"), f.get("line"), inlined)


def _source(s: Optional[dict[str, Any]]) -> Optional[SourceExcerpt]:
    return None if not s else SourceExcerpt(s["file"], s["line"], s["first"], tuple(s["lines"]))

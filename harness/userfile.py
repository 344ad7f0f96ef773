"""A file a user wrote, checked against its schema (``harness/schema.py``): the model, or one
UsageError naming the file, the line and the key (``file:line: key: message``), with the closest
valid key suggested for an unknown one. Pure: the text is given, nothing is read here."""

from __future__ import annotations

import difflib
import re
import typing
from dataclasses import dataclass
from typing import Any, Optional, TypeVar

from pydantic import BaseModel, ValidationError

from harness.errors import UsageError

M = TypeVar("M", bound=BaseModel)


@dataclass(frozen=True)
class Document:
    """A parsed TOML file: its data, its text (for line numbers) and where it came from."""

    data: dict[str, Any]
    text: str
    where: str  # the file's name, for messages
    prefix: tuple[str, ...] = ()  # where the data sits in the file (("tool", "harness") in pyproject.toml)


def check(model: type[M], doc: Document) -> M:
    """`doc` as `model`, or a UsageError: `file:line: key: message`, the closest valid key
    suggested for an unknown one, and how many more problems the file has."""
    try:
        return model.model_validate(doc.data)
    except ValidationError as e:
        errors = e.errors(include_url=False)
    lines = [_describe(model, doc, err) for err in errors]
    more = f" (and {len(lines) - 1} more problem{'s' if len(lines) > 2 else ''} in this file)" if len(lines) > 1 else ""
    hint = "see docs/REFERENCE.md for every key" if len(lines) == 1 else "also: " + "; ".join(lines[1:3])
    raise UsageError(lines[0] + more, hint=hint)


def _describe(model: type[BaseModel], doc: Document, err: Any) -> str:
    loc = tuple(err["loc"])
    line = locate(doc.text, doc.prefix + loc)
    where = f"{doc.where}:{line}" if line else doc.where
    key = dotted(loc)
    value = err.get("input")
    kind = err["type"]
    if kind == "extra_forbidden":
        known = _fields_at(model, loc[:-1])
        close = difflib.get_close_matches(str(loc[-1]), known, n=1, cutoff=0.6)
        tip = f"did you mean {close[0]!r}?" if close else f"known keys here: {', '.join(known) or 'none'}"
        table = isinstance(value, dict) or (isinstance(value, list) and value and isinstance(value[0], dict))
        return f"{where}: {key}: unknown {'table' if table else 'key'}; {tip}"
    msg = _MESSAGES.get(kind) or str(err["msg"]).removeprefix("Value error, ")
    if kind == "string_pattern_mismatch":
        msg = f"must be {_description(model, loc) or 'of the form ' + str(err.get('ctx', {}).get('pattern'))}"
    shown = "" if kind == "missing" or isinstance(value, (dict, list)) else f" (got {_short(value)})"
    if loc[-1:] == ("[key]",):  # a key of a table of values (env): the key itself is wrong
        key, shown = dotted(loc[:-2]), ""
        msg = f"key {_short(loc[-2])} {msg}"
    return f"{where}: {key + ': ' if key else ''}{msg}{shown}"


_MESSAGES = {
    "missing": "required, and missing",
    "model_type": "must be a table",
    "dict_type": "must be a table",
    "list_type": "must be an array",
    "string_type": "must be a string",
    "bool_type": "must be true or false",
    "int_type": "must be an integer",
    "float_type": "must be a number",
    "finite_number": "must be a finite number",
    "too_short": "must not be empty",
}


def _description(model: type[BaseModel], loc: tuple[Any, ...]) -> str:
    """What the value at ``loc`` must be, from its type's description (an array item's, a table
    key's), else its field's."""
    names = [p for p in loc if not isinstance(p, int)]
    if loc[-1:] == ("[key]",):
        names = names[:-2]
    if not names:
        return ""
    parent = _model_at(model, tuple(names[:-1]))
    field = parent.model_fields.get(str(names[-1])) if parent is not None else None
    if field is None:
        return ""
    args = typing.get_args(field.annotation)
    inner = [a for a in args if a is not type(None)]
    if loc[-1:] == ("[key]",) and inner:
        inner = inner[:1]
    elif isinstance(loc[-1], int) or typing.get_origin(field.annotation) is dict:
        inner = inner[-1:]
    for arg in inner:
        for meta in getattr(arg, "__metadata__", ()):
            if getattr(meta, "description", None):
                return str(meta.description)
    for meta in field.metadata:
        if getattr(meta, "description", None):
            return str(meta.description)
    return field.description or ""


def _model_at(model: type[BaseModel], names: tuple[Any, ...]) -> Optional[type[BaseModel]]:
    current: Optional[type[BaseModel]] = model
    for part in names:
        field = current.model_fields.get(str(part)) if current is not None else None
        current = _inner_model(field.annotation) if field is not None else None
    return current


def dotted(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part + 1}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _fields_at(model: type[BaseModel], loc: tuple[Any, ...]) -> list[str]:
    """The keys the model (or the nested model at ``loc``) knows."""
    found = _model_at(model, tuple(p for p in loc if not isinstance(p, int)))
    return sorted(found.model_fields) if found is not None else []


def _inner_model(annotation: Any) -> Optional[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()) or ():
        found = _inner_model(arg)
        if found is not None:
            return found
    meta = getattr(annotation, "__origin__", None)
    return _inner_model(meta) if meta is not None and meta is not annotation else None


# ---- line numbers --------------------------------------------------------------------------------

_HEADER = re.compile(r"^\s*(\[\[?)\s*([^\]]+?)\s*(\]\]?)\s*(#.*)?$")
_KEY = re.compile(r"""^\s*((?:[A-Za-z0-9_-]+|"[^"]*"|'[^']*')(?:\s*\.\s*(?:[A-Za-z0-9_-]+|"[^"]*"|'[^']*'))*)\s*=""")


def _split_key(text: str) -> tuple[str, ...]:
    parts = re.findall(r"""[A-Za-z0-9_-]+|"[^"]*"|'[^']*'""", text)
    return tuple(p.strip("\"'") for p in parts)


def locate(text: str, loc: tuple[Any, ...]) -> Optional[int]:
    """The line (1-based) of the TOML text that holds `loc` (("step", 2, "timeout") is the key
    timeout of the third [[step]]), or of the nearest enclosing table; None when not found."""
    found: dict[tuple[Any, ...], int] = {}
    counts: dict[tuple[str, ...], int] = {}
    table: tuple[Any, ...] = ()
    for n, raw in enumerate(text.splitlines(), 1):
        h = _HEADER.match(raw)
        if h and not raw.lstrip().startswith("#"):
            path = _split_key(h.group(2))
            if h.group(1) == "[[":
                i = counts.get(path, 0)
                counts[path] = i + 1
                table = _indexed(path, counts) + (i,)
            else:
                table = _indexed(path, counts)
            found.setdefault(table, n)
            continue
        k = _KEY.match(raw)
        if k and not raw.lstrip().startswith("#"):
            found.setdefault(table + _split_key(k.group(1)), n)
    for cut in range(len(loc), 0, -1):
        if loc[:cut] in found:
            return found[loc[:cut]]
    return None


def _indexed(path: tuple[str, ...], counts: dict[tuple[str, ...], int]) -> tuple[Any, ...]:
    """A table path with the index of the array-of-tables each prefix is in (module.load -> module, load)."""
    out: list[Any] = []
    for i, part in enumerate(path):
        out.append(part)
        prefix = path[:i + 1]
        if prefix in counts and i < len(path) - 1:
            out.append(counts[prefix] - 1)
    return tuple(out)



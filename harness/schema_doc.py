"""docs/REFERENCE.md, written from the schema's models (``schema.reference_markdown``). Pure."""

from __future__ import annotations

import typing
from typing import Any, Optional

from annotated_types import Ge, Gt, Le, MaxLen, MinLen
from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

HEAD = """# Reference: every key of every file you write

Generated from `harness/schema.py` (`python -m harness.schema_doc > docs/REFERENCE.md`); a test
checks that this file is what the schema says. Every file is checked before anything runs: an
unknown key or table is an error naming the closest known one, types are exact (`"false"` is not
a boolean, `true` is not a number), numbers are finite and within the bounds below, and each
error names the file, the line and the key (`harness.toml:12: step[2].timout: unknown key; did
you mean 'timeout'?`), with exit code 2.
"""


def render(files: list[tuple[str, type[BaseModel]]]) -> str:
    out = [HEAD]
    for title, model in files:
        out.append(f"\n## {title}\n")
        out += _table(model, "")
    return "\n".join(out) + "\n"


def _table(model: type[BaseModel], path: str) -> list[str]:
    out: list[str] = []
    doc = (model.__doc__ or "").strip()
    if path:
        out.append(f"\n### `{path}`\n")
    if doc and path:
        out.append(" ".join(doc.split()) + "\n")
    rows = ["| key | type | default | what |", "| --- | --- | --- | --- |"]
    nested: list[tuple[str, type[BaseModel]]] = []
    for name, field in model.model_fields.items():
        inner, many = _model_of(field.annotation)
        if inner is not None:
            shown = f"[[{path + '.' if path else ''}{name}]]" if many else f"[{path + '.' if path else ''}{name}]"
            nested.append((shown.strip("[]"), inner))
            rows.append(f"| `{name}` | {'array of tables' if many else 'table'} `{shown}` | {_default(field)} | "
                        f"{_what(field, inner)} |")
            continue
        rows.append(f"| `{name}` | {_type(field.annotation, field)} | {_default(field)} | {_what(field, None)} |")
    out += rows
    for sub_path, inner in nested:
        out += _table(inner, sub_path)
    return out


def _model_of(annotation: Any) -> tuple[Optional[type[BaseModel]], bool]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation, False
    origin = typing.get_origin(annotation)
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    if origin is typing.Annotated:
        return _model_of(args[0])
    if origin is list and args:
        inner, _ = _model_of(args[0])
        return inner, inner is not None
    if args and origin is not dict:
        for a in args:
            inner, many = _model_of(a)
            if inner is not None:
                return inner, many
    return None, False


def _type(annotation: Any, field: Optional[FieldInfo] = None) -> str:
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    bounds = _bounds(field.metadata if field is not None else [])
    if origin is typing.Annotated:
        base = _type(args[0])
        inner = _bounds(list(args[1:]))
        return base + inner + bounds
    if origin is typing.Literal:
        return " \\| ".join(f'`"{a}"`' for a in args) + bounds
    if origin is list:
        return f"array of {_type(args[0])}" + bounds
    if origin is dict:
        return f"table of {_type(args[1])}" + bounds
    if origin is typing.Union or str(origin) == "types.UnionType":
        return " or ".join(_type(a) for a in args if a is not type(None)) + bounds
    names = {str: "string", int: "integer", float: "number", bool: "boolean"}
    return names.get(annotation, getattr(annotation, "__name__", str(annotation))) + bounds


def _bounds(metadata: list[Any]) -> str:
    parts = []
    flat: list[Any] = []
    for m in metadata:
        flat += m.metadata if isinstance(m, FieldInfo) else [m]
    for m in flat:
        if isinstance(m, Gt):
            parts.append(f"> {m.gt}")
        elif isinstance(m, Ge):
            parts.append(f">= {m.ge}")
        elif isinstance(m, Le):
            parts.append(f"<= {m.le:g}" if isinstance(m.le, float) else f"<= {m.le}")
        elif isinstance(m, MinLen) and m.min_length:
            parts.append(f"at least {m.min_length}")
        elif isinstance(m, MaxLen):
            parts.append(f"at most {m.max_length}")
        for attr in ("pattern",):
            value = getattr(m, attr, None)
            if value:
                parts.append(f"matching `{value}`".replace("|", "\\|"))
    return f" ({', '.join(parts)})" if parts else ""


def _default(field: FieldInfo) -> str:
    if field.is_required():
        return "required"
    value = field.default
    if value is PydanticUndefined:
        return "-"
    if isinstance(value, BaseModel):
        return "-"
    if value is None:
        return "-"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, str):
        return f'`"{value}"`'
    return f"`{value}`"


def _what(field: FieldInfo, inner: Optional[type[BaseModel]]) -> str:
    text = field.description or (" ".join((inner.__doc__ or "").split()) if inner is not None else "")
    return text.replace("|", "\\|")


if __name__ == "__main__":
    from harness.schema import reference_markdown

    print(reference_markdown(), end="")

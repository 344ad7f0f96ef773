"""TOML files a user wrote, read with errors that name the file (tomllib on 3.11+, tomli before).

Every failure here is a usage error (exit 2): a missing file, one too large to be a
configuration, bytes that are not UTF-8, TOML that does not parse.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on older hosts only
    import tomli as tomllib  # type: ignore[import-not-found,unused-ignore]

from harness.errors import UsageError
from harness.schema import Document

MAX_BYTES = 4 << 20  # a configuration file; a trail of 100,000 records fits


def read_text(path: Path) -> str:
    try:
        with open(path, "rb") as f:
            raw = f.read(MAX_BYTES + 1)
    except FileNotFoundError:
        raise UsageError(f"{path}: file not found") from None
    except IsADirectoryError:
        raise UsageError(f"{path}: is a directory, not a TOML file") from None
    except OSError as e:
        raise UsageError(f"{path}: cannot read it: {e.strerror or e}") from None
    if len(raw) > MAX_BYTES:
        raise UsageError(f"{path}: larger than {MAX_BYTES >> 20} MiB: not a configuration file")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw[:e.start].count(b"\n") + 1
        raise UsageError(f"{path}:{line}: not UTF-8 (byte {raw[e.start]:#04x} at offset {e.start})",
                         hint="TOML files are UTF-8 text: save the file as UTF-8") from None


def loads(text: str, where: str = "<text>") -> dict[str, Any]:
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise UsageError(f"{where}: invalid TOML: {e}") from None
    except RecursionError:
        raise UsageError(f"{where}: invalid TOML: nested too deeply") from None


def load(path: Path) -> dict[str, Any]:
    return loads(read_text(path), str(path))


def load_document(path: Path) -> Document:
    """A whole file as a schema Document (its text kept for line numbers in errors)."""
    text = read_text(path)
    return Document(loads(text, str(path)), text, str(path))

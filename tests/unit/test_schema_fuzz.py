"""Generated harness.toml, trail and matrix documents, valid and nearly valid (wrong types, unknown
keys, extreme numbers, unicode, bytes that are not UTF-8): reading one never raises anything but a
UsageError (exit 2), and stays within bounded memory.

A bounded, seeded number of examples runs in `make test`; HARNESS_FUZZ_EXAMPLES sets another count
(the closing note of the issue gives the figure of a long run).
"""

import math
import os
import tracemalloc
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from harness import tomlload
from harness.errors import UsageError
from harness.matrix import load_matrix
from harness.project import parse_project
from harness.verdict import trail

EXAMPLES = int(os.environ.get("HARNESS_FUZZ_EXAMPLES", "300"))
FUZZ = settings(max_examples=EXAMPLES, derandomize=True, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
MEMORY = 64 << 20  # bytes one document may cost to read

PROJECT = {"module": {"name": "m", "source": "src", "trail": "t.toml", "params": ["a=1"], "requires": ["videodev"]},
           "step": [{"name": "s", "run": ["true"], "timeout": 5, "expect_rc": 0, "when": "loaded",
                     "env": {"A": "1"}, "cwd": "/tmp"}],
           "build": {"w1": True, "args": ["X=1"]}, "kunit": {"modules": ["t"], "timeout": 30},
           "known_failure": [{"kernel": "debian:sid", "verdict": "fail", "why": "x"}],
           "guest": {"packages": ["jq"]}, "allow": [{"pattern": "x", "reason": "y"}]}
TRAIL = {"strict": False, "expect": [{"text": "a", "level": 6, "count": 2}, {"pattern": "b \\d+"}],
         "allow": [{"pattern": "taint", "reason": "once"}]}
MATRIX = {"kernel": [{"spec": "debian:bookworm", "apt_options": ["Acquire::Check-Valid-Until=false"], "note": "n"},
                     {"spec": "debian:trixie", "arch": "arm64", "expect": {"verdict": "fail", "why": "w"}}]}

scalars = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(2 ** 70), max_value=2 ** 70),
    st.floats(allow_nan=True, allow_infinity=True), st.sampled_from([math.nan, math.inf, -math.inf, 1e7, 9e18, 0]),
    st.text(max_size=50), st.text(alphabet=st.characters(min_codepoint=0, max_codepoint=0x10FFFF), max_size=20),
    st.sampled_from(["..", "../../etc", "/etc", "(", "a\nb", "debian:sidd", "=", "x" * 5000]))
values = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                        st.dictionaries(st.text(max_size=12), inner, max_size=4)),
                      max_leaves=12)


@st.composite
def mutated(draw, base):
    """``base`` with a few random changes: a value replaced, a key removed, an unknown key added."""
    doc = _copy(base)
    for _ in range(draw(st.integers(min_value=0, max_value=3))):
        path = draw(_paths(doc))
        action = draw(st.sampled_from(["replace", "remove", "add"]))
        _apply(doc, path, action, draw(values), draw(st.text(min_size=1, max_size=12)))
    return doc


def _copy(v):
    if isinstance(v, dict):
        return {k: _copy(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_copy(x) for x in v]
    return v


def _paths(doc):
    found = []

    def walk(v, path):
        found.append(path)
        if isinstance(v, dict):
            for k, x in v.items():
                walk(x, path + (k,))
        elif isinstance(v, list):
            for i, x in enumerate(v):
                walk(x, path + (i,))
    walk(doc, ())
    return st.sampled_from(found)


def _apply(doc, path, action, value, key):
    if not path:
        if action == "add":
            doc[key] = value
        return
    parent = doc
    for p in path[:-1]:
        parent = parent[p]
    last = path[-1]
    if action == "replace":
        parent[last] = value
    elif action == "remove":
        del parent[last]
    elif isinstance(parent[last], dict):
        parent[last][key] = value


def bounded(read) -> None:
    """``read()`` returns or raises a UsageError, within MEMORY bytes."""
    tracemalloc.start()
    try:
        read()
    except UsageError as e:
        assert str(e)
    finally:
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    assert peak < MEMORY, peak


@FUZZ
@given(mutated(PROJECT))
def test_project_documents(tmp_path_factory, doc):
    d = tmp_path_factory.mktemp("p")
    (d / "src").mkdir()
    bounded(lambda: parse_project(doc, d, "harness.toml"))


@FUZZ
@given(mutated(TRAIL))
def test_trail_documents(doc):
    bounded(lambda: trail.parse_trail(doc, "t.toml"))


@FUZZ
@given(mutated(MATRIX))
def test_matrix_documents(tmp_path_factory, doc):
    p = tmp_path_factory.mktemp("m") / "k.toml"
    p.write_text(_toml(doc))
    bounded(lambda: load_matrix(p))


@FUZZ
@given(st.binary(max_size=400))
def test_bytes_as_any_file(tmp_path_factory, raw):
    p: Path = tmp_path_factory.mktemp("b") / "f.toml"
    p.write_bytes(b'[module]\nname = "m"\n' + raw)
    bounded(lambda: tomlload.load_document(p))
    bounded(lambda: trail.parse_trail(tomlload.load(p), str(p)) if _loads(p) else None)


def _loads(p: Path) -> bool:
    try:
        tomlload.load(p)
        return True
    except UsageError:
        return False


def _toml(doc) -> str:
    """A small TOML writer for the generated matrices (values JSON-like; what TOML cannot hold is dropped)."""
    import json

    def val(v):
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, (int, float)):
            return "nan" if v != v else ("inf" if v == math.inf else "-inf" if v == -math.inf else repr(v))
        if isinstance(v, str):
            return json.dumps(v)
        if isinstance(v, list):
            return "[" + ", ".join(val(x) for x in v if x is not None) + "]"
        if isinstance(v, dict):
            return "{" + ", ".join(f"{json.dumps(k)} = {val(x)}" for k, x in v.items() if x is not None) + "}"
        return '""'

    return "\n".join(f"{json.dumps(k)} = {val(v)}" for k, v in doc.items() if v is not None) + "\n"

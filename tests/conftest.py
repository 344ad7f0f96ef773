import json
from pathlib import Path

import pytest

DATA = Path(__file__).parent / "data"
REPO = Path(__file__).resolve().parent.parent


def load_guest(name: str) -> dict:
    """A guest-result.json recorded from a real run (see tests/data/README.md)."""
    return json.loads((DATA / name / "guest-result.json").read_text())


@pytest.fixture
def pass_guest() -> dict:
    return load_guest("pass_bookworm")

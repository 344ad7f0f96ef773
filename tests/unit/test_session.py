"""Session start-up checks that need no VM: recorded kernel logs stand in for the guest."""

import io
from types import SimpleNamespace

import pytest

from harness import kmsg, splat
from harness.errors import InfraError
from harness.progress import Printer
from harness.run import RunRequest
from harness.session import Session

from conftest import REPO, load_guest

RULES = splat.load_rules(REPO / "vm" / "splats.toml")


def session_over(recording: str, monkeypatch) -> Session:
    s = Session(RunRequest(), Printer(io.StringIO()))
    s.prep = SimpleNamespace(rules=RULES)
    records = list(kmsg.parse_records(load_guest(recording)["kmsg"]))
    monkeypatch.setattr(s, "kmsg_after", lambda seq: [r for r in records if r.seq > seq])
    return s


def test_a_guest_blinded_while_booting_is_refused(monkeypatch):
    s = session_over("kasan_boot_report", monkeypatch)
    with pytest.raises(InfraError, match=r"while booting \(BUG: KASAN: wild-memory-access.*lockdep"):
        s._check_boot()


def test_a_clean_boot_is_accepted(monkeypatch):
    session_over("kasan_pass", monkeypatch)._check_boot()

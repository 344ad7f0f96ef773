import json
import os
import subprocess
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Optional

import pytest

from harness import tomlload
from harness.cache import cache_dir
from harness.guest.contract import VERSION as CONTRACT_VERSION
from harness.guest.contract import GuestReport, StepReport
from harness.phases import load_rules
from harness.verdict import trail

DATA = Path(__file__).parent / "data"
# cli.main turns a bug of the harness into one line and exit 3; tests want its traceback (the
# bad-input tests, which check there is none, run the CLI with this unset).
os.environ.setdefault("HARNESS_DEBUG", "1")
REPO = Path(__file__).resolve().parent.parent


class _Rules(Sequence):
    """The packaged vm/splats.toml, read on first use. Not at import: under ``make mutation``
    every call into the verdict code fails on purpose once, and must fail a test, not this file."""

    _rules: Optional[tuple] = None

    def _all(self) -> tuple:
        if self._rules is None:
            self._rules = load_rules()
        return self._rules

    def __getitem__(self, i):
        return self._all()[i]

    def __len__(self) -> int:
        return len(self._all())


RULES = _Rules()


def load_guest(name: str) -> dict:
    """A guest report recorded from a real run, as the JSON the runner wrote (see tests/data/README.md)."""
    return json.loads((DATA / name / "guest-result.json").read_text())


def report_from(g: dict) -> GuestReport:
    """A GuestReport from a recorded report. Recordings made before the contract had a version
    (``"runner": 1``) carry the same fields but no marker: the judge falls back to the first step."""
    if g.get("version") == CONTRACT_VERSION:
        return GuestReport.from_json(json.dumps(g))
    # Older recordings (v2: no step index or kind; v1 also no marker): read field by field.
    return GuestReport(steps=tuple(StepReport.from_dict(s) for s in g["steps"]), kmsg=tuple(g["kmsg"]),
                       marker_seq=g.get("marker_seq"), kmsg_lost=g.get("kmsg_lost", 0), kmsg_error=g.get("kmsg_error"),
                       uptime_at_start=g.get("uptime_at_start"), seconds=g.get("seconds", 0.0),
                       complete=g.get("complete", True))


def guest_report(name: str) -> GuestReport:
    return report_from(load_guest(name))


def load_trail(path: Path) -> trail.Trail:
    return trail.parse_trail(tomlload.load(path), str(path))


@pytest.fixture
def pass_guest() -> dict:
    return load_guest("pass_bookworm")


def qemu_pids(tag: str) -> set[int]:
    """QEMU processes whose command line holds ``tag`` (a test's own temp dir)."""
    p = subprocess.run(["pgrep", "-f", f"qemu-system.*{tag}"], capture_output=True, text=True)
    return {int(x) for x in p.stdout.split()}


def wait_for_qemu(tag, seconds: float = 60) -> set[int]:
    """This test's QEMU processes once they run (polled against a deadline: under load QEMU starts late)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        pids = qemu_pids(str(tag))
        if pids:
            return pids
        time.sleep(0.2)
    pytest.fail(f"no QEMU started within {seconds:.0f}s")


def wait_no_qemu(tag, seconds: float = 15) -> set[int]:
    """This test's QEMU processes still alive after ``seconds`` (polled), or none."""
    deadline = time.monotonic() + seconds
    while qemu_pids(str(tag)) and time.monotonic() < deadline:
        time.sleep(0.2)
    return qemu_pids(str(tag))


# pytester gives each child session a HOME of its own, and with it a cache of its own: child
# sessions that boot guests would make every root anew (over 15 minutes for an arm64 one).
HOST_CACHE = cache_dir()  # at import: before any fixture moves HOME


@pytest.fixture
def host_cache(monkeypatch) -> Path:
    """Child sessions (pytester) use the cache of this one: ``HARNESS_CACHE`` set to it."""
    monkeypatch.setenv("HARNESS_CACHE", str(HOST_CACHE))
    return HOST_CACHE


@pytest.fixture
def own_tmp(tmp_path, monkeypatch):
    """Run directories (shared into the guest, so on QEMU's command line) go under tmp_path:
    QEMU processes of this test are told apart from any other VM on the machine, and any
    left behind when the test ends fail it."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    yield tmp_path
    left = qemu_pids(str(tmp_path))
    assert not left, f"qemu processes outlived the run: {left}"


# ---- two workers (make test: pytest-xdist -n 2 --dist loadfile) -----------------------------------------

# A file's tests run on one worker, in order: what a module-scoped fixture makes (a private cache's
# root, one VM timeout run, the installed wheel, the plugin's session guest) is made once. Guests far
# slower than the default one (KASAN, arm64) are not among them: their tests have their own make
# targets, run one at a time (two KASAN guests at once, one vCPU each, ran steps past their limits).
# (--dist loadgroup with xdist_group marks would say the same per test, but with pytest 9.2 and
# xdist 3.8 it did not group at all.)


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config, items):
    # the tests that boot VMs first: the workers then finish on short tests, not one on a long one
    items.sort(key=lambda item: not (item.get_closest_marker("vm") or item.get_closest_marker("workflow")))


# ---- no hollow greens: in CI a skip fails the run unless its reason is listed -------------------------

ALLOWED_SKIPS = Path(__file__).parent / "allowed-skips.txt"


def allowed_skips() -> list[str]:
    """Reasons a test may be skipped in CI, one a line (tests/allowed-skips.txt), each with why."""
    lines = [ln.split("#", 1)[0].strip() for ln in ALLOWED_SKIPS.read_text().splitlines()]
    return [ln for ln in lines if ln]


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    if not rep.skipped or os.environ.get("CI", "").lower() not in ("1", "true", "yes"):
        return
    reason = rep.longrepr[2] if isinstance(rep.longrepr, tuple) else str(rep.longrepr)
    if any(allowed in reason for allowed in allowed_skips()):
        return
    rep.outcome = "failed"
    rep.longrepr = (f"skipped in CI, and the reason is not listed in {ALLOWED_SKIPS.name}: {reason}\n"
                    "A skipped test is a test that did not run: make it run here, or list the reason with why.")


def built_kernel_or_skip(spec_text: str, env: str, target: str) -> str:
    """A kernel built from source (debian-src:), when it is cached, or when ``env``=1 asks for it
    (its make ``target`` builds it first); otherwise the test is skipped, saying how to get it."""
    if os.environ.get(env) == "1":
        return spec_text
    from harness.kernel import apt, spec, trees
    from harness.phases import resolve_spec

    _, src, _ = resolve_spec(spec.parse_spec(spec_text), apt.Mirror.from_env(None, ()), cache_dir(), apt.index_ttl())
    if src is None or trees.cached(src, cache_dir()) is None:
        pytest.skip(f"{spec_text} is not built yet: `make {target}` builds it (~20 min) and runs these")
    return spec_text


SKIP_NO_ARM64_ROOT = "is not made yet: `make test-arm64` makes it"


def foreign_root_or_skip(spec_text: str) -> str:
    """An arm64 kernel whose root is cached, or when HARNESS_ARM64=1 asks for it (`make test-arm64`
    makes the root first, ~10-16 min through qemu-user); otherwise the test is skipped, saying how.
    .ci/run runs these tests only where the roots are cached: made on a fresh machine beside the
    sanitizer kernel, they would not fit CI's 90 minutes."""
    if os.environ.get("HARNESS_ARM64") == "1":
        return spec_text
    from harness.kernel import apt, roots, spec
    from harness.phases import resolve_spec

    kernel, _, _ = resolve_spec(spec.parse_spec(spec_text), apt.Mirror.from_env(None, ()), cache_dir(),
                                apt.index_ttl())
    assert kernel is not None
    root = cache_dir() / "roots" / roots.root_key(kernel)
    if not root.is_dir() or roots.check_root(root, kernel) is not None:
        pytest.skip(f"the root of {spec_text} {SKIP_NO_ARM64_ROOT}")
    return spec_text


def _kind(name: str) -> str:
    from harness.guest import contract

    first = name.split(" ", 1)[0]
    return {"insmod": contract.LOAD, "rmmod": contract.UNLOAD, "modprobe": contract.MODPROBE, "kunit": contract.KUNIT,
            "coverage": contract.COVERAGE, "build": contract.BUILD}.get(first, contract.STEP)


def plan_of(report: Optional[GuestReport], expect_rc: Optional[dict] = None) -> tuple:
    """The plan a recorded report's steps came from (recordings keep the report, not the plan):
    each step's kind told by its name as the harness gave it then, its expected status from
    ``expect_rc`` by name (0 unless given)."""
    from harness.guest.contract import PlanStep

    if report is None:
        return ()
    return tuple(PlanStep(s.name, tuple(s.argv), expect_rc=(expect_rc or {}).get(s.name, 0), kind=_kind(s.name))
                 for s in report.steps)

"""pytest plugin: booted guests as fixtures, kernel splats as test failures.

Registered through the ``pytest11`` entry point, so any project that installs
kmod-harness can use it. Options (mirrored by ini settings and environment
variables; the command line wins):

    --kernel SPEC           repeatable; tests using the guest run once per kernel
                            (ini ``harness_kernels``, env ``HARNESS_KERNELS``, comma-separated)
    --accel auto|kvm|tcg    (ini ``harness_accel``, env ``HARNESS_ACCEL``)
    --build-in host|guest   (ini ``harness_build_in``, env ``HARNESS_BUILD_IN``)
    --harness-results DIR   console logs of the guests (ini ``harness_results``)
    --harness-project DIR   the project with harness.toml (ini ``harness_project``; default rootdir)
    --harness-spare         a spare guest booted beside each session's (ini ``harness_spare``, env
                            ``HARNESS_SPARE=1``): a test after one that crashed the guest goes on at once

Fixtures: ``harness_vm`` (one booted guest per kernel, for the whole session;
rebooted if it died), ``guest_run`` (run a command: (status, stdout, stderr)),
``module_loaded`` (insmod for the test, rmmod after it, with the module's
unload record checked), ``kmsg`` (a cursor over the kernel log from the
test's start: ``records()``, ``expect()``, ``expect_absent()``,
``expect_sequence()``).

A splat (Oops, BUG, WARNING, KASAN, panic: vm/splats.toml) logged while a test
ran fails that test with the splat in the message; the test's kernel records
are attached to its report (and to pytest's JUnit XML as a property). A guest
whose kernel switched its checks off while booting (a KASAN report, lock
debugging off: verdict.judge.checks_lost) is refused: its tests error, naming it.
"""

from __future__ import annotations

import os
import re
import shlex
import signal
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Generator, Iterator, Optional, Sequence, Union

import pytest

from harness.verdict import splat

if TYPE_CHECKING:
    from harness.guest.session import Session

Pattern = Union[str, "re.Pattern[str]"]


def pytest_addoption(parser: pytest.Parser) -> None:
    g = parser.getgroup("kmod-harness", "kernel module tests in VMs (kmod-harness)")
    # Every option is the plugin's own word (--harness-...): pytest11 loads the plugin into every
    # session of an environment where kmod-harness is installed, and --kernel is everyone's.
    g.addoption("--harness-kernel", action="append", dest="harness_kernels", metavar="SPEC",
                help="kernel to run guest tests on; repeatable (default debian:bookworm)")
    g.addoption("--harness-accel", dest="harness_accel", choices=("auto", "kvm", "tcg"), help="accelerator (auto)")
    g.addoption("--harness-build-in", dest="harness_build_in", choices=("auto", "host", "guest"),
                help="where the module is built (auto)")
    g.addoption("--harness-results", dest="harness_results", metavar="DIR", help="where guest consoles go")
    g.addoption("--harness-project", dest="harness_project", metavar="DIR", help="directory with harness.toml")
    g.addoption("--harness-spare", dest="harness_spare", action="store_const", const="1",
                help="keep a spare guest booted beside the session's: a test after a crash goes on at once")
    parser.addini("harness_kernels", "kernels for guest tests", type="args")
    parser.addini("harness_accel", "accelerator: auto, kvm or tcg")
    parser.addini("harness_build_in", "where the module is built: auto, host or guest")
    parser.addini("harness_results", "where guest consoles go")
    parser.addini("harness_project", "directory with harness.toml")
    parser.addini("harness_spare", "keep a spare guest booted beside the session's (true/false)")


def _setting(config: pytest.Config, name: str, default: Any) -> Any:
    cli = config.getoption(f"harness_{name}")
    if cli:
        return cli
    ini = config.getini(f"harness_{name}")
    if ini:
        return ini
    env = os.environ.get(f"HARNESS_{name.upper()}")
    if env:
        return [s.strip() for s in env.split(",") if s.strip()] if name == "kernels" else env
    return default


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "vm: boots a real VM (slow under TCG)")


def _catch_sigterm() -> None:
    """SIGTERM (a CI runner's timeout) would kill pytest without teardown and leave the session's
    QEMU running: in a session that boots guests, it becomes the interrupt pytest tears down after.
    Sessions that use none of the plugin's fixtures keep their own SIGTERM."""
    if threading.current_thread() is threading.main_thread() and \
            signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
        signal.signal(signal.SIGTERM, _sigterm)


def _sigterm(signum: int, frame: object) -> None:
    raise KeyboardInterrupt("SIGTERM")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "harness_kernel" in metafunc.fixturenames:
        from harness.kernel.spec import DEFAULT_KERNEL, parse_spec

        kernels = _setting(metafunc.config, "kernels", [DEFAULT_KERNEL])
        for k in kernels:
            parse_spec(k)  # a bad spec fails collection with the valid forms
        metafunc.parametrize("harness_kernel", kernels, scope="session")


class GuestVM:
    """One kernel's guest for the session; booted again when it died. With ``--harness-spare`` a
    second one boots beside it, and a test after a crash goes on at once on that spare."""

    def __init__(self, config: pytest.Config, kernel: str):
        self.config, self.kernel = config, kernel
        self.session: Any = None
        self.boots = 0
        self._logs: list[Any] = []
        self._spare: Optional[threading.Thread] = None
        self._spare_session: Any = None
        self.use_spare = str(_setting(config, "spare", "")).lower() in ("1", "true", "yes")

    def _boot(self) -> Any:
        from harness.events import Printer
        from harness.guest.session import Session
        from harness.model import Timeouts
        from harness.phases import RunRequest
        from harness.run import results_id

        results = Path(_setting(self.config, "results", self.config.rootpath / "results" / "pytest"))
        req = RunRequest(kernel=self.kernel, project=Path(_setting(self.config, "project", self.config.rootpath)),
                         results=results, accel=_setting(self.config, "accel", "auto"),
                         build_in=_setting(self.config, "build_in", "auto"), timeouts=Timeouts(guest=900))
        self.boots += 1
        out = results / results_id(self.kernel)
        out.mkdir(parents=True, exist_ok=True)
        log = open(out / f"session-{self.boots}.log", "w")  # the session's progress events
        self._logs.append(log)
        console = out / f"session-console-{self.boots}.log"
        return Session(req, Printer(log, verbose=True, console=False), console=console).start()

    def _boot_spare(self) -> None:
        def boot() -> None:
            try:
                self._spare_session = self._boot()
            except Exception:
                self._spare_session = None

        self._spare_session = None
        self._spare = threading.Thread(target=boot, daemon=True)
        self._spare.start()

    def ensure(self) -> Any:
        if self.session is not None and self.session.alive():
            return self.session
        self._close_session()
        if self._spare is not None:  # a spare that failed to boot is not used: a fresh boot says why
            self._spare.join()
            spare, self._spare = self._spare_session, None
            self.session = spare if spare is not None and spare.alive() else None
        if self.session is None:
            self.session = self._boot()
        if self.use_spare:
            self._boot_spare()
        return self.session

    def discard(self) -> None:
        """The guest died: close it. A spare booting beside it stays, for the next test."""
        self._close_session()

    def _close_session(self) -> None:
        if self.session is not None:
            self.session.close()
            self.session = None

    def stop(self) -> None:
        self._close_session()
        if self._spare is not None:
            self._spare.join()
            if self._spare_session is not None:
                self._spare_session.close()
            self._spare, self._spare_session = None, None
        for log in self._logs:
            log.close()
        self._logs.clear()


_GUESTS: dict[str, GuestVM] = {}  # the session's guests, by kernel


@pytest.fixture(scope="session")
def harness_vm(request: pytest.FixtureRequest, harness_kernel: str) -> Iterator[GuestVM]:
    _catch_sigterm()
    vm = _GUESTS[harness_kernel] = GuestVM(request.config, harness_kernel)
    try:
        yield vm
    finally:
        vm.stop()
        _GUESTS.pop(harness_kernel, None)


def _kernel_of(item: Optional[pytest.Item]) -> Optional[str]:
    callspec = getattr(item, "callspec", None)
    return callspec.params.get("harness_kernel") if callspec is not None else None


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: Optional[pytest.Item]) -> Generator[None, Any, None]:
    """Power a guest off as soon as the test after this one does not need it (once this test's
    teardown and its report are done): an idle guest under emulation still takes a good part of
    a CPU, which the session's other tests need. A later test that needs it boots it again."""
    yield
    kernel = _kernel_of(item)
    if kernel is None or kernel not in _GUESTS:
        return
    if nextitem is None or "harness_vm" not in getattr(nextitem, "fixturenames", ()) \
            or _kernel_of(nextitem) != kernel:
        _GUESTS[kernel].stop()


@pytest.fixture
def guest(request: pytest.FixtureRequest, harness_vm: GuestVM) -> "Session":
    """The running guest session for this test (booted or rebooted as needed)."""
    session = harness_vm.ensure()
    request.node._harness = {"session": session, "seq": session.last_seq(), "vm": harness_vm}
    return session


@pytest.fixture
def guest_run(guest: "Session") -> Callable[..., tuple[int, str, str]]:
    def run(command: str, timeout: float = 60.0) -> tuple[int, str, str]:
        r = guest.run(command, timeout=timeout)
        return r.status, r.stdout, r.stderr

    return run


class KmsgCursor:
    """Kernel log records since a point (the test's start, or the last ``mark()``)."""

    def __init__(self, session: Any, seq: int):
        self.session, self.seq = session, seq

    def mark(self) -> None:
        self.seq = self.session.last_seq()

    def records(self) -> list:
        return self.session.kmsg_after(self.seq)

    def texts(self) -> list[str]:
        return [r.text for r in self.records()]

    @staticmethod
    def _match(p: Pattern, text: str) -> bool:
        return bool(p.search(text)) if isinstance(p, re.Pattern) else p in text

    def expect(self, pattern: Pattern, level: Optional[int] = None, count: Optional[int] = None) -> list:
        """Records matching (``str``: substring, compiled regex: search); at least one, or exactly ``count``."""
        recs = self.records()
        hits = [r for r in recs if self._match(pattern, r.text) and (level is None or r.level == level)]
        if (count is None and not hits) or (count is not None and len(hits) != count):
            want = f"exactly {count}" if count is not None else "at least one"
            raise AssertionError(f"expected {want} kernel record matching {pattern!r}"
                                 + (f" at level {level}" if level is not None else "")
                                 + f", found {len(hits)} in:\n" + _fmt(recs))
        return hits

    def expect_absent(self, pattern: Pattern) -> None:
        recs = self.records()
        hits = [r for r in recs if self._match(pattern, r.text)]
        if hits:
            raise AssertionError(f"expected no kernel record matching {pattern!r}, found:\n" + _fmt(hits))

    def expect_sequence(self, patterns: Sequence[Pattern]) -> list:
        """The patterns appear in this order (other records may come between)."""
        recs = self.records()
        found, i = [], 0
        for r in recs:
            if i < len(patterns) and self._match(patterns[i], r.text):
                found.append(r)
                i += 1
        if i < len(patterns):
            raise AssertionError(f"kernel records did not show {patterns[i]!r} (step {i + 1} of {len(patterns)}) "
                                 "after the earlier ones; records:\n" + _fmt(recs))
        return found


def _fmt(recs: Sequence[Any]) -> str:
    return "\n".join(f"  seq {r.seq} <{r.level}> {r.text}" for r in recs[-40:]) or "  (none)"


@pytest.fixture
def kmsg(guest: "Session", request: pytest.FixtureRequest) -> KmsgCursor:
    return KmsgCursor(guest, request.node._harness["seq"])


@pytest.fixture
def module_loaded(guest: "Session", request: pytest.FixtureRequest) -> Iterator[str]:
    """The project's module(s), loaded for the test as ``harness run`` loads them (the kernel
    modules it requires, then each module with its parameters); unloaded after it in reverse,
    the unload record (the trail's last) checked. A splat while unloading fails the test too."""
    for argv in guest.load_commands():
        r = guest.run(shlex.join(argv))
        if r.status != 0:
            pytest.fail(f"{shlex.join(argv)} failed ({r.status}): {r.stderr.strip()}")
    yield guest.module
    if not guest.alive():
        return
    before = guest.last_seq()
    for argv in guest.unload_commands():
        r = guest.run(shlex.join(argv))
        if r.status != 0:
            pytest.fail(f"{shlex.join(argv)} failed ({r.status}): {r.stderr.strip()}")
    assert guest.setup is not None
    after = guest.kmsg_after(before)
    found = splat.find(guest.setup.rules, after)
    if found:  # an Oops or WARN in module_exit: this test's, even though it came after its call
        pytest.fail("kernel splat while unloading (teardown):\n" + "\n".join(f"  seq {s.seq}: {s.text}" for s in found))
    expected = guest.setup.expected
    if expected is None:
        return
    last = expected.expect[-1]  # the trail's last record is the unload record
    if not any(last.matches_text(x) for x in after):
        pytest.fail(f"unloading {guest.module}: no unload record {last.describe()} in:\n{_fmt(after)}")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None, Any, None]:
    """After the call and after the teardown (rmmod runs there): the records logged meanwhile
    are attached to the report, and a splat among them fails it."""
    outcome = yield
    rep = outcome.get_result()
    state = getattr(item, "_harness", None)
    if state is None or rep.when not in ("call", "teardown"):
        return
    session = state["session"]
    if state.get("dead") or (rep.when == "teardown" and state["vm"].session is not session):
        return  # dead already, or powered off on purpose (the session's end) after module_loaded's checks
    if not session.alive():
        state["dead"] = True
        rep.outcome = "failed"
        rep.longrepr = f"the guest died during the test ({rep.when}); see {session.console_path}"
        state["vm"].discard()  # the next test goes on on the spare, or reboots
        return
    try:
        recs = session.kmsg_after(state["seq"])
    except Exception as e:  # a guest that stopped answering is a failure of this test
        state["dead"] = True
        died = session.wait_dead(10)  # a panicked guest's QEMU exits moments after its SSH link drops
        rep.outcome = "failed"
        rep.longrepr = (f"the guest died during the test ({rep.when}); see {session.console_path}" if died else
                        f"could not read the guest's kernel log after the test ({rep.when}): {e}")
        state["vm"].discard()
        return
    if recs:
        state["seq"] = recs[-1].seq
    text = "\n".join(f"seq {r.seq} <{r.level}> {r.text}" for r in recs)
    rep.sections.append((f"kernel log ({rep.when})", text))
    item.user_properties.append(("kmsg" if rep.when == "call" else "kmsg-teardown", text))
    found = splat.find(session.setup.rules, recs)
    if found:
        rep.outcome = "failed"
        rep.longrepr = (f"kernel splat during the test ({rep.when}):\n"
                        + "\n".join(f"  seq {s.seq}: {s.text}" for s in found)
                        + "".join(f"\n{line}" for line in session.decode(recs, found)))

"""The Debian archive: mirrors, a private apt index per suite, and specs resolved to packages.

Resolution uses apt itself with a private state directory (so the host's own
apt configuration is neither used nor touched) and Debian's archive keyring:
signatures are always checked.
"""

from __future__ import annotations

import json
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from harness import procs
from harness.errors import InfraError, PhaseTimeout, UsageError
from harness.kernel.spec import DEFAULT_RELEASE, SUITES
from harness.locks import locked, write_atomic
from harness.model import KernelSpec, ResolvedKernel, Timeouts

DEFAULT_MIRROR = "http://deb.debian.org/debian"
DEFAULT_SECURITY_MIRROR = "http://deb.debian.org/debian-security"
KEYRING = Path("/usr/share/keyrings/debian-archive-keyring.gpg")


def index_ttl() -> float:
    """How long a downloaded package index counts as current (HARNESS_INDEX_TTL, seconds; --refresh: 0)."""
    text = os.environ.get("HARNESS_INDEX_TTL", "").strip() or "3600"
    try:
        ttl = float(text)
    except ValueError:
        ttl = -1.0
    if not (0 <= ttl <= 365 * 86400):  # also false for nan
        raise UsageError(f"HARNESS_INDEX_TTL={text!r}: give a number of seconds from 0 to 31536000",
                         hint="e.g. HARNESS_INDEX_TTL=3600 (an hour); 0 downloads the index every run")
    return ttl


_URL = re.compile(r"(https?://[A-Za-z0-9.-]+(:[0-9]{1,5})?(/[A-Za-z0-9._~%/+:@-]*)?|file:/[A-Za-z0-9._~%/+-]*)")
_OPTION_KEY = re.compile(r"[A-Za-z0-9][A-Za-z0-9:_.+-]*")
# apt options that would weaken what the harness promises (signatures always checked, nothing run
# or written outside its own state), refused by name (apt's keys are case-insensitive), each with why.
REFUSED_OPTIONS = (
    ("acquire::allowinsecurerepositories", "it lets apt use repositories without a valid signature"),
    ("acquire::allowdowngradetoinsecurerepositories", "it lets a signed repository become unsigned"),
    ("acquire::allowweakrepositories", "it lets apt accept weak signatures"),
    ("apt::get::allowunauthenticated", "it lets apt install packages it cannot authenticate"),
    ("acquire::gpgv", "it changes how signatures are checked"),
    ("apt::key", "it changes which keys are trusted"),
    ("acquire::https::verify-", "it turns TLS verification off"),
    ("dir", "it moves apt's files (keyrings, state, sources) out of the harness's own directory"),
    ("dpkg::", "it runs commands or changes how packages are installed"),
    ("apt::update::", "it runs commands around apt-get update"),
    ("aptlistbugs", "it runs commands"),
)


def check_mirror(url: str, what: str = "--mirror") -> str:
    """A mirror is an http, https or file URL, one line, no spaces: it goes into a sources line."""
    if not _URL.fullmatch(url):
        raise UsageError(f"{what} {url[:200]!r} is not a mirror URL",
                         hint="give http://HOST/PATH, https://HOST/PATH or file:/PATH (no spaces or quotes)")
    return url.rstrip("/")


def check_option(opt: str, what: str = "--apt-option") -> str:
    """KEY=VALUE, with nothing in it that could break out of an apt.conf line, and not one of the
    options that weaken verification (REFUSED_OPTIONS)."""
    key, eq, value = opt.partition("=")
    if not eq or not _OPTION_KEY.fullmatch(key):
        raise UsageError(f"{what} {opt[:200]!r}: give KEY=VALUE, e.g. Acquire::Check-Valid-Until=false")
    if any(c in value for c in "\"'{};\n\r\x00") or any(ord(c) < 32 for c in value) or len(opt) > 512:
        raise UsageError(f"{what} {opt[:200]!r}: the value may not hold quotes, braces, ';' or control characters")
    low = key.lower()
    for prefix, why in REFUSED_OPTIONS:
        if low == prefix or low.startswith(prefix if prefix.endswith(("::", "-")) else prefix + "::"):
            raise UsageError(f"{what} {key}: refused: {why}",
                             hint="the harness checks every package's signature against Debian's keyring, always")
    return opt


@dataclass(frozen=True)
class Mirror:
    """Where packages come from. ``apt_options`` are passed to apt and mmdebstrap as ``-o``."""

    debian: str = DEFAULT_MIRROR
    security: str = DEFAULT_SECURITY_MIRROR
    apt_options: tuple[str, ...] = ()

    @classmethod
    def from_env(cls, debian: Optional[str] = None, apt_options: tuple[str, ...] = ()) -> "Mirror":
        """The mirrors and apt options of the command line and the environment, each one checked."""
        env_opts = tuple(check_option(o, "HARNESS_APT_OPTIONS:") for o in
                         os.environ.get("HARNESS_APT_OPTIONS", "").split() if o)
        env_mirror = os.environ.get("HARNESS_MIRROR")
        security = os.environ.get("HARNESS_SECURITY_MIRROR")
        return cls(
            debian=check_mirror(debian) if debian else (check_mirror(env_mirror, "HARNESS_MIRROR") if env_mirror
                                                        else DEFAULT_MIRROR),
            security=check_mirror(security, "HARNESS_SECURITY_MIRROR") if security else DEFAULT_SECURITY_MIRROR,
            apt_options=env_opts + tuple(check_option(o) for o in apt_options),
        )

    def sources(self, suite: str) -> list[str]:
        """One-line-style sources for the suite, each signed by Debian's archive keyring."""
        lines = []
        for s in SUITES[suite]:
            url = self.security if s.endswith("-security") else self.debian
            lines.append(f"deb [signed-by={KEYRING}] {url} {s} main")
        return lines


def check_keyring() -> None:
    if not KEYRING.is_file():
        raise InfraError(
            f"Debian's archive keyring is missing ({KEYRING})",
            hint="install the package 'debian-archive-keyring' (it exists on Ubuntu too); "
            "`make setup` does it",
        )


class AptIndex:
    """A private apt state for one suite and architecture: ``update`` once, then query packages."""

    def __init__(self, cache_dir: Path, suite: str, mirror: Mirror, timeouts: Timeouts = Timeouts(),
                 arch: str = "amd64"):
        self.dir = cache_dir / "apt" / (suite if arch == "amd64" else f"{suite}-{arch}")
        self.suite = suite
        self.arch = arch
        self.mirror = mirror
        self.timeouts = timeouts
        self.conf = self.dir / "apt.conf"

    def _write_config(self) -> None:
        for sub in ("state/lists/partial", "cache/archives/partial", "etc/apt.conf.d", "etc/preferences.d"):
            (self.dir / sub).mkdir(parents=True, exist_ok=True)
        (self.dir / "state/status").touch()
        (self.dir / "sources.list").write_text("\n".join(self.mirror.sources(self.suite)) + "\n")
        d = self.dir
        conf = [
            f'Dir::State "{d}/state";',
            f'Dir::State::status "{d}/state/status";',
            f'Dir::Cache "{d}/cache";',
            f'Dir::Etc::SourceList "{d}/sources.list";',
            f'Dir::Etc::SourceParts "{d}/etc/sources.list.d";',
            f'Dir::Etc::Parts "{d}/etc/apt.conf.d";',
            f'Dir::Etc::PreferencesParts "{d}/etc/preferences.d";',
            f'APT::Architecture "{self.arch}";',
            f'APT::Architectures {{ "{self.arch}"; }};',
            'Acquire::Languages "none";',
            'Acquire::Retries "3";',
        ]
        if self.suite in DEFAULT_RELEASE:
            conf.append(f'APT::Default-Release "{DEFAULT_RELEASE[self.suite]}";')
        for opt in self.mirror.apt_options:
            key, _, value = opt.partition("=")
            conf.append(f'{key} "{value}";')
        self.conf.write_text("\n".join(conf) + "\n")

    def _run(self, args: list[str], timeout: float) -> str:
        env = dict(os.environ, APT_CONFIG=str(self.conf), LC_ALL="C")
        try:
            proc = procs.run(args, env=env, timeout=timeout, what=f"{' '.join(args[:2])} for {self.suite}")
        except PhaseTimeout:
            raise InfraError(
                f"{' '.join(args[:2])} took longer than {timeout:.0f}s against {self.mirror.debian}"
            ) from None
        if proc.returncode != 0:
            raise InfraError(
                f"{' '.join(args[:2])} failed for suite {self.suite} at {self.mirror.debian}:\n"
                + _tail(proc.stderr or proc.stdout),
                hint="check the mirror (--mirror or HARNESS_MIRROR); for an expired sid Release "
                "file, --apt-option Acquire::Check-Valid-Until=false",
            )
        return proc.stdout

    def fresh(self, ttl: float) -> bool:
        """Whether the last successful update is younger than ``ttl`` seconds (same sources)."""
        stamp = self.dir / "updated"
        try:
            same = stamp.read_text() == "\n".join(self.mirror.sources(self.suite) + list(self.mirror.apt_options))
            return same and time.time() - stamp.stat().st_mtime < ttl
        except OSError:
            return False

    def update(self, attempts: int = 3, ttl: float = 0) -> None:
        """``apt-get update`` into the private state, retried with backoff; skipped when
        an update of the same sources is younger than ``ttl`` seconds.

        Under a lock of our own: a second harness run on the same cache waits for the
        first one's update instead of failing on apt's lists lock (or reading an
        apt.conf being rewritten).
        """
        check_keyring()
        self.dir.mkdir(parents=True, exist_ok=True)
        with locked(self.dir / "update.lock"):
            if ttl > 0 and self.fresh(ttl):
                return None
            self._write_config()
            last: Optional[InfraError] = None
            for i in range(attempts):
                if i:
                    time.sleep(2 * i)
                try:
                    out = self._run(["apt-get", "update", "-q"], timeout=self.timeouts.resolve)
                except InfraError as e:
                    last = e
                    continue
                # apt-get update exits 0 even when a source failed: look for its warnings.
                if "Err:" in out:
                    self._failed_sources(out)
                (self.dir / "updated").write_text(
                    "\n".join(self.mirror.sources(self.suite) + list(self.mirror.apt_options)))
                return None
            assert last is not None
            raise last

    def _failed_sources(self, out: str) -> None:
        errs = [line for line in out.splitlines() if line.startswith("Err:")]
        raise InfraError(
            f"could not download the package index from {self.mirror.debian}:\n  " + "\n  ".join(errs),
            hint="check the mirror URL and the network; set --mirror or HARNESS_MIRROR",
        )

    def download(self, package: str, version: str, dest: Path) -> Path:
        """``apt-get download PACKAGE=VERSION`` into ``dest`` (signature-checked like every download)."""
        env = dict(os.environ, APT_CONFIG=str(self.conf), LC_ALL="C")
        what = f"downloading {package} {version}"
        try:
            proc = procs.run(["apt-get", "download", "-q", f"{package}={version}"], env=env, cwd=dest,
                             timeout=self.timeouts.download, what=what)
        except PhaseTimeout:
            raise InfraError(f"{what} from {self.mirror.debian} took longer than {self.timeouts.download:.0f}s"
                             ) from None
        debs = list(dest.glob(f"{package}_*.deb"))
        if proc.returncode != 0 or not debs:
            raise InfraError(f"{what} from {self.mirror.debian} failed:\n" + _tail(proc.stderr or proc.stdout),
                             hint="check the mirror (--mirror or HARNESS_MIRROR) and the network")
        return debs[0]

    def show(self, package: str) -> Optional[dict[str, str]]:
        """The candidate version's control fields, or None when apt knows no such package.

        Answers are kept with the index they came from (show-cache.json, dropped with
        each update): a warm run resolves in milliseconds instead of three apt-cache
        calls (~0.5 s).
        """
        memo_path = self.dir / "show-cache.json"
        stamp = self._stamp()
        memo: dict = {}
        try:
            memo = json.loads(memo_path.read_text())
        except (OSError, ValueError):
            pass
        if memo.get("stamp") != stamp:
            memo = {"stamp": stamp, "answers": {}}
        if package in memo["answers"]:
            return memo["answers"][package]
        env = dict(os.environ, APT_CONFIG=str(self.conf), LC_ALL="C")
        proc = procs.quick(["apt-cache", "show", "--no-all-versions", package], env=env, timeout=self.timeouts.tool)
        answer = parse_control(proc.stdout) if proc.returncode == 0 and proc.stdout.strip() else None
        if stamp is not None:
            memo["answers"][package] = answer
            try:
                write_atomic(memo_path, json.dumps(memo))
            except OSError:
                pass  # a memo that cannot be kept costs time, not correctness
        return answer

    def _stamp(self) -> Optional[str]:
        """Identifies the downloaded index: the last update's time and sources."""
        try:
            st = (self.dir / "updated").stat()
            return f"{st.st_mtime_ns}:{(self.dir / 'updated').read_text()}"
        except OSError:
            return None


def parse_control(text: str) -> dict[str, str]:
    """First paragraph of a Debian control file (``apt-cache show`` output)."""
    fields: dict[str, str] = {}
    key = None
    for line in text.splitlines():
        if not line.strip():
            if fields:
                break
            continue
        if line[0] in " \t" and key:
            fields[key] += "\n" + line.strip()
            continue
        key, _, value = line.partition(":")
        fields[key] = value.strip()
    return fields


def compiler_from_depends(depends: str) -> Optional[str]:
    """``linux-compiler-gcc-12-x86`` or ``gcc-14`` in a headers package's Depends -> ``gcc-12``."""
    m = re.search(r"\bgcc-(\d+)\b", depends)
    return f"gcc-{m.group(1)}" if m else None


def resolve(spec: KernelSpec, index: AptIndex) -> ResolvedKernel:
    """Resolve a spec to concrete package names and versions (needs ``index.update()``)."""
    arch = spec.arch
    if spec.pin:
        release = f"{spec.pin}-{arch}"
        image = index.show(f"linux-image-{release}")
        if image is None:
            raise InfraError(
                f"no package linux-image-{release} in {', '.join(SUITES[spec.suite])} at {index.mirror.debian}",
                hint=f"use debian:{spec.suite} for the current kernel, or `harness kernels list` for what exists",
            )
    else:
        meta = index.show(f"linux-image-{arch}")
        if meta is None:
            raise InfraError(f"no package linux-image-{arch} in {spec.suite} at {index.mirror.debian}")
        m = re.search(r"linux-image-(\S+?)(?:-unsigned)? \(= ([^)]+)\)", meta.get("Depends", ""))
        if not m:
            raise InfraError(f"cannot read the kernel from linux-image-{arch}'s Depends: {meta.get('Depends')!r}")
        release = m.group(1)
        image = index.show(f"linux-image-{release}")
        if image is None:
            raise InfraError(f"linux-image-{arch} names linux-image-{release}, which the index lacks")
    headers = index.show(f"linux-headers-{release}")
    if headers is None:
        raise InfraError(f"no package linux-headers-{release} in {spec.suite} at {index.mirror.debian}")
    compiler = compiler_from_depends(headers.get("Depends", ""))
    if compiler is None:
        raise InfraError(f"cannot tell which gcc linux-headers-{release} expects (Depends: {headers.get('Depends')})")
    return ResolvedKernel(
        spec=spec,
        release=release,
        package_version=image["Version"],
        packages=(f"linux-image-{release}", f"linux-headers-{release}"),
        compiler=compiler,
    )


def _tail(text: str, n: int = 15) -> str:
    return "\n".join("  " + line for line in text.strip().splitlines()[-n:])

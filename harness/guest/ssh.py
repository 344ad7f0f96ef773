"""SSH to a running guest with paramiko: keys, free ports, commands, SFTP.

virtme-ng's SSH server mode (``--ssh PORT --ssh-tcp``) starts sshd in the
guest with host keys and an authorized key taken from ``$HOME/.cache/
virtme-ng/.ssh``. The harness runs vng with HOME set to its own directory
under the cache, and makes those keys itself beforehand, under a lock: they
are the harness's, per user, never in ``~/.ssh``, and the guest's host key is
known before the guest boots, so it is checked, never accepted blindly.
QEMU forwards only 127.0.0.1:PORT to the guest.
"""

from __future__ import annotations

import base64
import codecs
import logging
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import paramiko

from harness import procs
from harness.errors import InfraError, PhaseTimeout
from harness.locks import locked

# How long one connection waits for sshd's banner (and paramiko for the key exchange and
# authentication): sshd forks and re-executes itself per connection, slow on a loaded TCG guest.
BANNER_WAIT = 60.0


@dataclass(frozen=True)
class SshKeys:
    home: Path  # HOME for vng
    dir: Path  # $HOME/.cache/virtme-ng/.ssh

    @property
    def identity(self) -> Path:
        return self.dir / "id_virtme"

    @property
    def host_keys(self) -> list[Path]:
        return sorted((self.dir / "etc" / "ssh").glob("ssh_host_*_key.pub"))


def ensure_keys(cache: Path, timeout: float = 60) -> SshKeys:
    home = cache / "vng-home"
    keys = SshKeys(home, home / ".cache" / "virtme-ng" / ".ssh")
    with locked(cache / "ssh-keys.lock"):
        if keys.identity.exists() and keys.host_keys:
            return keys
        keygen = procs.require_tool("ssh-keygen", "openssh-client")
        (keys.dir / "etc" / "ssh").mkdir(parents=True, exist_ok=True)
        keys.dir.chmod(0o700)
        for argv in ([keygen, "-A", "-f", str(keys.dir)],
                     [keygen, "-q", "-t", "ed25519", "-N", "", "-C", "kmod-harness", "-f", str(keys.identity)]):
            if argv[1] == "-q" and keys.identity.exists():
                continue
            res = procs.quick(argv, timeout=timeout)
            if res.returncode != 0:
                raise InfraError(f"making the harness's SSH keys in {keys.dir} failed: {' '.join(argv)} exited "
                                 f"{res.returncode}: {res.output.strip()[-500:]}",
                                 hint="check that the cache directory is writable (HARNESS_CACHE)")
    return keys


def known_hosts(keys: SshKeys, port: int, path: Path) -> Path:
    """A known_hosts file pinning the guest's host keys for 127.0.0.1:PORT (for the ssh client)."""
    lines = []
    for pub in keys.host_keys:
        kind, data = pub.read_text().split()[:2]
        lines.append(f"[127.0.0.1]:{port} {kind} {data}")
    path.write_text("\n".join(lines) + "\n")
    return path


def ssh_argv(keys: SshKeys, port: int, known: Path, user: str = "root") -> list[str]:
    """An interactive OpenSSH client command line for the guest (host key checked)."""
    return ["ssh", "-i", str(keys.identity), "-p", str(port), "-o", f"UserKnownHostsFile={known}",
            "-o", "StrictHostKeyChecking=yes", "-o", "IdentitiesOnly=yes", "-o", "LogLevel=ERROR",
            f"{user}@127.0.0.1"]


def free_port() -> int:
    """A port free on 127.0.0.1 now (QEMU binds it moments later; a lost race fails the boot loudly)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class CommandResult:
    status: int
    stdout: str
    stderr: str
    seconds: float


class GuestSsh:
    """One SSH connection to a guest; commands with a timeout each, and SFTP."""

    def __init__(self, port: int, keys: SshKeys, user: str = "root"):
        self.port, self.keys, self.user = port, keys, user
        # Refused connections while the guest boots are expected; paramiko's transport
        # thread would print each one's traceback through logging's last-resort handler.
        logging.getLogger("paramiko").addHandler(logging.NullHandler())
        logging.getLogger("paramiko").propagate = False
        self.client: Optional[paramiko.SSHClient] = None

    def _host_keys(self, client: paramiko.SSHClient) -> None:
        hk = client.get_host_keys()
        for pub in self.keys.host_keys:
            kind, data = pub.read_text().split()[:2]
            hk.add(f"[127.0.0.1]:{self.port}", kind, paramiko.PKey.from_type_string(kind, _b64(data)))

    def connect(self, timeout: float, alive: Callable[[], bool] = lambda: True) -> float:
        """Connect, retrying while the guest boots; returns the seconds it took."""
        t0 = time.monotonic()
        last: Optional[Exception] = None
        while time.monotonic() - t0 < timeout:
            if not alive():
                raise InfraError(f"the guest ended before its SSH server answered on 127.0.0.1:{self.port}"
                                 + (f" (last error: {last})" if last else ""))
            if not self._banner_ready(min(BANNER_WAIT, max(1.0, timeout - (time.monotonic() - t0)))):
                time.sleep(0.2)
                continue
            client = paramiko.SSHClient()
            client.set_missing_host_key_policy(paramiko.RejectPolicy())
            self._host_keys(client)
            try:
                client.connect("127.0.0.1", port=self.port, username=self.user,
                               key_filename=str(self.keys.identity), look_for_keys=False, allow_agent=False,
                               timeout=5, banner_timeout=BANNER_WAIT, auth_timeout=BANNER_WAIT)
                self.client = client
                return time.monotonic() - t0
            except paramiko.BadHostKeyException as e:
                client.close()
                raise InfraError(f"the guest on 127.0.0.1:{self.port} presented an unexpected host key: {e}") from None
            except (OSError, paramiko.SSHException, EOFError) as e:
                last = e
                client.close()
                time.sleep(0.5)
        raise PhaseTimeout(f"no SSH answer from the guest on 127.0.0.1:{self.port} within {timeout:.0f}s"
                           + (f" (last error: {last})" if last else ""))

    def _banner_ready(self, wait: float) -> bool:
        """True once sshd's banner arrives on a probe connection, cheaper than a paramiko
        handshake while the guest boots. QEMU's user network accepts the TCP connection on
        the host side even before sshd listens in the guest, and closes it once the guest
        refuses it, so the probe ends at once then. When sshd does listen, its banner comes
        only after it forked and re-executed itself for the connection: seconds on a loaded
        TCG guest. A probe that gave up after 1 s never saw one under 2x oversubscription
        (bench/stress.py), and each abandoned connection left sshd more to do."""
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1.0) as s:
                s.settimeout(wait)
                return s.recv(4).startswith(b"SSH-")
        except OSError:
            return False

    def run(self, command: str, timeout: float = 60.0, stdin: Optional[bytes] = None) -> CommandResult:
        """Run a shell command; stdout and stderr are kept apart."""
        out: list[str] = []
        status, err, secs = self._exec(command, timeout, stdin, out.append)
        return CommandResult(status, "".join(out), err, secs)

    def stream(self, command: str, timeout: float, on_line: Callable[[str], None]) -> CommandResult:
        """Run a command, passing each line of its stdout to ``on_line`` as it arrives (without
        the newline); the result's stdout is empty."""
        return self.start(command).finish(timeout, on_line)

    def start(self, command: str) -> "Started":
        """Start a command now and hear it later: ``Started.finish`` sends its standard input and
        streams its output (a program that waits on its stdin is ready and waiting meanwhile)."""
        return Started(self._open(command), command, self.port)

    def _open(self, command: str) -> paramiko.Channel:
        if self.client is None:
            raise InfraError("the guest's SSH connection is closed")
        transport = self.client.get_transport()
        if transport is None or not transport.is_active():
            raise InfraError(f"the SSH connection to 127.0.0.1:{self.port} is gone (did the guest die?)")
        chan = transport.open_session(timeout=10)
        chan.settimeout(1.0)
        chan.exec_command(command)
        return chan

    def _exec(self, command: str, timeout: float, stdin: Optional[bytes],
              on_out: Callable[[str], None]) -> tuple[int, str, float]:
        t0 = time.monotonic()
        chan = self._open(command)
        return _pump(chan, command, t0, timeout, stdin, on_out)

    def poweroff(self) -> None:
        """Ask the guest to power off at once (a throwaway VM needs no clean shutdown)."""
        transport = self.client.get_transport() if self.client is not None else None
        if transport is None:
            return
        try:
            chan = transport.open_session(timeout=5)
            chan.exec_command("echo o > /proc/sysrq-trigger")
            chan.close()
        except (OSError, paramiko.SSHException, EOFError):
            pass

    def close(self) -> None:
        if self.client is not None:
            self.client.close()
            self.client = None


class Started:
    """A command started in the guest, not yet heard (``GuestSsh.start``)."""

    def __init__(self, chan: paramiko.Channel, command: str, port: int):
        self.chan, self.command, self.port = chan, command, port

    def finish(self, timeout: float, on_line: Callable[[str], None], stdin: Optional[bytes] = None) -> CommandResult:
        """Send ``stdin`` (then end it), and pass each line of the output to ``on_line`` until the
        command ends; ``timeout`` counts from now."""
        buf = [""]

        def feed(text: str) -> None:
            *lines, buf[0] = (buf[0] + text).split("\n")
            for line in lines:
                on_line(line)

        try:
            status, err, secs = _pump(self.chan, self.command, time.monotonic(), timeout, stdin, feed)
        except OSError as e:  # the guest went away while the command waited
            raise InfraError(f"the SSH channel to 127.0.0.1:{self.port} broke: {e}") from None
        if buf[0]:
            on_line(buf[0])
        return CommandResult(status, "", err, secs)


def _pump(chan: paramiko.Channel, command: str, t0: float, timeout: float, stdin: Optional[bytes],
          on_out: Callable[[str], None]) -> tuple[int, str, float]:
    """Send ``stdin`` to a started command and read its output until it ends: (status, stderr, seconds)."""
    if stdin:
        chan.sendall(stdin)
    chan.shutdown_write()
    out, err = _Utf8(), []
    while True:
        if time.monotonic() - t0 > timeout:
            chan.close()
            raise PhaseTimeout(f"guest command {command!r} did not finish within {timeout:.0f}s")
        got = False
        while chan.recv_ready():
            on_out(out.decode(chan.recv(65536)))
            got = True
        while chan.recv_stderr_ready():
            err.append(chan.recv_stderr(65536))
            got = True
        # sshd may send the exit status before the last of the output (the child
        # exits while its pipe still holds data): the end is EOF plus the status,
        # or the channel closing.
        if ((chan.eof_received and chan.exit_status_ready()) or chan.closed) \
                and not chan.recv_ready() and not chan.recv_stderr_ready():
            break
        if not got:
            time.sleep(0.005)
    on_out(out.decode(b"", final=True))
    status = chan.recv_exit_status() if chan.exit_status_ready() else 255  # 255: closed, as ssh(1) says
    chan.close()
    return status, b"".join(err).decode("utf-8", "backslashreplace"), time.monotonic() - t0


def _b64(data: str) -> bytes:
    return base64.b64decode(data)


class _Utf8:
    """Decodes a byte stream that may split a character between two reads."""

    def __init__(self) -> None:
        self._dec = codecs.getincrementaldecoder("utf-8")("backslashreplace")

    def decode(self, data: bytes, final: bool = False) -> str:
        return self._dec.decode(data, final)

import os
import socket
import sys
import threading
from pathlib import Path
from typing import cast

import paramiko
import pytest

from harness import virtme
from harness.errors import InfraError, PhaseTimeout
from harness.guest import ssh, vng
from harness.model import Accel


def test_keys_are_made_once_outside_home_ssh(tmp_path: Path):
    keys = ssh.ensure_keys(tmp_path)
    assert keys.identity.exists() and keys.identity.with_suffix(".pub").exists()
    assert keys.host_keys and all(p.name.startswith("ssh_host_") for p in keys.host_keys)
    assert keys.dir == tmp_path / "vng-home" / ".cache" / "virtme-ng" / ".ssh"  # where virtme-ng looks
    before = keys.identity.read_bytes()
    assert ssh.ensure_keys(tmp_path).identity.read_bytes() == before


def test_concurrent_first_use_makes_one_set_of_keys(tmp_path: Path):
    got = []
    threads = [threading.Thread(target=lambda: got.append(ssh.ensure_keys(tmp_path).identity.read_bytes()))
               for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(got) == 4 and len(set(got)) == 1


def fake_keygen(bin_dir: Path, body: str) -> None:
    bin_dir.mkdir(exist_ok=True)
    (bin_dir / "ssh-keygen").write_text(f"#!/bin/sh\n{body}\n")
    (bin_dir / "ssh-keygen").chmod(0o755)


def test_a_failing_ssh_keygen_is_an_infra_error_saying_why(tmp_path: Path, monkeypatch):
    real_path = os.environ["PATH"]
    fake_keygen(tmp_path / "bin", "echo 'cannot write: No space left on device' >&2; exit 1")
    monkeypatch.setenv("PATH", str(tmp_path / "bin"))
    with pytest.raises(InfraError, match=r"(?s)making the harness's SSH keys.*exited 1: cannot write: No space"):
        ssh.ensure_keys(tmp_path / "cache")
    monkeypatch.setenv("PATH", real_path)  # a later call makes the keys the failed one did not
    keys = ssh.ensure_keys(tmp_path / "cache")
    assert keys.identity.exists() and keys.host_keys


def test_ssh_keygen_runs_under_the_timeout_it_is_given(tmp_path: Path, monkeypatch):
    fake_keygen(tmp_path / "bin", f"exec {sys.executable} -c 'import time; time.sleep(60)'")
    monkeypatch.setenv("PATH", str(tmp_path / "bin"))
    with pytest.raises(PhaseTimeout, match="ssh-keygen"):
        ssh.ensure_keys(tmp_path / "cache", timeout=0.5)


def test_known_hosts_pins_every_host_key_to_the_port(tmp_path: Path):
    keys = ssh.ensure_keys(tmp_path)
    kh = ssh.known_hosts(keys, 40222, tmp_path / "kh").read_text().splitlines()
    assert len(kh) == len(keys.host_keys)
    assert all(line.startswith("[127.0.0.1]:40222 ssh-") or line.startswith("[127.0.0.1]:40222 ecdsa-")
               for line in kh)
    argv = ssh.ssh_argv(keys, 40222, tmp_path / "kh")
    assert "StrictHostKeyChecking=yes" in argv and argv[-1] == "root@127.0.0.1"


def test_free_port_is_bindable_on_loopback():
    port = ssh.free_port()
    with socket.socket() as s:
        s.bind(("127.0.0.1", port))


def test_ssh_server_mode_listens_on_loopback_only():
    cfg = vng.VmConfig(vmlinuz=Path("/k"), root=Path("/r"), run_dir=Path("/h"), project_dir=Path("/p"),
                       accel=Accel.TCG)
    argv = vng.vng_argv("vng", cfg, "sleep 86400", ssh_port=40222)
    i = argv.index("--ssh")
    assert argv[i:i + 3] == ["--ssh", "40222", "--ssh-tcp"]
    # virtme-ng forwards hostfwd=tcp:127.0.0.1:PORT-:22 for --ssh-tcp; nothing else is opened.
    assert "--network" not in argv
    assert argv[argv.index("--exec") + 1] == "sleep 86400"
    assert "--ssh" not in vng.vng_argv("vng", cfg, vng.SSH_GUEST_COMMAND)  # no port: no server


def test_vng_env_sets_home_for_the_keys(tmp_path: Path):
    env = virtme.vng_env(home=tmp_path)
    assert env["HOME"] == str(tmp_path)


class _ScriptedChannel:
    """A channel whose server sends the exit status first and the output after it,
    as sshd does when the command exits while its pipe still holds data."""

    def __init__(self, chunks: list[bytes]):
        self.chunks, self.polls = list(chunks), 0
        self.eof_received = self.closed = False

    def settimeout(self, _t): pass
    def exec_command(self, _c): pass
    def shutdown_write(self): pass
    def close(self): self.closed = True

    def exit_status_ready(self) -> bool:
        return True  # from the first poll on

    def recv_exit_status(self) -> int:
        return 0

    def recv_ready(self) -> bool:
        self.polls += 1
        if self.polls % 3:  # data trickles in: only every third poll finds some
            return False
        if not self.chunks:
            self.eof_received = True
        return bool(self.chunks)

    def recv(self, _n: int) -> bytes:
        return self.chunks.pop(0)

    def recv_stderr_ready(self) -> bool:
        return False


def guest_over(chan: _ScriptedChannel) -> ssh.GuestSsh:
    class Transport:
        def is_active(self):
            return True

        def open_session(self, timeout):
            return chan

    class Client:
        def get_transport(self):
            return Transport()

    g = ssh.GuestSsh.__new__(ssh.GuestSsh)
    g.port, g.client = 40222, cast(paramiko.SSHClient, Client())  # run and stream call get_transport alone
    return g


def test_run_reads_output_that_arrives_after_the_exit_status():
    chunks = [b"a" * 1000, b"b" * 1000, b"c" * 10]
    r = guest_over(_ScriptedChannel(chunks)).run("dd if=/dev/kmsg", timeout=5)
    assert r.status == 0 and r.stdout == "a" * 1000 + "b" * 1000 + "c" * 10


def test_stream_passes_whole_lines_as_they_arrive():
    chunks = [b"first\nsec", b"ond\n\xc3", b"\xa9t\xc3\xa9\n", b"no newline at the end"]  # UTF-8 split too
    lines: list[str] = []
    r = guest_over(_ScriptedChannel(chunks)).stream("python3 runner.py", timeout=5, on_line=lines.append)
    assert lines == ["first", "second", "été", "no newline at the end"]
    assert r.status == 0 and r.stdout == ""


def _server(behaviour) -> tuple[socket.socket, int]:
    """A loopback server that hands each accepted connection to ``behaviour`` in a thread."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen()

    def serve():
        while True:
            try:
                conn, _ = srv.accept()
            except OSError:
                return
            threading.Thread(target=behaviour, args=(conn,), daemon=True).start()

    threading.Thread(target=serve, daemon=True).start()
    return srv, srv.getsockname()[1]


def test_the_banner_probe_waits_for_a_slow_sshd(tmp_path: Path):
    # Recorded in tests/data/ssh_no_banner: under 2x oversubscription the guest's sshd ran, but
    # its banner took longer than the probe's old 1 s, so every probe gave up and the run timed out.
    def slow(conn):
        import time
        time.sleep(2.5)
        conn.sendall(b"SSH-2.0-OpenSSH_9.2\r\n")
        conn.close()

    srv, port = _server(slow)
    try:
        g = ssh.GuestSsh(port, ssh.SshKeys(tmp_path, tmp_path))
        assert g._banner_ready(10.0)
        assert not g._banner_ready(0.5)  # the same server, asked for less than it needs
    finally:
        srv.close()


def test_the_banner_probe_ends_at_once_when_the_guest_refuses(tmp_path: Path):
    # QEMU's user network accepts on the host, then closes when nothing listens in the guest.
    import time

    srv, port = _server(lambda conn: conn.close())
    try:
        g = ssh.GuestSsh(port, ssh.SshKeys(tmp_path, tmp_path))
        t0 = time.monotonic()
        assert not g._banner_ready(30.0)
        assert time.monotonic() - t0 < 5, "a refused probe must not wait for the banner's limit"
    finally:
        srv.close()

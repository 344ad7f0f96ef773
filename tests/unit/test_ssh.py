import socket
import threading
from pathlib import Path

from harness import ssh, vm
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
    assert len(set(got)) == 1


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
    cfg = vm.VmConfig(vmlinuz=Path("/k"), root=Path("/r"), run_dir=Path("/h"), project_dir=Path("/p"),
                      accel=Accel.TCG, command="sleep 86400", ssh_port=40222)
    argv = vm.vng_argv("vng", cfg)
    i = argv.index("--ssh")
    assert argv[i:i + 3] == ["--ssh", "40222", "--ssh-tcp"]
    # virtme-ng forwards hostfwd=tcp:127.0.0.1:PORT-:22 for --ssh-tcp; nothing else is opened.
    assert "--network" not in argv


def test_vng_env_sets_home_for_the_keys(tmp_path: Path):
    env = vm.vng_env(home=tmp_path)
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


def test_run_reads_output_that_arrives_after_the_exit_status():
    chunks = [b"a" * 1000, b"b" * 1000, b"c" * 10]
    chan = _ScriptedChannel(chunks)

    class Client:
        def get_transport(self):
            return type("T", (), {"open_session": lambda _self, timeout: chan})()

    g = ssh.GuestSsh.__new__(ssh.GuestSsh)
    g.client = Client()
    r = g.run("dd if=/dev/kmsg", timeout=5)
    assert r.status == 0 and r.stdout == "a" * 1000 + "b" * 1000 + "c" * 10

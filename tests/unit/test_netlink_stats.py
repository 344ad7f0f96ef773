"""Unit tests for bench/netlink_stats.py (timed round trips) that need no kernel module.

The script is loaded from its file path, as the client is in
test_netlink_client.py; it imports netlink_client from ../userspace. Netlink
sockets are replaced by a fake where a kernel reply is needed; the
EPROTONOSUPPORT, timeout and NLMSG_ERROR checks use real sockets.
"""

import errno
import importlib.util
import io
import json
import random
import shutil
import socket
import struct
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
STATS_PATH = REPO / "bench" / "netlink_stats.py"
CLIENT_PATH = REPO / "userspace" / "netlink_client.py"
KEYS = ["client", "messages", "seconds", "msgs_per_s", "p50_us", "p99_us", "max_us"]


def _load_stats():
    spec = importlib.util.spec_from_file_location("netlink_stats", str(STATS_PATH))
    assert spec is not None and spec.loader is not None, STATS_PATH
    module = importlib.util.module_from_spec(spec)
    saved_path, saved_bytecode = list(sys.path), sys.dont_write_bytecode
    sys.dont_write_bytecode = True  # leave no __pycache__ in bench/ or userspace/
    try:
        spec.loader.exec_module(module)
    finally:
        sys.path[:] = saved_path  # the script puts its own directories first
        sys.dont_write_bytecode = saved_bytecode
    return module


ns = _load_stats()

HDR = "=IHHII"
KERNEL_TEXT = b"Hello msg from kernel\0"  # 22 bytes, NUL included


def kernel_reply(padded=False, msg_type=3, length=None, payload=KERNEL_TEXT):
    """The module's reply as userspace receives it (nlmsg_len 38; 40 bytes when padded)."""
    if length is None:
        length = 16 + len(payload)
    data = struct.pack(HDR, length, msg_type, 0, 0, 0) + payload
    if padded:
        data += b"\0" * (-len(data) % 4)
    return data


def netlink_available(protocol):
    try:
        sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, protocol)
    except OSError as exc:
        return exc.errno
    sock.close()
    return 0


def test_wire_format_comes_from_the_client():
    client = sys.modules["netlink_client"]
    assert client.__file__ is not None and Path(client.__file__).resolve() == CLIENT_PATH
    for name in ("pack_msg", "parse_reply", "open_socket", "ClientError", "NLMSG_HDRLEN", "NLMSG_DONE"):
        assert getattr(ns, name) is getattr(client, name)
    assert ns.NLMSG_LEN_TYPE.size == 6 and ns.TIMEVAL.format in ("@ll", b"@ll")


# ------------------------------------------------------------ statistics


@pytest.mark.parametrize(
    "values, p, expected",
    [
        ([7], 50, 7),
        ([7], 99, 7),
        ([7], 100, 7),
        ([1, 2], 50, 1),  # rank ceil(1.0) = 1
        ([1, 2], 51, 2),
        ([1, 2, 3, 4], 50, 2),
        ([1, 2, 3, 4], 75, 3),
        ([1, 2, 3, 4], 76, 4),
        (list(range(1, 101)), 50, 50),
        (list(range(1, 101)), 99, 99),
        (list(range(1, 101)), 1, 1),
        (list(range(1, 10001)), 50, 5000),
        (list(range(1, 10001)), 99, 9900),
        (list(range(1, 10001)), 100, 10000),
        (list(range(1, 11)), 99, 10),  # ceil(9.9) = 10
        (list(range(1, 11)), 0.5, 1),
        (list(range(1, 1001)), 99.9, 999),
    ],
)
def test_percentile_nearest_rank(values, p, expected):
    assert ns.percentile(values, p) == expected


def test_percentile_edges():
    assert ns.percentile([], 50) is None
    for bad in (0, -1, 100.5, 101):
        with pytest.raises(ValueError):
            ns.percentile([1, 2, 3], bad)


def test_percentile_matches_definition():
    # the smallest value with at least p% of the values at or below it
    rng = random.Random(1)
    for n in (1, 2, 3, 7, 99, 100, 101, 1000, 9999):
        values = sorted(rng.randrange(1000) for _ in range(n))
        for p in (1, 10, 50, 90, 99, 100):
            got = ns.percentile(values, p)
            assert sum(v <= got for v in values) * 100 >= p * n
            below = [v for v in values if v < got]
            assert len(below) * 100 < p * n


def test_stats_doc():
    lat = [3000, 1000, 2000, 4000] * 25  # 100 round trips, in ns
    doc = ns.stats_doc("python", lat, 2_000_000_000)
    assert list(doc) == KEYS
    assert doc == {"client": "python", "messages": 100, "seconds": 2.0, "msgs_per_s": 50.0,
                   "p50_us": 2.0, "p99_us": 4.0, "max_us": 4.0}
    assert lat[:4] == [3000, 1000, 2000, 4000]  # not sorted in place
    empty = ns.stats_doc("c", [], 0)
    assert empty == {"client": "c", "messages": 0, "seconds": 0.0, "msgs_per_s": 0.0,
                     "p50_us": None, "p99_us": None, "max_us": None}


# ------------------------------------------------------------ arguments


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["--payload", "m"],
        ["--count"],
        ["--count", "0"],
        ["--count", "-3"],
        ["--count", "abc"],
        ["--count", "2.5"],
        ["--count", "10", "--json"],
        ["--count", "10", "--stats"],
        ["--count", "10", "--message", "m"],
        ["--count", "1", "--payload", "a" * 1024],
        ["--count", "1", "--payload", "\u00e9" * 512],  # 1024 bytes in UTF-8
        ["--count", "1", "--timeout", "0"],
        ["--count", "1", "--timeout", "-1"],
        ["--count", "1", "--timeout", "soon"],
        ["--count", "1", "--client-name"],
        ["--count", "1", "extra-positional"],
    ],
)
def test_usage_errors_exit_2(argv, capsys):
    assert ns.main(argv) == ns.EXIT_USAGE == 2
    captured = capsys.readouterr()
    assert "usage: netlink_stats" in captured.err and captured.out == ""


def test_usage_error_messages(capsys):
    assert ns.main(["--payload", "x"]) == 2
    assert "the following arguments are required: --count" in capsys.readouterr().err
    assert ns.main(["--count", "1", "--payload", "a" * 1024]) == 2
    assert "--payload is 1024 bytes; at most 1023 fit" in capsys.readouterr().err


def test_help_lists_options_and_exit_codes(capsys):
    assert ns.main(["--help"]) == 0
    out = capsys.readouterr().out
    for option in ("--count N", "--payload TEXT", "--timeout S", "--client-name NAME"):
        assert option in out
    for code in ("3 ", "4 ", "5 ", "6 "):
        assert "\n  " + code in out
    assert "EPROTONOSUPPORT" in out


def test_parse_args():
    args = ns.parse_args(["--count", "7"])
    assert args.count == 7 and args.payload == ns.HELLO.encode()
    assert args.timeout == 5.0 and args.client_name == "python"
    args = ns.parse_args(["--count", "1", "--payload", "a" * 1023, "--timeout", "0.25", "--client-name", "py39"])
    assert args.payload == b"a" * 1023 and args.timeout == 0.25 and args.client_name == "py39"


# ------------------------------------------------------------ fake kernel


class FakeStatsSocket:
    """A connected netlink socket to a fake module."""

    def __init__(self, replies=None, port=4321):
        self.port = port
        self.frames = []
        self.options = {}
        self.connected = None
        self.replies = list(replies) if replies is not None else None
        self.closed = False

    def setsockopt(self, level, name, value):
        self.options[(level, name)] = value

    def connect(self, addr):
        self.connected = addr

    def send(self, frame):
        assert self.connected == (0, 0)
        self.frames.append(bytes(frame))
        return len(frame)

    def recv_into(self, buf):
        item = kernel_reply(padded=True) if self.replies is None else self.replies.pop(0)
        if isinstance(item, BaseException):
            raise item
        buf[:len(item)] = item
        return len(item)

    def close(self):
        self.closed = True


@pytest.fixture
def fake_stats(monkeypatch):
    holder = {"sock": FakeStatsSocket()}

    def fake_open(protocol=30, timeout=5.0):
        assert protocol == 30
        assert timeout is None  # blocking socket: SO_RCVTIMEO does the timeout
        return holder["sock"], holder["sock"].port

    monkeypatch.setattr(ns, "open_socket", fake_open)
    return holder


def test_stats_line(fake_stats):
    out, err = io.StringIO(), io.StringIO()
    assert ns.main(["--count", "50", "--payload", "ping", "--timeout", "2.5"], stdout=out, stderr=err) == 0
    assert err.getvalue() == ""
    text = out.getvalue()
    assert text.count("\n") == 1
    doc = json.loads(text)
    assert list(doc) == KEYS
    assert doc["client"] == "python" and doc["messages"] == 50
    assert doc["seconds"] > 0 and doc["msgs_per_s"] > 0
    assert 0 < doc["p50_us"] <= doc["p99_us"] <= doc["max_us"]
    sock = fake_stats["sock"]
    assert sock.closed and sock.connected == (0, 0)
    assert sock.options[(socket.SOL_SOCKET, socket.SO_RCVTIMEO)] == struct.pack("@ll", 2, 500000)
    assert len(sock.frames) == 50 and len(set(sock.frames)) == 1
    frame = sock.frames[0]
    assert len(frame) == 1040 and struct.unpack_from(HDR, frame) == (1040, 0, 0, 0, 4321)
    assert frame[16:21] == b"ping\0"


def test_default_payload_and_client_name(fake_stats):
    out = io.StringIO()
    assert ns.main(["--count", "2", "--client-name", "py39"], stdout=out) == 0
    doc = json.loads(out.getvalue())
    assert doc["client"] == "py39" and doc["messages"] == 2
    hello = b"Hello this is a msg from userspace\0"
    assert all(f[16:16 + len(hello)] == hello and len(f) == 1040 for f in fake_stats["sock"].frames)
    opts = fake_stats["sock"].options
    assert opts[(socket.SOL_SOCKET, socket.SO_RCVTIMEO)] == struct.pack("@ll", 5, 0)


@pytest.mark.parametrize(
    "bad, code, message",
    [
        (kernel_reply(msg_type=2), 6, "malformed reply: reply type 2"),
        (kernel_reply(length=60), 6, "malformed reply: reply nlmsg_len 60"),
        (kernel_reply(length=15), 6, "malformed reply: reply nlmsg_len 15"),
        (b"\x26\0\0\0", 6, "malformed reply: reply is 4 bytes"),
        (OSError(errno.EAGAIN, "Resource temporarily unavailable"), 4, "no reply from the kernel within 0.5 s"),
        (OSError(errno.ENOBUFS, "No buffer space available"), 5, "recv failed: ENOBUFS"),
    ],
)
def test_stops_at_first_error(fake_stats, bad, code, message):
    fake_stats["sock"] = FakeStatsSocket([kernel_reply(), kernel_reply(padded=True), bad, kernel_reply()])
    out, err = io.StringIO(), io.StringIO()
    assert ns.main(["--count", "10", "--timeout", "0.5"], stdout=out, stderr=err) == code
    assert err.getvalue().startswith(f"netlink_stats: {message}") and err.getvalue().count("\n") == 1
    doc = json.loads(out.getvalue())
    assert doc["messages"] == 2 and doc["p50_us"] is not None
    assert len(fake_stats["sock"].frames) == 3 and fake_stats["sock"].closed


def test_send_error_is_exit_5(fake_stats):
    sock = fake_stats["sock"]

    def failing_send(frame):
        raise OSError(errno.ECONNREFUSED, "Connection refused")

    sock.send = failing_send
    out, err = io.StringIO(), io.StringIO()
    assert ns.main(["--count", "3"], stdout=out, stderr=err) == 5
    assert "send failed: ECONNREFUSED" in err.getvalue()
    assert json.loads(out.getvalue())["messages"] == 0


def test_setsockopt_error_is_exit_5(fake_stats):
    sock = fake_stats["sock"]

    def failing_setsockopt(level, name, value):
        raise OSError(errno.EINVAL, "Invalid argument")

    sock.setsockopt = failing_setsockopt
    out, err = io.StringIO(), io.StringIO()
    assert ns.main(["--count", "3"], stdout=out, stderr=err) == 5
    assert "setsockopt/connect failed: EINVAL" in err.getvalue()
    assert json.loads(out.getvalue())["messages"] == 0 and sock.closed and sock.frames == []


def test_timed_round_trips_fills_latencies():
    sock = FakeStatsSocket()
    sock.connect((0, 0))
    lat = [0] * 5
    done, wall, error = ns.timed_round_trips(sock, b"f" * 1040, 5, lat)
    assert (done, error) == (5, None)
    assert all(v > 0 for v in lat) and wall >= sum(lat)


# ------------------------------------------------------------ real sockets


def test_module_not_loaded_gives_exit_3():
    if netlink_available(30) != errno.EPROTONOSUPPORT:
        pytest.skip("protocol 30 does not fail with EPROTONOSUPPORT here")
    out, err = io.StringIO(), io.StringIO()
    assert ns.main(["--count", "3"], stdout=out, stderr=err) == sys.modules["netlink_client"].EXIT_NOT_LOADED == 3
    assert json.loads(out.getvalue())["messages"] == 0
    assert "is netlink_kernel.ko loaded?" in err.getvalue()


def test_real_timeout_uses_so_rcvtimeo():
    # rtnetlink ignores a type-0 message without NLM_F_REQUEST: the blocking recv must time out.
    if netlink_available(0):
        pytest.skip("no NETLINK_ROUTE socket here")
    out, err = io.StringIO(), io.StringIO()
    rc = ns.run_stats(2, ns.HELLO.encode(), 0.2, "python", out, err, protocol=0)
    assert rc == ns.EXIT_TIMEOUT
    doc = json.loads(out.getvalue())
    assert doc["messages"] == 0 and 0.15 < doc["seconds"] < 5
    assert "no reply from the kernel within 0.2 s" in err.getvalue()


def test_real_nlmsg_error_reply_is_malformed():
    # rtnetlink answers NLM_F_REQUEST|NLM_F_ACK with NLMSG_ERROR: the loop's type check must catch it.
    if netlink_available(0):
        pytest.skip("no NETLINK_ROUTE socket here")
    sock, port = ns.open_socket(0, timeout=None)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, struct.pack("@ll", 2, 0))
        sock.connect((0, 0))
        lat = [0] * 3
        done, _, error = ns.timed_round_trips(sock, ns.pack_msg(b"", port, flags=0x1 | 0x4, exact=True), 3, lat)
    finally:
        sock.close()
    assert done == 0 and error.code == ns.EXIT_MALFORMED
    assert "NLMSG_ERROR" in error.message


# ------------------------------------------------------------ where it finds the client


def _run(script, *args, cwd):
    return subprocess.run([sys.executable, "-B", str(script), *args], capture_output=True, text=True,
                          cwd=str(cwd), timeout=60)


def test_runs_from_the_repository(tmp_path):
    res = _run(STATS_PATH, "--help", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert res.stdout.startswith("usage: netlink_stats ") and "--client-name" in res.stdout


def test_runs_next_to_a_copy_of_the_client_and_prefers_it(tmp_path):
    # the bench's guest layout: both files in one directory. A ../userspace
    # next to it must not win over the copy beside the script.
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    shutil.copy(STATS_PATH, run_dir)
    shutil.copy(CLIENT_PATH, run_dir)
    decoy = tmp_path / "userspace"
    decoy.mkdir()
    (decoy / "netlink_client.py").write_text('raise SystemExit("the ../userspace client was imported")\n')
    res = _run(run_dir / "netlink_stats.py", "--help", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert "--count N" in res.stdout
    res = _run(run_dir / "netlink_stats.py", "--count", "0", cwd=tmp_path)
    assert res.returncode == 2 and "usage: netlink_stats" in res.stderr

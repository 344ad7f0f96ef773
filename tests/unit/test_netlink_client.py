"""Unit tests for userspace/netlink_client.py that need no kernel module.

The client is loaded from its file path (it is not a package), so this file
needs no conftest.py. Netlink sockets are replaced by a fake where a kernel
reply is needed; the EPROTONOSUPPORT and timeout checks use real sockets.
"""

import errno
import importlib.util
import io
import json
import socket
import struct
import sys
from pathlib import Path

import pytest

CLIENT_PATH = Path(__file__).resolve().parents[2] / "userspace" / "netlink_client.py"


def _load_client():
    spec = importlib.util.spec_from_file_location("netlink_client", str(CLIENT_PATH))
    module = importlib.util.module_from_spec(spec)
    saved = sys.dont_write_bytecode
    sys.dont_write_bytecode = True  # leave no __pycache__ in userspace/
    try:
        spec.loader.exec_module(module)
    finally:
        sys.dont_write_bytecode = saved
    return module


nc = _load_client()

HDR = "=IHHII"
KERNEL_TEXT = b"Hello msg from kernel\0"  # 22 bytes, NUL included


def kernel_reply(padded=False, msg_type=3, length=None, payload=KERNEL_TEXT):
    """The module's reply as userspace receives it (nlmsg_len 38).

    The kernel's skb holds NLMSG_ALIGN(38) = 40 bytes, so recv() returns 40;
    padded=False gives the bare 38 bytes.
    """
    if length is None:
        length = 16 + len(payload)
    data = struct.pack(HDR, length, msg_type, 0, 0, 0) + payload
    if padded:
        data += b"\0" * (nc.NLMSG_ALIGN(len(data)) - len(data))
    return data


def netlink_available(protocol):
    try:
        sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, protocol)
    except OSError as exc:
        return exc.errno
    sock.close()
    return 0


# ------------------------------------------------------------ framing


def test_header_layout_and_macros():
    assert nc.NLMSG_HDR.format in ("=IHHII", b"=IHHII")
    assert nc.NLMSG_HDR.size == struct.calcsize(HDR) == 16
    assert nc.NLMSG_HDRLEN == 16
    assert [nc.NLMSG_ALIGN(n) for n in (0, 1, 3, 4, 5, 37, 38, 40)] == [0, 4, 4, 4, 8, 40, 40, 40]
    assert nc.NLMSG_LENGTH(22) == 38
    assert nc.NLMSG_SPACE(22) == 40
    assert nc.NLMSG_SPACE(1024) == 1040
    assert nc.NLMSG_DONE == 3


def test_pack_default_frame_is_the_blogs_1040_bytes():
    text = b"Hello this is a msg from userspace"
    frame = nc.pack_msg(text, pid=4242)
    assert len(frame) == 1040
    assert struct.unpack_from(HDR, frame) == (1040, 0, 0, 0, 4242)
    assert frame[:16] == struct.pack(HDR, 1040, 0, 0, 0, 4242)
    assert frame[16:16 + len(text)] == text
    assert frame[16 + len(text):] == b"\0" * (1040 - 16 - len(text))


def test_pack_header_fields():
    frame = nc.pack_msg(b"x", pid=7, seq=9, msg_type=0x10, flags=0x5)
    assert struct.unpack_from(HDR, frame) == (1040, 0x10, 0x5, 9, 7)


def test_pack_default_frame_limits():
    assert len(nc.pack_msg(b"a" * 1023, pid=1)) == 1040
    with pytest.raises(ValueError):
        nc.pack_msg(b"a" * 1024, pid=1)


@pytest.mark.parametrize("size", [0, 1, 2, 3, 4, 5, 34, 1023, 1024, 5000])
def test_pack_exact_frame(size):
    payload = b"p" * size
    frame = nc.pack_msg(payload, pid=3, exact=True)
    expected = nc.NLMSG_LENGTH(size + 1)
    assert len(frame) == expected == 16 + size + 1
    assert struct.unpack_from(HDR, frame)[0] == expected
    # the payload starts right after the (already aligned) header
    assert nc.NLMSG_ALIGN(16) == 16
    assert frame[16:] == payload + b"\0"
    # one message fills the frame: its aligned end covers the whole buffer
    assert expected <= nc.NLMSG_ALIGN(expected) < expected + 4


def test_pack_exact_hello_length():
    frame = nc.pack_msg(nc.HELLO.encode(), pid=1, exact=True)
    assert len(frame) == 51 and nc.NLMSG_ALIGN(len(frame)) == 52


# ------------------------------------------------------------ replies


@pytest.mark.parametrize("padded", [False, True])
def test_unpack_kernel_reply(padded):
    data = kernel_reply(padded=padded)
    assert len(data) == (40 if padded else 38)
    msg = nc.parse_reply(data)
    assert (msg.len, msg.type, msg.flags, msg.seq, msg.pid) == (38, 3, 0, 0, 0)
    assert msg.payload == KERNEL_TEXT and len(msg.payload) == 22
    assert nc.payload_text(msg.payload) == "Hello msg from kernel"
    assert nc.msg_to_dict(msg) == {
        "len": 38, "type": 3, "flags": 0, "seq": 0, "pid": 0,
        "payload": "Hello msg from kernel",
    }


def test_unpack_blog_reply_without_nul():
    # the blog's module: nlmsg_len 37, no NUL, padded to 40 by the kernel
    data = struct.pack(HDR, 37, 3, 0, 0, 0) + b"Hello msg from kernel" + b"\0" * 3
    msg = nc.parse_reply(data)
    assert msg.len == 37 and msg.payload == b"Hello msg from kernel"
    assert nc.payload_text(msg.payload) == "Hello msg from kernel"


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\x26\x00\x00\x00",  # 4 bytes: only nlmsg_len
        struct.pack(HDR, 38, 3, 0, 0, 0)[:15],  # one byte short of a header
        struct.pack(HDR, 15, 3, 0, 0, 0) + KERNEL_TEXT,  # nlmsg_len below header
        struct.pack(HDR, 0, 3, 0, 0, 0),
        struct.pack(HDR, 39, 3, 0, 0, 0) + KERNEL_TEXT,  # nlmsg_len beyond data
        struct.pack(HDR, 0xFFFFFFFF, 3, 0, 0, 0),
    ],
)
def test_malformed_lengths(data):
    with pytest.raises(nc.MalformedReply):
        nc.unpack_msg(data)
    with pytest.raises(nc.MalformedReply):
        nc.parse_reply(data)


def test_header_only_message_is_well_formed():
    msg = nc.parse_reply(struct.pack(HDR, 16, 3, 0, 0, 0))
    assert msg.payload == b"" and nc.payload_text(msg.payload) == ""


def test_wrong_type_is_malformed():
    data = kernel_reply(msg_type=0)
    assert nc.unpack_msg(data).type == 0  # structurally fine
    with pytest.raises(nc.MalformedReply, match="type 0"):
        nc.parse_reply(data)


def test_nlmsg_error_reply_is_malformed_and_explained():
    err = struct.pack("=i", -errno.EPERM) + struct.pack(HDR, 16, 0, 0, 0, 0)
    data = struct.pack(HDR, 16 + len(err), 2, 0, 0, 0) + err
    with pytest.raises(nc.MalformedReply, match="NLMSG_ERROR, error -1 EPERM"):
        nc.parse_reply(data)


def test_payload_text():
    assert nc.payload_text(b"abc\0def") == "abc"
    assert nc.payload_text(b"abc") == "abc"
    assert nc.payload_text(b"\0abc") == ""
    assert nc.payload_text(b"\xff\0") == "\ufffd"


# ------------------------------------------------------------ arguments


@pytest.mark.parametrize(
    "argv",
    [
        ["--count", "0"],
        ["--count", "-3"],
        ["--count", "abc"],
        ["--count"],
        ["--count", "2.5"],
        ["--message"],
        ["--message", "a" * 1024],
        ["--message", "\u00e9" * 512],  # 1024 bytes in UTF-8
        ["--timeout", "0"],
        ["--timeout", "-1"],
        ["--timeout", "soon"],
        ["--protocol", "32"],
        ["--protocol", "-1"],
        ["--bogus"],
        ["extra-positional"],
    ],
)
def test_usage_errors_exit_2(argv, capsys):
    assert nc.main(argv) == nc.EXIT_USAGE == 2
    assert "usage:" in capsys.readouterr().err


def test_help_lists_exit_codes(capsys):
    assert nc.main(["--help"]) == 0
    out = capsys.readouterr().out
    for code in ("3 ", "4 ", "5 ", "6 "):
        assert "\n  " + code in out
    assert "EPROTONOSUPPORT" in out


def test_exit_code_constants():
    assert (nc.EXIT_OK, nc.EXIT_USAGE, nc.EXIT_NOT_LOADED, nc.EXIT_TIMEOUT,
            nc.EXIT_OS_ERROR, nc.EXIT_MALFORMED) == (0, 2, 3, 4, 5, 6)


def test_parse_args_modes():
    args = nc.parse_args([])
    assert args.interactive and args.payload == nc.HELLO.encode()
    assert args.protocol == 30 and args.timeout == 5.0 and not args.exact
    assert not nc.parse_args(["-n"]).interactive
    assert not nc.parse_args(["--count", "3"]).interactive
    args = nc.parse_args(["--message", "hi"])
    assert not args.interactive and args.payload == b"hi"
    assert nc.parse_args(["--message", "a" * 1023]).payload == b"a" * 1023
    assert len(nc.parse_args(["--message", "a" * 2000, "--exact"]).payload) == 2000
    assert nc.parse_args(["--protocol", "0x1e"]).protocol == 30


# ------------------------------------------------------------ real sockets


def test_module_not_loaded_gives_exit_3():
    probe = netlink_available(30)
    if probe == 0:
        pytest.skip("something serves netlink protocol 30 on this host")
    assert probe == errno.EPROTONOSUPPORT
    out, err = io.StringIO(), io.StringIO()
    assert nc.main(["-n", "--json"], stdout=out, stderr=err) == nc.EXIT_NOT_LOADED == 3
    doc = json.loads(out.getvalue())
    message = ("netlink protocol 30 is not available (EPROTONOSUPPORT): "
               "is netlink_kernel.ko loaded?")
    assert doc == {"port": None, "sent": 0, "received": 0, "replies": [], "errors": [message]}
    assert message in err.getvalue()


def test_module_not_loaded_human_output():
    if netlink_available(30) != errno.EPROTONOSUPPORT:
        pytest.skip("protocol 30 does not fail with EPROTONOSUPPORT here")
    out, err = io.StringIO(), io.StringIO()
    assert nc.main([], stdout=out, stderr=err) == 3
    assert out.getvalue() == ""
    assert "is netlink_kernel.ko loaded?" in err.getvalue()


def test_real_timeout_on_netlink_route():
    # rtnetlink ignores a type-0 message without NLM_F_REQUEST: no reply.
    if netlink_available(0):
        pytest.skip("no NETLINK_ROUTE socket here")
    out, err = io.StringIO(), io.StringIO()
    rc = nc.main(["--protocol", "0", "-n", "--timeout", "0.2", "--json"], stdout=out, stderr=err)
    assert rc == nc.EXIT_TIMEOUT
    doc = json.loads(out.getvalue())
    assert doc["sent"] == 1 and doc["received"] == 0 and doc["port"] > 0
    assert doc["errors"] == ["no reply from the kernel within 0.2 s"]


def test_real_nlmsg_error_reply_is_malformed():
    # rtnetlink answers NLM_F_REQUEST|NLM_F_ACK with an NLMSG_ERROR ack.
    if netlink_available(0):
        pytest.skip("no NETLINK_ROUTE socket here")
    sock, port = nc.open_socket(0, timeout=2)
    try:
        nc.send_msg(sock, nc.pack_msg(b"", port, flags=0x1 | 0x4, exact=True))
        with pytest.raises(nc.ClientError) as info:
            nc.recv_reply(sock, 2)
    finally:
        sock.close()
    assert info.value.code == nc.EXIT_MALFORMED
    assert "NLMSG_ERROR" in info.value.message


# ------------------------------------------------------------ fake kernel


class FakeSocket:
    """Answers every frame like the module would (or as told)."""

    def __init__(self, replies=None, port=4321):
        self.port = port
        self.frames = []
        self.replies = list(replies) if replies is not None else None
        self.closed = False

    def settimeout(self, value):
        self.timeout = value

    def sendto(self, frame, addr):
        assert addr == (0, 0)
        self.frames.append(bytes(frame))
        return len(frame)

    def recvfrom(self, size):
        if self.replies is None:
            return kernel_reply(padded=True), (0, 0)
        if not self.replies:
            raise socket.timeout("timed out")
        item = self.replies.pop(0)
        if isinstance(item, BaseException):
            raise item
        return item

    def close(self):
        self.closed = True


@pytest.fixture
def fake(monkeypatch):
    holder = {}

    def fake_open(protocol=30, timeout=5.0):
        sock = holder.setdefault("sock", FakeSocket())
        return sock, sock.port

    monkeypatch.setattr(nc, "open_socket", fake_open)
    return holder


def test_default_run_prints_the_blogs_lines(fake):
    fake["sock"] = FakeSocket()
    out, err = io.StringIO(), io.StringIO()
    stdin = io.BytesIO(b"first\nsecond line\r\n" + b"x" * 1024 + b"\n" + b"y" * 1023)
    assert nc.main([], stdin=stdin, stdout=out, stderr=err) == 0
    prompt = "Input your msg for sending to kernel: "
    assert out.getvalue().split("\n") == [
        "Sending message to kernel",
        "send ret: 1040",
        "Waiting for message from kernel",
        "Received message payload: Hello msg from kernel",
        prompt + 'Sending message " first " to kernel',
        "send ret: 1040",
        "Waiting for message from kernel",
        "Received message payload: Hello msg from kernel",
        prompt + 'Sending message " second line " to kernel',
        "send ret: 1040",
        "Waiting for message from kernel",
        "Received message payload: Hello msg from kernel",
        prompt + prompt + 'Sending message " ' + "y" * 1023 + ' " to kernel',
        "send ret: 1040",
        "Waiting for message from kernel",
        "Received message payload: Hello msg from kernel",
        prompt,
        "",
    ]
    assert "message too long (1024 bytes, max 1023): skipped" in err.getvalue()
    frames = fake["sock"].frames
    assert len(frames) == 4 and all(len(f) == 1040 for f in frames)
    assert all(struct.unpack_from(HDR, f) == (1040, 0, 0, 0, 4321) for f in frames)
    assert frames[1][16:22] == b"first\0"
    assert frames[2][16:28] == b"second line\0"
    assert fake["sock"].closed


def test_count_json_keeps_few_replies(fake):
    fake["sock"] = FakeSocket()
    out = io.StringIO()
    assert nc.main(["--count", "25", "--json", "--message", "m"], stdout=out) == 0
    text = out.getvalue()
    assert text.count("\n") == 1
    doc = json.loads(text)
    assert doc["port"] == 4321 and doc["sent"] == 25 and doc["received"] == 25
    assert doc["errors"] == []
    assert len(doc["replies"]) == nc.JSON_MAX_REPLIES
    assert doc["replies"][0] == {"len": 38, "type": 3, "flags": 0, "seq": 0, "pid": 0,
                                 "payload": "Hello msg from kernel"}
    assert all(f[16:18] == b"m\0" for f in fake["sock"].frames)


def test_quiet_count_prints_summary_only(fake):
    fake["sock"] = FakeSocket()
    out = io.StringIO()
    assert nc.main(["-q", "-c", "3"], stdout=out) == 0
    assert out.getvalue() == "sent 3 received 3\n"


def test_exact_frames(fake):
    fake["sock"] = FakeSocket()
    out = io.StringIO()
    assert nc.main(["-n", "--exact", "--json"], stdout=out) == 0
    (frame,) = fake["sock"].frames
    assert len(frame) == 51 and struct.unpack_from(HDR, frame)[0] == 51


def test_foreign_sender_ignored_then_reply(fake):
    fake["sock"] = FakeSocket([(b"junk", (999, 0)), (kernel_reply(), (0, 0))])
    out = io.StringIO()
    assert nc.main(["-n", "--json"], stdout=out) == 0
    assert json.loads(out.getvalue())["received"] == 1


def test_no_reply_is_exit_4(fake):
    fake["sock"] = FakeSocket([])
    out, err = io.StringIO(), io.StringIO()
    assert nc.main(["-n", "--json", "--timeout", "0.5"], stdout=out, stderr=err) == 4
    doc = json.loads(out.getvalue())
    assert doc["sent"] == 1 and doc["received"] == 0
    assert doc["errors"] == ["no reply from the kernel within 0.5 s"]
    assert "no reply" in err.getvalue()


def test_malformed_reply_is_exit_6(fake):
    fake["sock"] = FakeSocket([(kernel_reply(length=60), (0, 0))])
    out, err = io.StringIO(), io.StringIO()
    assert nc.main(["-n", "--json"], stdout=out, stderr=err) == 6
    doc = json.loads(out.getvalue())
    assert doc["received"] == 0 and doc["errors"][0].startswith("malformed reply: ")


def test_socket_error_is_exit_5_with_errno_name(fake):
    fake["sock"] = FakeSocket([OSError(errno.ENOBUFS, "No buffer space available")])
    out, err = io.StringIO(), io.StringIO()
    assert nc.main(["-c", "2"], stdout=out, stderr=err) == 5
    assert "recvfrom failed: ENOBUFS" in err.getvalue()
    assert out.getvalue().endswith("sent 1 received 0\n")


def test_count_stops_at_first_error(fake):
    fake["sock"] = FakeSocket([(kernel_reply(), (0, 0)), (kernel_reply(msg_type=2), (0, 0))])
    out = io.StringIO()
    assert nc.main(["-c", "5", "--json"], stdout=out, stderr=io.StringIO()) == 6
    doc = json.loads(out.getvalue())
    assert (doc["sent"], doc["received"], len(doc["errors"])) == (2, 1, 1)


# ------------------------------------------------------------ --stats


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
    assert nc.percentile(values, p) == expected


def test_percentile_edges():
    assert nc.percentile([], 50) is None
    for bad in (0, -1, 100.5, 101):
        with pytest.raises(ValueError):
            nc.percentile([1, 2, 3], bad)


def test_percentile_matches_definition():
    # the smallest value with at least p% of the values at or below it
    import random

    rng = random.Random(1)
    for n in (1, 2, 3, 7, 99, 100, 101, 1000, 9999):
        values = sorted(rng.randrange(1000) for _ in range(n))
        for p in (1, 10, 50, 90, 99, 100):
            got = nc.percentile(values, p)
            assert sum(v <= got for v in values) * 100 >= p * n
            below = [v for v in values if v < got]
            assert len(below) * 100 < p * n


def test_stats_doc():
    lat = [3000, 1000, 2000, 4000] * 25  # 100 round trips, in ns
    doc = nc.stats_doc("python", lat, 2_000_000_000)
    assert list(doc) == ["client", "messages", "seconds", "msgs_per_s", "p50_us", "p99_us", "max_us"]
    assert doc == {"client": "python", "messages": 100, "seconds": 2.0, "msgs_per_s": 50.0,
                   "p50_us": 2.0, "p99_us": 4.0, "max_us": 4.0}
    assert lat[:4] == [3000, 1000, 2000, 4000]  # not sorted in place
    empty = nc.stats_doc("c", [], 0)
    assert empty == {"client": "c", "messages": 0, "seconds": 0.0, "msgs_per_s": 0.0,
                     "p50_us": None, "p99_us": None, "max_us": None}


@pytest.mark.parametrize(
    "argv",
    [
        ["--stats"],
        ["--stats", "--message", "m"],
        ["--stats", "-n"],
        ["--stats", "--count", "0"],
        ["--stats", "--count", "10", "--json"],
    ],
)
def test_stats_usage_errors(argv, capsys):
    assert nc.main(argv) == nc.EXIT_USAGE
    err = capsys.readouterr().err
    assert "usage:" in err


def test_stats_requires_count_message(capsys):
    assert nc.main(["--stats", "-m", "x"]) == 2
    assert "--stats requires --count" in capsys.readouterr().err


def test_stats_option_parsed():
    args = nc.parse_args(["--count", "5", "--stats", "-m", "ping"])
    assert args.stats and args.count == 5 and args.payload == b"ping" and not args.interactive
    assert not nc.parse_args(["--count", "5"]).stats


class FakeStatsSocket:
    """A connected netlink socket to a fake module, for the --stats path."""

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
        assert timeout is None  # blocking socket: SO_RCVTIMEO does the timeout
        return holder["sock"], holder["sock"].port

    monkeypatch.setattr(nc, "open_socket", fake_open)
    return holder


def test_stats_line(fake_stats):
    out, err = io.StringIO(), io.StringIO()
    assert nc.main(["--count", "50", "--stats", "-m", "ping", "-t", "2.5"], stdout=out, stderr=err) == 0
    assert err.getvalue() == ""
    text = out.getvalue()
    assert text.count("\n") == 1
    doc = json.loads(text)
    assert list(doc) == ["client", "messages", "seconds", "msgs_per_s", "p50_us", "p99_us", "max_us"]
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


def test_stats_exact_frames(fake_stats):
    out = io.StringIO()
    assert nc.main(["-c", "2", "--stats", "--exact"], stdout=out) == 0
    assert [len(f) for f in fake_stats["sock"].frames] == [51, 51]


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
def test_stats_stops_at_first_error(fake_stats, bad, code, message):
    fake_stats["sock"] = FakeStatsSocket([kernel_reply(), kernel_reply(padded=True), bad, kernel_reply()])
    out, err = io.StringIO(), io.StringIO()
    assert nc.main(["-c", "10", "--stats", "-t", "0.5"], stdout=out, stderr=err) == code
    assert message in err.getvalue()
    doc = json.loads(out.getvalue())
    assert doc["messages"] == 2 and doc["p50_us"] is not None
    assert len(fake_stats["sock"].frames) == 3 and fake_stats["sock"].closed


def test_stats_send_error_is_exit_5(fake_stats):
    sock = fake_stats["sock"]

    def failing_send(frame):
        raise OSError(errno.ECONNREFUSED, "Connection refused")

    sock.send = failing_send
    out, err = io.StringIO(), io.StringIO()
    assert nc.main(["-c", "3", "--stats"], stdout=out, stderr=err) == 5
    assert "send failed: ECONNREFUSED" in err.getvalue()
    assert json.loads(out.getvalue())["messages"] == 0


def test_timed_round_trips_fills_latencies():
    sock = FakeStatsSocket()
    sock.connect((0, 0))
    lat = [0] * 5
    done, wall, error = nc.timed_round_trips(sock, b"f" * 1040, 5, lat)
    assert (done, error) == (5, None)
    assert all(v > 0 for v in lat) and wall >= sum(lat)


def test_stats_module_not_loaded_gives_exit_3():
    if netlink_available(30) != errno.EPROTONOSUPPORT:
        pytest.skip("protocol 30 does not fail with EPROTONOSUPPORT here")
    out, err = io.StringIO(), io.StringIO()
    assert nc.main(["-c", "3", "--stats"], stdout=out, stderr=err) == 3
    assert json.loads(out.getvalue())["messages"] == 0
    assert "is netlink_kernel.ko loaded?" in err.getvalue()


def test_stats_real_timeout_uses_so_rcvtimeo():
    # rtnetlink ignores a type-0 message without NLM_F_REQUEST: the blocking recv must time out.
    if netlink_available(0):
        pytest.skip("no NETLINK_ROUTE socket here")
    out, err = io.StringIO(), io.StringIO()
    rc = nc.main(["--protocol", "0", "-c", "2", "--stats", "--timeout", "0.2"], stdout=out, stderr=err)
    assert rc == nc.EXIT_TIMEOUT
    doc = json.loads(out.getvalue())
    assert doc["messages"] == 0 and 0.15 < doc["seconds"] < 5
    assert "no reply from the kernel within 0.2 s" in err.getvalue()


def test_stats_real_nlmsg_error_reply_is_malformed():
    # rtnetlink answers NLM_F_REQUEST|NLM_F_ACK with NLMSG_ERROR: the loop's type check must catch it.
    if netlink_available(0):
        pytest.skip("no NETLINK_ROUTE socket here")
    sock, port = nc.open_socket(0, timeout=None)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, struct.pack("@ll", 2, 0))
        sock.connect((0, 0))
        lat = [0] * 3
        done, _, error = nc.timed_round_trips(sock, nc.pack_msg(b"", port, flags=0x1 | 0x4, exact=True), 3, lat)
    finally:
        sock.close()
    assert done == 0 and error.code == nc.EXIT_MALFORMED
    assert "NLMSG_ERROR" in error.message

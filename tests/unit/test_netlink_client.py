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
import subprocess
import sys
from pathlib import Path

import pytest

CLIENT_PATH = Path(__file__).resolve().parents[2] / "userspace" / "netlink_client.py"
STATS_PATH = CLIENT_PATH.parents[1] / "bench" / "netlink_stats.py"


def _load_client():
    spec = importlib.util.spec_from_file_location("netlink_client", str(CLIENT_PATH))
    assert spec is not None and spec.loader is not None, CLIENT_PATH
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


def test_help_offers_no_stats_mode(capsys):
    # timing round trips moved to bench/netlink_stats.py (issue 11)
    assert nc.main(["--help"]) == 0
    out = capsys.readouterr().out
    assert "--stats" not in out and "p99" not in out
    assert nc.main(["--count", "3", "--stats"]) == nc.EXIT_USAGE
    assert "unrecognized arguments: --stats" in capsys.readouterr().err
    assert not hasattr(nc, "run_stats") and not hasattr(nc, "percentile")


def test_netlink_stats_help_works():
    res = subprocess.run([sys.executable, "-B", str(STATS_PATH), "--help"], capture_output=True, text=True,
                         timeout=60)
    assert res.returncode == 0, res.stderr
    assert "--count N" in res.stdout and "--client-name" in res.stdout
    assert res.stdout.startswith("usage: netlink_stats ")


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
    holder: dict[str, FakeSocket] = {}

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

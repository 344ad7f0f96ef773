#!/usr/bin/env python3
"""Talk to netlink_kernel.ko over netlink protocol 30 (Python port of netlink_client.c).

Standard library only; runs on Python 3.9+ (the guest's python3).

Without options it behaves like the blog's client: it sends
"Hello this is a msg from userspace", prints the kernel's reply, then sends
every line read from stdin until end of input. --message, --count and
--no-interactive script it instead, and --json prints one JSON object at the
end (the harness runs it with --no-interactive --json).

It does not time round trips: bench/netlink_stats.py does (the C client's -s),
importing the wire-format helpers from here.

The pure helpers (pack_msg, unpack_msg, parse_reply, payload_text,
build_parser) need no kernel and are meant to be imported by unit tests.
"""

from __future__ import annotations

import argparse
import errno
import json
import os
import socket
import struct
import sys
import time
from collections import namedtuple
from collections.abc import Sequence
from typing import IO

# ---------------------------------------------------------------- constants

NETLINK_USER = 30  # the module's protocol number
MAX_PAYLOAD = 1024  # payload room of the blog's frames, NUL included
MAX_MESSAGE = MAX_PAYLOAD - 1  # longest text that fits with its NUL
MAX_LINKS = 32  # netlink protocol numbers are 0..31

NLMSG_HDR = struct.Struct("=IHHII")  # struct nlmsghdr: len, type, flags, seq, pid
NLMSG_ALIGNTO = 4
NLMSG_NOOP = 1
NLMSG_ERROR = 2
NLMSG_DONE = 3

HELLO = "Hello this is a msg from userspace"
PROMPT = "Input your msg for sending to kernel: "
RECV_BUFSIZE = 65536  # replies are 40 bytes; never truncate anything
JSON_MAX_REPLIES = 10  # --json keeps the first few replies, and counts all

# Exit codes (also listed in --help).
EXIT_OK = 0
EXIT_USAGE = 2  # argparse's own code for bad arguments
EXIT_NOT_LOADED = 3  # socket() said EPROTONOSUPPORT: module not loaded
EXIT_TIMEOUT = 4  # no reply before --timeout
EXIT_OS_ERROR = 5  # any other socket/OS error
EXIT_MALFORMED = 6  # reply too short, inconsistent nlmsg_len, or not NLMSG_DONE

EXIT_CODES_HELP = """exit codes:
  0  ok
  2  usage error
  3  netlink protocol not available (EPROTONOSUPPORT): netlink_kernel.ko not loaded
  4  no reply from the kernel before the timeout
  5  other socket/OS error
  6  malformed reply (short, bad nlmsg_len, or type not NLMSG_DONE)
"""


# The helpers below keep the names of the C macros they mirror.
def NLMSG_ALIGN(n: int) -> int:
    return (n + NLMSG_ALIGNTO - 1) & ~(NLMSG_ALIGNTO - 1)


NLMSG_HDRLEN = NLMSG_ALIGN(NLMSG_HDR.size)  # 16


def NLMSG_LENGTH(n: int) -> int:
    return n + NLMSG_HDRLEN


def NLMSG_SPACE(n: int) -> int:
    return NLMSG_ALIGN(NLMSG_LENGTH(n))


NlMsg = namedtuple("NlMsg", "len type flags seq pid payload")


class MalformedReply(ValueError):
    """The bytes received are not a usable netlink message."""


class ClientError(Exception):
    """A fatal error, carrying the exit code main() returns for it."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


# ---------------------------------------------------------- pure helpers


def pack_msg(payload: bytes, pid: int, seq: int = 0, msg_type: int = 0, flags: int = 0, exact: bool = False) -> bytes:
    """Build one request frame: a header and the NUL-terminated payload.

    By default the frame is the blog's: NLMSG_SPACE(1024) = 1040 bytes with
    nlmsg_len 1040 and the payload zero-padded, so the payload must be at most
    1023 bytes. With exact=True the frame is NLMSG_LENGTH(len(payload) + 1)
    bytes long (nlmsg_len equal to it, not padded), for any payload length.
    """
    payload = bytes(payload)
    if exact:
        length = NLMSG_LENGTH(len(payload) + 1)
    elif len(payload) > MAX_MESSAGE:
        raise ValueError(f"payload is {len(payload)} bytes, at most {MAX_MESSAGE} fit in NLMSG_SPACE({MAX_PAYLOAD})")
    else:
        length = NLMSG_SPACE(MAX_PAYLOAD)
    header = NLMSG_HDR.pack(length, msg_type, flags, seq, pid)
    body = payload + b"\0"
    return header + body + b"\0" * (length - NLMSG_HDRLEN - len(body))


def unpack_msg(data: bytes) -> NlMsg:
    """Parse the first netlink message in data, checking its lengths.

    Raises MalformedReply when data is shorter than a header, or when
    nlmsg_len is below the header size or beyond the data. The payload is
    the nlmsg_len - 16 bytes after the header (bytes beyond nlmsg_len, such
    as alignment padding or further messages, are ignored).
    """
    data = bytes(data)
    if len(data) < NLMSG_HDRLEN:
        raise MalformedReply(f"reply is {len(data)} bytes, shorter than a {NLMSG_HDRLEN}-byte netlink header")
    length, msg_type, flags, seq, pid = NLMSG_HDR.unpack_from(data)
    if length < NLMSG_HDRLEN:
        raise MalformedReply(f"reply nlmsg_len {length} is shorter than the {NLMSG_HDRLEN}-byte header")
    if length > len(data):
        raise MalformedReply(f"reply nlmsg_len {length} is larger than the {len(data)} bytes received")
    return NlMsg(length, msg_type, flags, seq, pid, data[NLMSG_HDRLEN:length])


def parse_reply(data: bytes) -> NlMsg:
    """unpack_msg() plus the module's contract: the reply is NLMSG_DONE."""
    msg = unpack_msg(data)
    if msg.type != NLMSG_DONE:
        detail = ""
        if msg.type == NLMSG_ERROR and len(msg.payload) >= 4:
            (err,) = struct.unpack_from("=i", msg.payload)
            detail = f" (NLMSG_ERROR, error {err}{_errno_suffix(-err)})"
        raise MalformedReply(f"reply type {msg.type}{detail}, expected NLMSG_DONE ({NLMSG_DONE})")
    return msg


def payload_text(payload: bytes) -> str:
    """The payload up to its first NUL, decoded for printing."""
    return bytes(payload).split(b"\0", 1)[0].decode("utf-8", errors="replace")


def msg_to_dict(msg: NlMsg) -> dict:
    return {
        "len": msg.len,
        "type": msg.type,
        "flags": msg.flags,
        "seq": msg.seq,
        "pid": msg.pid,
        "payload": payload_text(msg.payload),
    }


def _errno_suffix(num: int) -> str:
    name = errno.errorcode.get(num)
    return f" {name}" if name else ""


def describe_oserror(operation: str, exc: OSError) -> str:
    """'sendto failed: EMSGSIZE (Message too long)'."""
    num = exc.errno
    name = errno.errorcode.get(num, f"errno {num}") if num is not None else "error"
    text = os.strerror(num) if num is not None else str(exc)
    return f"{operation} failed: {name} ({text})"


# ---------------------------------------------------------- socket side


def open_socket(protocol: int = NETLINK_USER, timeout: float | None = 5.0):
    """Open and bind a netlink socket; return (socket, port).

    The socket is bound to port 0 so that the kernel picks a free port, which
    getsockname() reports (binding os.getpid() fails with EADDRINUSE when that
    port is already in use).
    """
    try:
        sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, protocol)
    except OSError as exc:
        if exc.errno == errno.EPROTONOSUPPORT:
            raise ClientError(
                EXIT_NOT_LOADED,
                f"netlink protocol {protocol} is not available (EPROTONOSUPPORT): is netlink_kernel.ko loaded?",
            ) from exc
        raise ClientError(EXIT_OS_ERROR, describe_oserror(f"socket(AF_NETLINK, SOCK_RAW, {protocol})", exc)) from exc
    try:
        sock.bind((0, 0))
        port = sock.getsockname()[0]
        sock.settimeout(timeout)
    except OSError as exc:
        sock.close()
        raise ClientError(EXIT_OS_ERROR, describe_oserror("bind/getsockname", exc)) from exc
    return sock, port


def send_msg(sock: socket.socket, frame: bytes) -> int:
    """Send one frame to the kernel (port 0, no groups); return bytes sent."""
    try:
        return sock.sendto(frame, (0, 0))
    except socket.timeout as exc:
        raise ClientError(EXIT_OS_ERROR, "sendto timed out") from exc
    except OSError as exc:
        raise ClientError(EXIT_OS_ERROR, describe_oserror("sendto", exc)) from exc


def recv_reply(sock: socket.socket, timeout: float | None) -> NlMsg:
    """Wait for the kernel's reply and parse it.

    Datagrams from any sender other than the kernel (port 0) are ignored;
    the timeout covers the whole wait.
    """
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        if deadline is not None:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            sock.settimeout(left)
        try:
            data, addr = sock.recvfrom(RECV_BUFSIZE)
        except socket.timeout:
            break
        except OSError as exc:
            raise ClientError(EXIT_OS_ERROR, describe_oserror("recvfrom", exc)) from exc
        if addr and addr[0] != 0:
            continue
        try:
            return parse_reply(data)
        except MalformedReply as exc:
            raise ClientError(EXIT_MALFORMED, f"malformed reply: {exc}") from exc
    raise ClientError(EXIT_TIMEOUT, "no reply from the kernel within %g s" % (timeout or 0))


# ---------------------------------------------------------- the session


class Session:
    """One socket, its counters, and the output mode."""

    def __init__(self, args: argparse.Namespace, out: IO[str], err: IO[str]) -> None:
        self.args = args
        self.out = out
        self.err = err
        self.sock: socket.socket | None = None
        self.port: int | None = None
        self.sent = 0
        self.received = 0
        self.replies: list[dict] = []
        self.errors: list[str] = []

    @property
    def human(self) -> bool:
        return not (self.args.json or self.args.quiet)

    def say(self, text: str = "", end: str = "\n") -> None:
        if self.human:
            self.out.write(text + end)
            self.out.flush()

    def error(self, message: str) -> None:
        self.errors.append(message)
        self.err.write(f"netlink_client: {message}\n")
        self.err.flush()

    def warn(self, message: str) -> None:
        self.err.write(f"netlink_client: {message}\n")
        self.err.flush()

    def open(self) -> None:
        self.sock, self.port = open_socket(self.args.protocol, self.args.timeout)

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None

    def exchange(self, payload: bytes, quoted: bool = False) -> NlMsg:
        """Send one message, wait for its reply, print it like the blog."""
        assert self.sock is not None and self.port is not None
        frame = pack_msg(payload, self.port, exact=self.args.exact)
        if quoted:
            self.say(f'Sending message " {payload_text(payload)} " to kernel')
        else:
            self.say("Sending message to kernel")
        ret = send_msg(self.sock, frame)
        self.sent += 1
        self.say(f"send ret: {ret}")
        self.say("Waiting for message from kernel")
        reply = recv_reply(self.sock, self.args.timeout)
        self.received += 1
        if len(self.replies) < JSON_MAX_REPLIES:
            self.replies.append(msg_to_dict(reply))
        self.say(f"Received message payload: {payload_text(reply.payload)}")
        return reply

    def interactive(self, stdin: IO[bytes]) -> None:
        """Send each stdin line until end of input (the blog loops forever)."""
        while True:
            self.say(PROMPT, end="")
            line = stdin.readline()
            if not line:
                self.say()
                return
            if line.endswith(b"\n"):
                line = line[:-1]
                if line.endswith(b"\r"):
                    line = line[:-1]
            if len(line) > MAX_MESSAGE and not self.args.exact:
                self.warn(f"message too long ({len(line)} bytes, max {MAX_MESSAGE}): skipped")
                continue
            self.exchange(line, quoted=True)

    def report(self) -> None:
        if self.args.json:
            doc = {
                "port": self.port,
                "sent": self.sent,
                "received": self.received,
                "replies": self.replies,
                "errors": self.errors,
            }
            self.out.write(json.dumps(doc, separators=(",", ":")) + "\n")
        elif self.args.count is not None or self.args.quiet:
            self.out.write(f"sent {self.sent} received {self.received}\n")
        self.out.flush()


# ---------------------------------------------------------- command line


def positive_int(text: str) -> int:
    try:
        value = int(text, 10)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def timeout_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError("must be a positive number of seconds")
    return value


def _protocol(text: str) -> int:
    try:
        value = int(text, 0)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if not 0 <= value < MAX_LINKS:
        raise argparse.ArgumentTypeError(f"must be between 0 and {MAX_LINKS - 1}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="netlink_client",
        description=(
            f"Send messages to netlink_kernel.ko over netlink protocol {NETLINK_USER} and print "
            "its replies. Without options: send the hello, then one message per "
            "stdin line until end of input."
        ),
        epilog=EXIT_CODES_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--message", "-m", metavar="TEXT", help="send TEXT instead of the hello and do not read stdin")
    parser.add_argument("--count", "-c", metavar="N", type=positive_int,
                        help="send the message N times, each awaiting its reply (no stdin); "
                        "prints 'sent N received N' at the end")
    parser.add_argument("--timeout", "-t", metavar="SECONDS", type=timeout_seconds, default=5.0,
                        help="how long to wait for each reply (default: 5)")
    parser.add_argument("--json", action="store_true",
                        help="print one JSON object at the end instead of the human text")
    parser.add_argument("--protocol", metavar="N", type=_protocol, default=NETLINK_USER,
                        help=f"netlink protocol number (default: {NETLINK_USER})")
    parser.add_argument("--exact", action="store_true",
                        help="send exact-length frames, NLMSG_LENGTH(len+1), instead of "
                        f"NLMSG_SPACE({MAX_PAYLOAD}) = {NLMSG_SPACE(MAX_PAYLOAD)} bytes")
    parser.add_argument("--no-interactive", "-n", action="store_true",
                        help="send the hello (or --message) once and exit, do not read stdin")
    parser.add_argument("--quiet", "-q", action="store_true",
                        help="no per-message output; print only 'sent N received N' at the end")
    return parser


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Parse and cross-check arguments; exits with EXIT_USAGE on errors."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.message is not None:
        args.payload = os.fsencode(args.message)
        if len(args.payload) > MAX_MESSAGE and not args.exact:
            parser.error(
                f"--message is {len(args.payload)} bytes; at most {MAX_MESSAGE} fit in "
                f"NLMSG_SPACE({MAX_PAYLOAD}) (use --exact for longer ones)"
            )
    else:
        args.payload = HELLO.encode()
    args.interactive = args.message is None and args.count is None and not args.no_interactive
    return args


def main(argv: Sequence[str] | None = None, stdin: IO[bytes] | None = None,
         stdout: IO[str] | None = None, stderr: IO[str] | None = None) -> int:
    """Run the client; return the exit code (see EXIT_CODES_HELP)."""
    out = stdout if stdout is not None else sys.stdout
    err = stderr if stderr is not None else sys.stderr
    try:
        args = parse_args(argv)
    except SystemExit as exc:  # argparse: --help (0) or a usage error (2)
        code = exc.code
        return code if isinstance(code, int) else EXIT_USAGE

    session = Session(args, out, err)
    rc = EXIT_OK
    try:
        session.open()
        for _ in range(args.count or 1):
            session.exchange(args.payload)
        if args.interactive:
            session.interactive(stdin if stdin is not None else sys.stdin.buffer)
    except ClientError as exc:
        session.error(exc.message)
        rc = exc.code
    except KeyboardInterrupt:
        session.error("interrupted")
        rc = 130
    finally:
        session.close()
    session.report()
    return rc


if __name__ == "__main__":
    sys.exit(main())

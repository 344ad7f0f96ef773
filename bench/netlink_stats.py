#!/usr/bin/env python3
"""Time netlink round trips to netlink_kernel.ko: the Python contender of bench/roundtrip.py.

    python3 netlink_stats.py --count N [--payload TEXT] [--timeout S] [--client-name NAME]

Standard library only; runs in the guest on its python3 (3.9+). Sends the
payload (default: the blog's hello) N times in the blog's 1040-byte frame,
each a send and a recv of the module's NLMSG_DONE reply, and prints one line
of JSON with the same keys as the C client's -s (userspace/netlink_client.c):

    {"client": "python", "messages": N, "seconds": ..., "msgs_per_s": ...,
     "p50_us": ..., "p99_us": ..., "max_us": ...}

Latencies are nearest-rank percentiles in microseconds. The line is printed
even after an error, counting the round trips that completed; the exit code
says what went wrong (the client's codes, listed in --help).

The wire format (pack_msg, parse_reply, open_socket, ...) is imported from
netlink_client.py, looked up first next to this file (a copy of both in one
directory) and then in ../userspace (the repository).
"""

from __future__ import annotations

import argparse
import errno
import json
import math
import os
import socket
import struct
import sys
import time
from collections.abc import Sequence
from typing import IO

_HERE = os.path.dirname(os.path.realpath(__file__))
sys.path[:0] = [_HERE, os.path.join(os.path.dirname(_HERE), "userspace")]

from netlink_client import (  # noqa: E402
    EXIT_CODES_HELP,
    EXIT_MALFORMED,
    EXIT_OK,
    EXIT_OS_ERROR,
    EXIT_TIMEOUT,
    EXIT_USAGE,
    HELLO,
    MAX_MESSAGE,
    MAX_PAYLOAD,
    NETLINK_USER,
    NLMSG_DONE,
    NLMSG_HDRLEN,
    RECV_BUFSIZE,
    ClientError,
    MalformedReply,
    describe_oserror,
    open_socket,
    pack_msg,
    parse_reply,
    positive_int,
    timeout_seconds,
)

NLMSG_LEN_TYPE = struct.Struct("=IH")  # nlmsg_len and nlmsg_type only: the loop's reply check
TIMEVAL = struct.Struct("@ll")  # struct timeval for SO_RCVTIMEO: tv_sec, tv_usec
PROG = "netlink_stats"


def percentile(sorted_values: Sequence[int], p: float):
    """Nearest-rank percentile of already sorted values: the smallest value
    with at least p percent of the values at or below it (None when empty).

    The rank is ceil(p/100 * n), at least 1; 0 < p <= 100.
    """
    if not 0 < p <= 100:
        raise ValueError(f"percentile must be in (0, 100], got {p}")
    n = len(sorted_values)
    if n == 0:
        return None
    if isinstance(p, int):
        rank = -(-p * n // 100)  # exact integer ceil
    else:
        rank = math.ceil(p * n / 100)
    return sorted_values[max(1, min(rank, n)) - 1]


def stats_doc(client: str, latencies_ns: Sequence[int], total_ns: int) -> dict:
    """The JSON line: rate over the wall time, latency percentiles in µs.

    latencies_ns are the round trips that completed (any order); total_ns is
    the wall time from before the first send to after the last reply.
    """
    lat = sorted(latencies_ns)
    n = len(lat)
    seconds = total_ns / 1e9

    def us(v):
        return None if v is None else round(v / 1000, 3)

    return {
        "client": client,
        "messages": n,
        "seconds": round(seconds, 6),
        "msgs_per_s": round(n / seconds, 1) if seconds > 0 else 0.0,
        "p50_us": us(percentile(lat, 50)),
        "p99_us": us(percentile(lat, 99)),
        "max_us": us(lat[-1] if lat else None),
    }


def _reply_error(buf: bytearray, n: int) -> ClientError:
    """The ClientError for a reply the loop's fast check refused, explained by parse_reply()."""
    try:
        parse_reply(bytes(buf[:n]))
    except MalformedReply as exc:
        return ClientError(EXIT_MALFORMED, f"malformed reply: {exc}")
    return ClientError(EXIT_MALFORMED, "malformed reply")  # not reached: same checks


def timed_round_trips(sock: socket.socket, frame: bytes, count: int, latencies: list, timeout: float = 0.0):
    """Send frame count times, each followed by a recv of the kernel's reply.

    Each reply is checked like parse_reply() does (length fields, type
    NLMSG_DONE). latencies[i] gets round trip i in nanoseconds (from before
    the send to after the reply's recv). The socket must be connected to the
    kernel (port 0): then the kernel itself refuses datagrams from any other
    sender, which the client's recv_reply() filters by hand.

    Returns (completed, wall_ns, error): the round trips done, the wall time
    from before the first send to after the last reply, and the ClientError
    that stopped the loop (None when all count were done). timeout is only
    for the message when a reply times out (the socket's SO_RCVTIMEO).

    The loop body does what the C client's does: two clock reads, one send,
    one recv into a preallocated buffer, one header check.
    """
    buf = bytearray(RECV_BUFSIZE)
    clock = time.perf_counter_ns
    send = sock.send
    recv_into = sock.recv_into
    unpack_from = NLMSG_LEN_TYPE.unpack_from
    hdrlen = NLMSG_HDRLEN
    done = NLMSG_DONE
    i = 0
    start = clock()
    try:
        for i in range(count):
            t0 = clock()
            try:
                send(frame)
            except OSError as exc:
                raise ClientError(EXIT_OS_ERROR, describe_oserror("send", exc)) from exc
            try:
                n = recv_into(buf)
            except OSError as exc:
                if exc.errno in (errno.EAGAIN, errno.EWOULDBLOCK):
                    raise ClientError(EXIT_TIMEOUT, "no reply from the kernel within %g s" % timeout) from exc
                raise ClientError(EXIT_OS_ERROR, describe_oserror("recv", exc)) from exc
            t1 = clock()
            if n < hdrlen:
                raise _reply_error(buf, n)
            length, msg_type = unpack_from(buf)
            if msg_type != done or length < hdrlen or length > n:
                raise _reply_error(buf, n)
            latencies[i] = t1 - t0
    except ClientError as exc:
        return i, clock() - start, exc
    except KeyboardInterrupt:
        return i, clock() - start, ClientError(130, "interrupted")
    return count, clock() - start, None


def run_stats(count: int, payload: bytes, timeout: float, client: str, out: IO[str], err: IO[str],
              protocol: int = NETLINK_USER) -> int:
    """Time count round trips, print one JSON line, return the exit code.

    The socket is blocking with SO_RCVTIMEO for the reply timeout, as in the
    C client (a Python socket timeout would add a poll() before every send
    and every recv), and connected to the kernel so that plain send() and
    recv_into() do. The frame is packed once: the payload never changes.
    The JSON line is printed even after an error, counting the round trips
    that completed. protocol is for tests without the module.
    """
    latencies = [0] * count
    completed = 0
    total_ns = 0
    rc = EXIT_OK
    sock = None
    try:
        sock, port = open_socket(protocol, timeout=None)
        sec = int(timeout)
        usec = min(int(round((timeout - sec) * 1e6)), 999999)
        if sec == 0 and usec == 0:
            usec = 1  # an all-zero timeval means no timeout at all
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, TIMEVAL.pack(sec, usec))
            sock.connect((0, 0))
        except OSError as exc:
            raise ClientError(EXIT_OS_ERROR, describe_oserror("setsockopt/connect", exc)) from exc
        frame = pack_msg(payload, port)
        completed, total_ns, error = timed_round_trips(sock, frame, count, latencies, timeout)
        if error is not None:
            raise error
    except ClientError as exc:
        err.write(f"{PROG}: {exc.message}\n")
        err.flush()
        rc = exc.code
    except KeyboardInterrupt:
        err.write(f"{PROG}: interrupted\n")
        rc = 130
    finally:
        if sock is not None:
            sock.close()
    out.write(json.dumps(stats_doc(client, latencies[:completed], total_ns)) + "\n")
    out.flush()
    return rc


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description=(
            f"Time round trips to netlink_kernel.ko over netlink protocol {NETLINK_USER}: send the payload N times,\n"
            "each awaiting its reply, then print one JSON line: client, messages, seconds, msgs_per_s,\n"
            "p50_us, p99_us, max_us (latency percentiles by nearest rank)."
        ),
        epilog=EXIT_CODES_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--count", metavar="N", type=positive_int, required=True,
                        help="round trips to time")
    parser.add_argument("--payload", metavar="TEXT", default=HELLO,
                        help=f"the message text, at most {MAX_MESSAGE} bytes (default: the blog's hello)")
    parser.add_argument("--timeout", metavar="S", type=timeout_seconds, default=5.0,
                        help="how long to wait for each reply (default: 5)")
    parser.add_argument("--client-name", metavar="NAME", default="python",
                        help="the JSON line's client (default: python)")
    return parser


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Parse and check arguments (args.payload becomes bytes); exits with EXIT_USAGE on errors."""
    parser = build_parser()
    args = parser.parse_args(argv)
    args.payload = os.fsencode(args.payload)
    if len(args.payload) > MAX_MESSAGE:
        parser.error(f"--payload is {len(args.payload)} bytes; at most {MAX_MESSAGE} fit in NLMSG_SPACE({MAX_PAYLOAD})")
    return args


def main(argv: Sequence[str] | None = None, stdout: IO[str] | None = None, stderr: IO[str] | None = None) -> int:
    """Run the round trips; return the exit code (see EXIT_CODES_HELP)."""
    try:
        args = parse_args(argv)
    except SystemExit as exc:  # argparse: --help (0) or a usage error (2)
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    return run_stats(args.count, args.payload, args.timeout, args.client_name,
                     stdout if stdout is not None else sys.stdout, stderr if stderr is not None else sys.stderr)


if __name__ == "__main__":
    sys.exit(main())

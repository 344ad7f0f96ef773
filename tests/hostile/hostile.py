#!/usr/bin/env python3
"""Hostile-input suite for netlink_kernel.ko (netlink protocol 30), run in the guest.

Standard library only, Python 3.9 syntax (the guest's python3 is 3.9 to 3.13+).

    python3 hostile.py --mode loaded   # every case against the loaded module
    python3 hostile.py --mode absent   # the module is not loaded (before insmod, after rmmod)

Each case is a function. Every case runs (a failing case does not stop the
others); each prints one JSON line {"case", "ok", "detail"} and a final line
{"summary": {...}} follows. Exit status 0 only when every case is ok, 1
otherwise, 2 for usage errors.

What the cases assert is what userspace can see: errnos of socket calls,
replies (length, type, seq, pid, payload) and the absence of replies. Every
case that sends something malformed checks afterwards that a fresh client still
gets its hello answered, i.e. that the module survived. The kernel side (no
splat, the printk trail) is judged by the harness from /dev/kmsg records.
"""

import argparse
import ctypes
import errno
import json
import os
import select
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from typing import Callable, Optional

PROTO = 30  # the module's netlink protocol
MODULE = "netlink_kernel"
SYS_MODULE = "/sys/module/" + MODULE

NLMSG_HDR = struct.Struct("=IHHII")  # struct nlmsghdr: len, type, flags, seq, pid
NLMSG_HDRLEN = 16
NLMSG_DONE = 3
REPLY_PAYLOAD = b"Hello msg from kernel\0"
REPLY_LEN = NLMSG_HDRLEN + len(REPLY_PAYLOAD)  # 38: nlmsg_len of every reply
HELLO = b"Hello this is a msg from userspace"
BLOG_FRAME = 1040  # NLMSG_SPACE(1024), the blog client's frame size

REPLY_TIMEOUT = 10.0  # waiting for a reply that must come (TCG is slow)
QUIET = 0.5  # waiting for a reply that must not come
CASE_LIMIT = 40  # hard bound for one case, seconds (SIGALRM)
CLONE_NEWNET = 0x40000000
# Loaded once, here, while the process has one thread: a dlopen() in a child forked
# after the concurrent-clients case had run threads tripped bullseye's ld.so
# ("dl_open_worker: Assertion ... RT_CONSISTENT failed") and killed the child.
LIBC = ctypes.CDLL(None, use_errno=True)
NOBODY = 65534


def align(n):
    return (n + 3) & ~3


def errname(num):
    return errno.errorcode.get(num, str(num)) if num is not None else None


class CaseFailed(Exception):
    pass


class CaseTimeout(Exception):
    pass


class Ctx:
    """What one case found: problems (the case fails if any) and details for the report."""

    def __init__(self):
        self.problems = []
        self.detail = {}

    def check(self, cond, msg):
        if not cond:
            self.problems.append(msg)
        return cond

    def require(self, cond, msg):
        if not cond:
            self.problems.append(msg)
            raise CaseFailed(msg)


# ------------------------------------------------------------------ frames


def frame(payload=b"", nlmsg_len=None, pid=0, seq=0, msg_type=0, flags=0, size=None):
    """Header + payload; nlmsg_len defaults to the frame's length; size pads with NULs."""
    body = bytes(payload)
    if size is None:
        size = NLMSG_HDRLEN + len(body)
    if nlmsg_len is None:
        nlmsg_len = size
    data = NLMSG_HDR.pack(nlmsg_len & 0xFFFFFFFF, msg_type, flags, seq, pid) + body
    return data + b"\0" * (size - len(data))


def exact(payload, **kw):
    """NLMSG_LENGTH(len(payload)): the frame is exactly the message, not padded."""
    return frame(payload, **kw)


def blog(payload, **kw):
    """The blog's framing: NLMSG_SPACE(1024) bytes, nlmsg_len 1040, payload NUL-padded."""
    return frame(payload, size=BLOG_FRAME, **kw)


# ------------------------------------------------------------------ sockets


def nl_socket(rcvbuf=None, sndbuf=None, groups=0):
    """A protocol-30 socket bound to a kernel-chosen port; returns (sock, port)."""
    s = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, PROTO)
    try:
        if rcvbuf is not None:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        if sndbuf is not None:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, sndbuf)
        s.bind((0, groups))
        port = s.getsockname()[0]
        s.settimeout(REPLY_TIMEOUT)
    except BaseException:
        s.close()
        raise
    return s, port


def send(sock, data):
    """sendmsg() to the kernel (port 0, no groups): ("sent", n) or ("errno", NAME)."""
    try:
        return ("sent", sock.sendmsg([data], [], 0, (0, 0)))
    except OSError as e:
        return ("errno", errname(e.errno))


def recv(sock, timeout):
    """One datagram, ("data", bytes), ("timeout", None) or ("errno", NAME)."""
    sock.settimeout(timeout)
    try:
        return ("data", sock.recv(1 << 17))
    except socket.timeout:
        return ("timeout", None)
    except OSError as e:
        return ("errno", errname(e.errno))


def reply_problems(data):
    """How a datagram differs from the module's reply (empty list: it is the reply)."""
    if len(data) < NLMSG_HDRLEN:
        return ["reply is %d bytes, shorter than a header" % len(data)]
    ln, typ, flags, seq, pid = NLMSG_HDR.unpack_from(data)
    got = {"len": ln, "type": typ, "flags": flags, "seq": seq, "pid": pid}
    want = {"len": REPLY_LEN, "type": NLMSG_DONE, "flags": 0, "seq": 0, "pid": 0}
    out = ["reply %s %r, expected %r" % (k, got[k], want[k]) for k in want if got[k] != want[k]]
    if len(data) != align(REPLY_LEN):
        out.append("datagram is %d bytes, expected %d" % (len(data), align(REPLY_LEN)))
    if data[NLMSG_HDRLEN:REPLY_LEN] != REPLY_PAYLOAD:
        out.append("payload %r, expected %r" % (data[NLMSG_HDRLEN:REPLY_LEN], REPLY_PAYLOAD))
    return out


def describe(data):
    ln, typ, flags, seq, pid = NLMSG_HDR.unpack_from(data)
    return {"bytes": len(data), "len": ln, "type": typ, "seq": seq, "pid": pid,
            "payload": data[NLMSG_HDRLEN:ln].decode("latin-1")}


def expect_reply(ctx, sock, what):
    kind, data = recv(sock, REPLY_TIMEOUT)
    if not ctx.check(kind == "data", "%s: no reply (%s %s)" % (what, kind, data)):
        return None
    for p in reply_problems(data):
        ctx.check(False, "%s: %s" % (what, p))
    return data


def expect_silence(ctx, sock, what, timeout=QUIET):
    """Nothing may arrive on sock within timeout."""
    kind, data = recv(sock, timeout)
    ctx.check(kind == "timeout", "%s: expected no reply, got %s %r" % (
        what, kind, describe(data) if kind == "data" and len(data) >= 16 else data))
    return kind


def still_alive(ctx):
    """A fresh client's hello is answered: the module survived what came before."""
    s, port = nl_socket()
    with s:
        res = send(s, blog(HELLO, pid=port))
        ctx.check(res == ("sent", BLOG_FRAME), "after: hello send gave %r" % (res,))
        data = expect_reply(ctx, s, "after: fresh hello")
    ctx.detail["alive_after"] = data is not None and not reply_problems(data)


# ------------------------------------------------------------------ child processes


def in_child(fn, timeout=20.0):
    """Run fn() in a forked child; it returns a JSON-able dict sent back through a pipe."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # child
        os.close(r)
        try:
            signal.alarm(int(timeout))
            out = fn()
        except BaseException as e:  # report anything, never return into the parent's code
            out = {"exception": repr(e)}
        try:
            os.write(w, json.dumps(out).encode())
        finally:
            os._exit(0)
    os.close(w)
    chunks = []
    deadline = time.monotonic() + timeout + 5
    try:
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([r], [], [], left)[0]:
                os.kill(pid, signal.SIGKILL)
                chunks = [b'{"exception": "child timed out"}']
                break
            b = os.read(r, 65536)
            if not b:
                break
            chunks.append(b)
    finally:
        os.close(r)
        os.waitpid(pid, 0)
    text = b"".join(chunks).decode() or '{"exception": "child sent nothing"}'
    return json.loads(text)


# ------------------------------------------------------------------ cases: module absent


def case_socket_absent(ctx):
    """socket(AF_NETLINK, SOCK_RAW, 30) without the module: EPROTONOSUPPORT."""
    try:
        s = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, PROTO)
    except OSError as e:
        ctx.detail["socket"] = errname(e.errno)
        ctx.check(e.errno == errno.EPROTONOSUPPORT, "socket() failed %s, expected EPROTONOSUPPORT" % errname(e.errno))
    else:
        s.close()
        ctx.detail["socket"] = "created"
        ctx.check(False, "socket() succeeded: protocol 30 is registered without the module")
    ctx.detail["sys_module"] = os.path.exists(SYS_MODULE)
    ctx.check(not os.path.exists(SYS_MODULE), SYS_MODULE + " exists")


ABSENT_CASES = [case_socket_absent]


# ------------------------------------------------------------------ cases: module loaded


def case_hello_blog_frame(ctx):
    """The blog client's frame: NLMSG_SPACE(1024) bytes, nlmsg_pid = own port."""
    s, port = nl_socket()
    with s:
        res = send(s, blog(HELLO, pid=port))
        ctx.detail["send"] = res
        ctx.require(res == ("sent", BLOG_FRAME), "send gave %r" % (res,))
        data = expect_reply(ctx, s, "reply")
        if data:
            ctx.detail["reply"] = describe(data)


def case_hello_exact_frame(ctx):
    """A frame of exactly NLMSG_LENGTH(len + 1) bytes (payload with its NUL, unpadded)."""
    s, port = nl_socket()
    with s:
        f = exact(HELLO + b"\0", pid=port)
        res = send(s, f)
        ctx.detail["send"] = res
        ctx.require(res == ("sent", len(f)), "send gave %r" % (res,))
        data = expect_reply(ctx, s, "reply")
        if data:
            ctx.detail["reply"] = describe(data)


def case_header_pid_zero(ctx):
    """nlmsg_pid = 0 (the kernel's own port): the reply still goes to the sender."""
    s, port = nl_socket()
    with s:
        res = send(s, blog(HELLO, pid=0))
        ctx.detail["send"] = res
        ctx.require(res[0] == "sent", "send gave %r" % (res,))
        data = expect_reply(ctx, s, "reply to sender")
        ctx.detail["reply_to_sender"] = data is not None
    still_alive(ctx)


def case_header_pid_other_socket(ctx):
    """nlmsg_pid naming another open socket B: A gets the reply, B nothing."""
    a, pa = nl_socket()
    b, pb = nl_socket()
    with a, b:
        ctx.detail["ports"] = {"a": pa, "b": pb}
        res = send(a, blog(HELLO, pid=pb))
        ctx.require(res[0] == "sent", "send gave %r" % (res,))
        data = expect_reply(ctx, a, "reply to A")
        ctx.detail["a_got_reply"] = data is not None
        ctx.detail["b"] = expect_silence(ctx, b, "socket B")


def _malformed(ctx, data, want_send):
    s, port = nl_socket()
    with s:
        res = send(s, data)
        ctx.detail["frame_bytes"] = len(data)
        ctx.detail["send"] = res
        ctx.check(res == want_send, "send gave %r, expected %r" % (res, want_send))
        ctx.detail["after_send"] = expect_silence(ctx, s, "malformed frame")
    still_alive(ctx)


def case_frame_0_bytes(ctx):
    _malformed(ctx, b"", ("errno", "ENODATA"))


def case_frame_1_byte(ctx):
    _malformed(ctx, b"\x7f", ("sent", 1))


def case_frame_4_bytes(ctx):
    # A 4-byte "nlmsg_len" claiming a full message: the blog's module read past the data here.
    _malformed(ctx, struct.pack("=I", 1040), ("sent", 4))


def case_frame_15_bytes(ctx):
    _malformed(ctx, NLMSG_HDR.pack(15, 0, 0, 0, 0)[:15], ("sent", 15))


def case_frame_16_bytes_zeroed(ctx):
    # A whole header, all zero: nlmsg_len 0 is below the header's 16 bytes.
    _malformed(ctx, b"\0" * 16, ("sent", 16))


def case_nlmsg_len_below_header(ctx):
    _malformed(ctx, frame(HELLO + b"\0", nlmsg_len=8, size=64), ("sent", 64))


def case_nlmsg_len_beyond_frame(ctx):
    _malformed(ctx, frame(HELLO + b"\0", nlmsg_len=4096, size=64), ("sent", 64))


def case_nlmsg_len_0xffffffff(ctx):
    _malformed(ctx, frame(HELLO + b"\0", nlmsg_len=0xFFFFFFFF, size=64), ("sent", 64))


def case_header_only_message(ctx):
    """16 bytes with nlmsg_len 16: a valid message with an empty payload, answered."""
    s, port = nl_socket()
    with s:
        res = send(s, frame(b"", pid=port))
        ctx.detail["send"] = res
        ctx.require(res == ("sent", 16), "send gave %r" % (res,))
        data = expect_reply(ctx, s, "reply")
        ctx.detail["reply"] = data is not None


NO_NUL = b"no-terminator-abc"  # 17 bytes: nlmsg_len 33, not a multiple of 4


def case_payload_without_nul(ctx):
    """Payload with no terminating NUL, frame exactly nlmsg_len long (the kernel must not read past it)."""
    s, port = nl_socket()
    with s:
        f = exact(NO_NUL, pid=port)
        res = send(s, f)
        ctx.detail["send"] = res
        ctx.detail["nlmsg_len"] = len(f)
        ctx.require(res == ("sent", len(f)), "send gave %r" % (res,))
        ctx.detail["reply"] = expect_reply(ctx, s, "reply") is not None
    still_alive(ctx)


NEWLINES = b"line one\nBUG: forged by userspace\nline three"


def case_payload_with_newlines(ctx):
    """Newlines (and a forged 'BUG:' line) in the payload: one kmsg record, \\x0a escaped, no splat."""
    s, port = nl_socket()
    with s:
        res = send(s, exact(NEWLINES + b"\0", pid=port))
        ctx.detail["send"] = res
        ctx.require(res[0] == "sent", "send gave %r" % (res,))
        ctx.detail["reply"] = expect_reply(ctx, s, "reply") is not None


def case_payload_64k(ctx):
    """A 64 KiB payload: fits the default send buffer, so it is answered (printk logs a prefix)."""
    payload = (b"0123456789abcdef" * 4096)[:65535] + b"\0"
    s, port = nl_socket()
    with s:
        ctx.detail["sndbuf"] = s.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF)
        f = exact(payload, pid=port)
        res = send(s, f)
        ctx.detail["frame_bytes"] = len(f)
        ctx.detail["send"] = res
        if res == ("errno", "EMSGSIZE"):  # a small default send buffer: raise it and retry
            s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 18)
            ctx.detail["sndbuf_raised"] = s.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF)
            res = send(s, f)
            ctx.detail["send_retry"] = res
        ctx.require(res == ("sent", len(f)), "send gave %r" % (res,))
        data = expect_reply(ctx, s, "reply")
        if data:
            ctx.detail["reply"] = describe(data)
    still_alive(ctx)


def case_frame_beyond_sndbuf(ctx):
    """A frame larger than the socket's send buffer: EMSGSIZE, nothing reaches the module."""
    s, port = nl_socket(sndbuf=4096)
    with s:
        sndbuf = s.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF)
        ctx.detail["sndbuf"] = sndbuf
        f = frame(HELLO + b"\0", pid=port, size=align(sndbuf + 64))
        res = send(s, f)
        ctx.detail["frame_bytes"] = len(f)
        ctx.detail["send"] = res
        ctx.check(res == ("errno", "EMSGSIZE"), "send gave %r, expected EMSGSIZE" % (res,))
        ctx.detail["after_send"] = expect_silence(ctx, s, "oversized frame")
    still_alive(ctx)


def case_three_messages_one_send(ctx):
    """Three NLMSG_ALIGNed messages in one sendmsg(): three replies."""
    parts = []
    for i, p in enumerate((b"first", b"second message", b"3rd")):
        m = exact(p + b"\0", pid=0, seq=i + 1)
        parts.append(m + b"\0" * (align(len(m)) - len(m)))
    data = b"".join(parts)
    s, port = nl_socket()
    with s:
        res = send(s, data)
        ctx.detail["send"] = res
        ctx.require(res == ("sent", len(data)), "send gave %r" % (res,))
        got = 0
        for i in range(3):
            if expect_reply(ctx, s, "reply %d" % (i + 1)) is None:
                break
            got += 1
        ctx.detail["replies"] = got
        ctx.detail["fourth"] = expect_silence(ctx, s, "a 4th reply")


def case_flood_small_rcvbuf(ctx, flood=32):
    """Tiny SO_RCVBUF, N sends without reading: ENOBUFS first, then the queued replies, then normal."""
    s, port = nl_socket(rcvbuf=256)
    with s:
        rcvbuf = s.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)
        ctx.detail["rcvbuf"] = rcvbuf
        sends = [send(s, exact(HELLO + b"\0", pid=port, seq=i)) for i in range(flood)]
        bad = [r for r in sends if r[0] != "sent"]
        ctx.detail["sent"] = flood - len(bad)
        ctx.check(not bad, "sends failed: %r" % bad[:3])
        first = recv(s, REPLY_TIMEOUT)
        ctx.detail["first_recv"] = first[1] if first[0] == "errno" else first[0]
        ctx.check(first == ("errno", "ENOBUFS"), "first recv gave %r, expected ENOBUFS" % (first,))
        queued = 0
        while True:
            kind, data = recv(s, QUIET)
            if kind != "data":
                ctx.check(kind == "timeout", "draining: %s %s" % (kind, data))
                break
            for p in reply_problems(data):
                ctx.check(False, "queued reply %d: %s" % (queued + 1, p))
            queued += 1
            if queued > flood:
                break
        ctx.detail["queued_replies"] = queued
        ctx.check(1 <= queued < flood, "%d queued replies, expected between 1 and %d" % (queued, flood - 1))
        res = send(s, exact(HELLO + b"\0", pid=port))
        ctx.check(res[0] == "sent", "send after the flood gave %r" % (res,))
        ctx.detail["same_socket_after"] = expect_reply(ctx, s, "same socket after the flood") is not None
    still_alive(ctx)


def case_concurrent_clients(ctx, clients=8, messages=200):
    """Several clients, each sending messages one after another at the same time: every reply arrives."""
    results: list[Optional[tuple[int, list[str]]]] = [None] * clients  # (replies, errors) per client
    start = threading.Barrier(clients)

    def client(k):
        got, errors = 0, []
        try:
            s, port = nl_socket()
        except OSError as e:
            results[k] = (0, ["socket: %s" % errname(e.errno)])
            return
        with s:
            try:
                start.wait(REPLY_TIMEOUT)
            except threading.BrokenBarrierError:
                pass
            for i in range(messages):
                res = send(s, exact(b"client %d message %d\0" % (k, i), pid=port, seq=i))
                if res[0] != "sent":
                    errors.append("send %d: %r" % (i, res))
                    break
                kind, data = recv(s, REPLY_TIMEOUT)
                if kind != "data":
                    errors.append("message %d: %s %s" % (i, kind, data))
                    break
                p = reply_problems(data)
                if p:
                    errors.append("message %d: %s" % (i, p[0]))
                    break
                got += 1
        results[k] = (got, errors)

    t0 = time.monotonic()
    threads = [threading.Thread(target=client, args=(k,), daemon=True) for k in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(max(1.0, CASE_LIMIT - 5 - (time.monotonic() - t0)))
    ctx.detail["clients"] = clients
    ctx.detail["messages_each"] = messages
    ctx.detail["seconds"] = round(time.monotonic() - t0, 2)
    ctx.require(all(not t.is_alive() for t in threads), "clients still running after the time limit")
    ctx.detail["replies"] = [r[0] if r else None for r in results]
    for k, r in enumerate(results):
        if r is None:
            ctx.check(False, "client %d did not report" % k)
            continue
        ctx.check(r[0] == messages, "client %d: %d of %d replies %s" % (k, r[0], messages, r[1][:1]))


def case_netns_client(ctx):
    """A client in a new network namespace: ECONNREFUSED (the kernel socket is in init_net only)."""

    def child():
        if LIBC.unshare(CLONE_NEWNET) != 0:
            return {"unshare": errname(ctypes.get_errno())}
        out = {"unshare": "ok"}
        try:
            s, port = nl_socket()
        except OSError as e:
            out["socket"] = errname(e.errno)
            return out
        with s:
            out["socket"] = "ok"
            out["send"] = send(s, blog(HELLO, pid=port))
            out["recv"] = recv(s, QUIET)[0]
        return out

    out = in_child(child)
    ctx.detail.update(out)
    ctx.require("exception" not in out, "child: %s" % out.get("exception"))
    ctx.require(out.get("unshare") == "ok", "unshare(CLONE_NEWNET) failed: %s" % out.get("unshare"))
    ctx.check(out.get("socket") == "ok", "socket() in the new netns: %s" % out.get("socket"))
    ctx.check(out.get("send") == ["errno", "ECONNREFUSED"], "send gave %r, expected ECONNREFUSED" % (out.get("send"),))
    ctx.check(out.get("recv") == "timeout", "recv gave %r, expected nothing" % out.get("recv"))
    still_alive(ctx)


def case_unprivileged_user(ctx):
    """uid/gid 65534: the exchange works; binding to a multicast group gives EPERM."""

    def child():
        os.setgroups([])
        os.setgid(NOBODY)
        os.setuid(NOBODY)
        out: dict[str, object] = {"uid": os.getuid(), "euid": os.geteuid()}
        s, port = nl_socket()
        with s:
            out["send"] = send(s, blog(HELLO, pid=port))
            kind, data = recv(s, REPLY_TIMEOUT)
            out["recv"] = kind
            out["reply_problems"] = reply_problems(data) if kind == "data" else None
        try:
            g, gport = nl_socket(groups=1)
        except OSError as e:
            out["bind_group"] = errname(e.errno)
        else:
            g.close()
            out["bind_group"] = "ok"
        return out

    out = in_child(child)
    ctx.detail.update(out)
    ctx.require("exception" not in out, "child: %s" % out.get("exception"))
    ctx.check(out.get("uid") == NOBODY and out.get("euid") == NOBODY, "not running as %d" % NOBODY)
    ctx.check(out.get("send") == ["sent", BLOG_FRAME], "send gave %r" % (out.get("send"),))
    ctx.check(out.get("recv") == "data" and not out.get("reply_problems"),
              "reply: %s %s" % (out.get("recv"), out.get("reply_problems")))
    ctx.check(out.get("bind_group") == "EPERM", "bind to group 1 gave %r, expected EPERM" % out.get("bind_group"))


def refcnt():
    try:
        with open(SYS_MODULE + "/refcnt") as f:
            return int(f.read())
    except OSError:
        return None


def case_rmmod_while_open(ctx):
    """An open client socket pins the module: rmmod fails, refcnt 1; after close refcnt 0.

    rmmod is only tried when the refcount says the module is pinned: if it
    unloaded, nothing here could load it again (the harness owns insmod).
    """
    ctx.detail["refcnt_before"] = refcnt()
    ctx.require(ctx.detail["refcnt_before"] == 0,
                "refcnt %r before opening a socket, expected 0" % ctx.detail["refcnt_before"])
    s, port = nl_socket()
    try:
        held = refcnt()
        ctx.detail["refcnt_open"] = held
        ctx.require(held is not None and held >= 1,
                    "refcnt %r with a socket open: not pinned, rmmod not tried (it would unload the module)" % held)
        p = subprocess.run(["rmmod", MODULE], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, timeout=20)
        ctx.detail["rmmod_rc"] = p.returncode
        ctx.detail["rmmod_output"] = p.stdout.decode("utf-8", "replace").strip()
        ctx.check(p.returncode != 0, "rmmod succeeded with a socket open")
        ctx.detail["loaded_after_rmmod"] = os.path.exists(SYS_MODULE)
        ctx.require(os.path.exists(SYS_MODULE), "the module was unloaded")
        ctx.detail["refcnt_after_rmmod"] = refcnt()
        ctx.check(refcnt() == held, "refcnt changed to %r after the failed rmmod" % refcnt())
        # The pinned module still works for the socket that pins it.
        res = send(s, blog(HELLO, pid=port))
        ctx.check(res[0] == "sent", "send gave %r" % (res,))
        expect_reply(ctx, s, "reply while rmmod was refused")
    finally:
        s.close()
    deadline = time.monotonic() + 5
    while refcnt() != 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    ctx.detail["refcnt_closed"] = refcnt()
    ctx.check(refcnt() == 0, "refcnt %r after close, expected 0 (the harness's rmmod would fail)" % refcnt())


LOADED_CASES = [
    case_hello_blog_frame,
    case_hello_exact_frame,
    case_header_pid_zero,
    case_header_pid_other_socket,
    case_frame_0_bytes,
    case_frame_1_byte,
    case_frame_4_bytes,
    case_frame_15_bytes,
    case_frame_16_bytes_zeroed,
    case_nlmsg_len_below_header,
    case_nlmsg_len_beyond_frame,
    case_nlmsg_len_0xffffffff,
    case_header_only_message,
    case_payload_without_nul,
    case_payload_with_newlines,
    case_payload_64k,
    case_frame_beyond_sndbuf,
    case_three_messages_one_send,
    case_flood_small_rcvbuf,
    case_concurrent_clients,
    case_netns_client,
    case_unprivileged_user,
    case_rmmod_while_open,  # last: it leaves the refcount at 0 for the harness's rmmod
]


def case_name(fn):
    return fn.__name__[len("case_"):]


# ------------------------------------------------------------------ runner


def _alarm(signum, frame_):
    raise CaseTimeout("case ran past %d s" % CASE_LIMIT)


def run_case(fn, kwargs):
    ctx = Ctx()
    t0 = time.monotonic()
    signal.signal(signal.SIGALRM, _alarm)
    signal.alarm(CASE_LIMIT)
    try:
        fn(ctx, **kwargs)
    except CaseFailed:
        pass
    except CaseTimeout as e:
        ctx.problems.append(str(e))
    except Exception as e:  # a bug in the case or an unexpected errno: the case fails, the suite goes on
        ctx.problems.append("exception: %r" % (e,))
    finally:
        signal.alarm(0)
    ctx.detail["seconds"] = round(time.monotonic() - t0, 3)
    if ctx.problems:
        ctx.detail["problems"] = ctx.problems
    return {"case": case_name(fn), "ok": not ctx.problems, "detail": ctx.detail}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--mode", choices=("loaded", "absent"), required=True)
    ap.add_argument("--clients", type=int, default=8, help="concurrent clients (default 8)")
    ap.add_argument("--messages", type=int, default=200, help="messages per concurrent client (default 200)")
    ap.add_argument("--flood", type=int, default=32, help="messages sent unread into a tiny receive buffer")
    ap.add_argument("--case", action="append", default=[], help="run only this case (repeatable)")
    ap.add_argument("--list", action="store_true", help="print the case names of the mode and exit")
    args = ap.parse_args(argv)

    cases = LOADED_CASES if args.mode == "loaded" else ABSENT_CASES
    if args.list:
        print("\n".join(case_name(c) for c in cases))
        return 0
    if args.case:
        unknown = set(args.case) - {case_name(c) for c in cases}
        if unknown:
            ap.error("unknown cases: %s" % ", ".join(sorted(unknown)))
        cases = [c for c in cases if case_name(c) in args.case]
    extra: dict[Callable[..., None], dict[str, int]] = {
        case_concurrent_clients: {"clients": args.clients, "messages": args.messages},
        case_flood_small_rcvbuf: {"flood": args.flood},
    }
    t0 = time.monotonic()
    failed = []
    for fn in cases:
        res = run_case(fn, extra.get(fn, {}))
        if not res["ok"]:
            failed.append(res["case"])
        print(json.dumps(res, sort_keys=True), flush=True)
    summary = {"mode": args.mode, "kernel": os.uname().release, "python": sys.version.split()[0],
               "cases": len(cases), "failed": failed, "seconds": round(time.monotonic() - t0, 3)}
    print(json.dumps({"summary": summary}, sort_keys=True), flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

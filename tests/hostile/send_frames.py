#!/usr/bin/env python3
"""Send raw netlink frames (one hex string per stdin line) to protocol 30; report as JSON.

Used by the property-based fuzz test: the frames come from the host, this only
sends them (sendto the kernel, port 0) and drains whatever replies arrive.
Standard library only, Python 3.9+.
"""

import errno
import json
import socket
import sys
from typing import Optional


def errname(num: Optional[int]) -> str:
    """EINVAL for 22; an OSError without an errno prints as "None"."""
    return errno.errorcode.get(num, str(num)) if num is not None else str(num)


def main() -> int:
    s = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 30)
    s.bind((0, 0))
    s.settimeout(0.05)
    errors: dict[str, int] = {}  # errno name (recv- for receiving) -> how many times
    sent, replies = 0, 0
    for line in sys.stdin:
        frame = bytes.fromhex(line.strip())
        try:
            s.sendto(frame, (0, 0))
            sent += 1
        except OSError as e:
            name = errname(e.errno)
            errors[name] = errors.get(name, 0) + 1
        while True:
            try:
                s.recv(65536)
                replies += 1
            except socket.timeout:
                break
            except OSError as e:
                name = "recv-" + errname(e.errno)
                errors[name] = errors.get(name, 0) + 1
                break
    print(json.dumps({"sent": sent, "errors": errors, "replies": replies}))
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""Guest-side test of kh_echo: what is written to /dev/kh_echo reads back unchanged."""

import errno
import os
import sys

DEV = "/dev/kh_echo"


def main() -> int:
    msg = b"hello from userspace"
    fd = os.open(DEV, os.O_RDWR)
    try:
        if os.write(fd, msg) != len(msg):
            print("short write", file=sys.stderr)
            return 1
        os.lseek(fd, 0, os.SEEK_SET)
        back = os.read(fd, 100)
        if back != msg:
            print(f"read back {back!r}, wrote {msg!r}", file=sys.stderr)
            return 1
        try:
            os.write(fd, b"x" * 5000)
            print("a 5000-byte write was accepted; expected EFBIG", file=sys.stderr)
            return 1
        except OSError as e:
            if e.errno != errno.EFBIG:
                raise
    finally:
        os.close(fd)
    print("ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())

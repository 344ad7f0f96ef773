"""The netlink module's behaviour, tested in one live guest per kernel with the pytest plugin.

Each test pays for SSH commands (~0.15 s each under TCG), not for a boot.
"""

import json
import re

import pytest

pytestmark = pytest.mark.vm

CLIENT = "python3 /project/userspace/netlink_client.py"


def client(guest_run, *args: str) -> tuple[int, dict]:
    status, out, err = guest_run(f"{CLIENT} --json {' '.join(args)}", timeout=120)
    return status, json.loads(out)


def test_hello_leaves_the_trail(module_loaded, guest_run, kmsg):
    status, out = client(guest_run, "-n")
    assert status == 0, out
    assert out["replies"][0]["payload"] == "Hello msg from kernel"
    assert out["replies"][0]["type"] == 3 and out["replies"][0]["len"] == 38
    kmsg.expect_sequence(["Entering: myNetLink_recv_msg",
                          "MyNetlink has received: Hello this is a msg from userspace"])
    kmsg.expect("MyNetlink has received:", level=6, count=1)


def test_several_messages_from_one_client(module_loaded, guest_run, kmsg):
    status, out = client(guest_run, "--message", "ping", "--count", "5")
    assert status == 0 and out["sent"] == 5 and out["received"] == 5
    kmsg.expect("MyNetlink has received: ping", count=5)
    kmsg.expect("Entering: myNetLink_recv_msg", count=5)


def test_several_clients_at_once(module_loaded, guest_run, kmsg):
    cmd = " & ".join(f"{CLIENT} --json --message c{i} --count 3 > /tmp/c{i}.json" for i in range(4))
    status, _, err = guest_run(f"{cmd} & wait; cat /tmp/c0.json /tmp/c1.json /tmp/c2.json /tmp/c3.json",
                               timeout=180)
    assert status == 0, err
    for i in range(4):
        kmsg.expect(f"MyNetlink has received: c{i}", count=3)


def test_rmmod_is_refused_while_a_socket_is_open(module_loaded, guest_run, kmsg):
    script = (
        "import socket, subprocess, sys\n"
        "s = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 30)\n"
        "s.bind((0, 0))\n"
        "refcnt = open('/sys/module/netlink_kernel/refcnt').read().strip()\n"
        "r = subprocess.run(['rmmod', 'netlink_kernel'], capture_output=True, text=True)\n"
        "print(refcnt, r.returncode, r.stderr.strip().replace(' ', '_'))\n"
    )
    status, out, err = guest_run(f"python3 -c \"{script}\"")
    assert status == 0, err
    refcnt, rc, msg = out.split()
    assert refcnt == "1" and rc != "0", out
    kmsg.expect_absent("exiting myNetLink module")
    # after close (the script exited) rmmod works: the fixture's teardown checks it


def test_client_error_when_the_module_is_not_loaded(guest_run, kmsg):
    status, out = client(guest_run, "-n")
    assert status == 3
    assert any("EPROTONOSUPPORT" in e for e in out["errors"])
    kmsg.expect_absent(re.compile("MyNetlink"))

#!/usr/bin/env python3
"""Guest-side fuzzer: coverage-guided fuzzing of a module's userspace interfaces, with kcov.

Runs inside the VM on the guest root's own python3 (3.9 or newer), standard library
only, with ``contract.py``, ``fuzzexec.py`` and ``fuzzmut.py`` beside it::

    python3 /harness/fuzzer.py /harness/fuzz-plan.json

It loads the module (the plan's insmod), then executes inputs until the plan's
duration is over: first the corpus it was given and the targets' seeds, then
mutations of the inputs that reached module code nothing else had. Each execution
runs in a forked child, which turns kcov on for itself (KCOV_ENABLE on the descriptor
the parent set up and mapped), sends the input, and exits; the parent reads the
module PCs the child reached from the shared mapping. The module is the only code
kcov instruments (the kernel is built without KCOV_INSTRUMENT_ALL), and its PCs are
kept as offsets into its executable sections.

Every input is sent to the host on the channel (stdout, one event a line, as
``contract.encode_event``) *before* it is executed: when the kernel dies, the host
knows what killed it. After each execution the kernel log is read; a record that
matches one of the plan's splat patterns ends the run with a ``fuzz-splat`` event.
"""

from __future__ import annotations

import base64
import errno
import json
import os
import random
import re
import subprocess
import sys
import time
from collections import deque
from typing import IO, TYPE_CHECKING, Any, Deque, Dict, List, Optional, Sequence, Tuple

if TYPE_CHECKING or "harness.guest" in sys.modules:  # the host's package: for the names below
    from harness import contract
    from harness.guest import fuzzchild, fuzzmut
    from harness.guest.fuzzchild import KCOV, TRACE_CMP, TRACE_PC, Kcov
else:  # in the guest, the other programs sit beside this file
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import contract
    import fuzzchild
    import fuzzmut
    from fuzzchild import KCOV, TRACE_CMP, TRACE_PC, Kcov

VERSION = 1  # of the fuzz plan and the events below
PLAN_FILE = "fuzz-plan.json"
GUEST_FILES = ("fuzzer.py", "fuzzchild.py", "fuzzexec.py", "fuzzmut.py", contract.CONTRACT_FILE)
# Events, each with the plan's run id (contract.encode_event):
HELLO = "fuzz-hello"  # {version, kcov: null or why not, sections: {name: address}, kaslr}
ERROR = "fuzz-error"  # {error}: the fuzzer could not start (insmod failed...)
EXEC = "fuzz-exec"  # {n, input}: about to execute input n
NEW = "fuzz-new"  # {n, input, pcs: [[section, offset]...]}: input n reached new module PCs
STATS = "fuzz-stats"  # {execs, seconds, corpus, pcs}
SPLAT = "fuzz-splat"  # {n, records}: the kernel reported a splat after input n; the run ends
HANG = "fuzz-hang"  # {n}: the child of input n could not be ended
DONE = "fuzz-done"  # {execs, seconds, corpus, pcs, reason}
EVENTS = (HELLO, ERROR, EXEC, NEW, STATS, SPLAT, HANG, DONE)

STATS_EVERY = 5.0


def encode_input(inp: Dict[str, Any]) -> Dict[str, Any]:
    return {"t": inp["t"], "op": inp["op"], "cmd": inp.get("cmd", 0),
            "data": base64.b64encode(inp["data"]).decode()}


def decode_input(d: Dict[str, Any]) -> Dict[str, Any]:
    return {"t": int(d["t"]), "op": str(d["op"]), "cmd": int(d.get("cmd", 0)),
            "data": base64.b64decode(d["data"])}


class Kmsg:
    """New kernel records after each execution, checked against the splat patterns."""

    PATH = "/dev/kmsg"

    def __init__(self, patterns: Sequence[str]):
        self.patterns = [re.compile(p) for p in patterns]
        self.fd = os.open(self.PATH, os.O_RDONLY | os.O_NONBLOCK)
        os.lseek(self.fd, 0, os.SEEK_END)

    def drain(self) -> List[str]:
        out: List[str] = []
        while True:
            try:
                data = os.read(self.fd, 16384)
            except BlockingIOError:
                return out
            except OSError as e:
                if e.errno == errno.EPIPE:  # overwritten meanwhile: read on
                    continue
                raise
            if not data:
                return out
            out.append(data.decode("utf-8", "backslashreplace"))

    def splat(self, records: Sequence[str]) -> Optional[int]:
        """The index of the first record the kernel logged that matches a pattern."""
        for i, raw in enumerate(records):
            head, _, body = raw.partition(";")
            if int(head.split(",", 1)[0]) >> 3 != 0:
                continue
            text = body.split("\n", 1)[0]
            if any(p.match(text) for p in self.patterns):
                return i
        return None


def module_sections(module: str) -> Dict[str, int]:
    """Where each section of the loaded module is (root reads real addresses); none when the
    kernel does not say (no coverage can then be attributed to the module)."""
    d = "/sys/module/%s/sections" % module
    out: Dict[str, int] = {}
    for name in os.listdir(d) if os.path.isdir(d) else []:
        with open(os.path.join(d, name)) as f:
            out[name] = int(f.read().strip(), 16)
    return out


def kaslr_offset(text_link: int) -> int:
    """What kcov subtracts from each PC (canonicalize_ip): the kernel's KASLR offset, _text's
    address now against its address at link time."""
    with open("/proc/kallsyms") as f:
        for line in f:
            parts = line.split()
            if len(parts) >= 3 and parts[2] == "_text":
                return int(parts[0], 16) - text_link
    return 0


def load_module(plan: Dict[str, Any]) -> Optional[str]:
    """modprobe what the module requires, insmod it: None, or what failed."""
    cmds = [["modprobe", dep] for dep in plan.get("requires", [])] + [["insmod", plan["ko"]] + plan.get("params", [])]
    for argv in cmds:
        p = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=120)
        if p.returncode != 0:
            return "%s: exit %d: %s" % (" ".join(argv), p.returncode, p.stdout.decode(errors="replace").strip())
    return None


class Fuzzer:
    def __init__(self, plan: Dict[str, Any], out: IO[str]):
        self.plan, self.out = plan, out
        self.targets = plan["targets"]
        self.rng = random.Random(plan.get("seed", 0))
        self.mut = fuzzmut.Mutator(self.rng, self.targets)
        self.corpus: List[Dict[str, Any]] = []
        self.queue: Deque[Dict[str, Any]] = deque()
        self.seen: set = set()
        self.kcov: Dict[int, Kcov] = {}
        self.ranges: List[Tuple[str, int, int]] = []  # (section, start, size)
        self.kaslr = 0
        self.n = self.execs = 0
        self.t0 = time.monotonic()
        self.kmsg = Kmsg(plan.get("splats", []))
        self.child = fuzzchild.Executor(self.targets, self.kcov, int(plan.get("execs_per_child", 1)),
                                        float(plan.get("exec_timeout", 5.0)))

    def send(self, kind: str, **data: Any) -> None:
        self.out.write(contract.encode_event(kind, self.plan["run_id"], **data) + "\n")
        self.out.flush()

    def setup(self) -> None:
        sections = module_sections(self.plan["module"])
        self.ranges = [(name, sections[name], size) for name, size in self.plan.get("sections", {}).items()
                       if name in sections]
        why = None
        if self.plan.get("coverage", True):
            try:
                if not os.path.exists(KCOV) and not os.path.ismount("/sys/kernel/debug"):
                    subprocess.run(["mount", "-t", "debugfs", "none", "/sys/kernel/debug"], check=False)
                self.kcov.update({TRACE_PC: Kcov(TRACE_PC), TRACE_CMP: Kcov(TRACE_CMP)})  # the child's too
                self.kaslr = kaslr_offset(self.plan.get("text_link", 0xFFFFFFFF81000000))
            except OSError as e:
                why = "kcov: %s" % e
        else:
            why = "coverage feedback off (the plan says so)"
        self.send(HELLO, version=VERSION, kcov=why, sections=sections, kaslr=self.kaslr, pid=os.getpid())
        for d in self.plan.get("corpus", []):
            self.queue.append(decode_input(d))
        for t, target in enumerate(self.targets):
            self.queue.extend(dict(s, t=t) for s in fuzzmut.default_seeds(target))
        self.seeds = list(self.queue)

    def execute(self, inp: Dict[str, Any]) -> bool:
        """One execution, announced first; False when the run must end (a splat, a hang)."""
        self.n += 1
        self.execs += 1
        self.send(EXEC, n=self.n, input=encode_input(inp))
        status = self.child.run(inp, TRACE_PC if self.kcov else None)
        if status is None:
            self.send(HANG, n=self.n)
            return False
        if self.kcov:
            new = self.new_pcs(self.kcov[TRACE_PC].pcs())
            if new:
                self.corpus.append(inp)
                self.send(NEW, n=self.n, input=encode_input(inp), pcs=new)
                self.hints(inp)
        records = self.kmsg.drain()
        at = self.kmsg.splat(records) if records else None
        if at is not None:
            time.sleep(1.0)  # the rest of the report
            self.send(SPLAT, n=self.n, records=records[at:] + self.kmsg.drain())
            return False
        return True

    def hints(self, inp: Dict[str, Any]) -> None:
        """Run ``inp`` once more tracing comparisons; queue the inputs its comparisons suggest."""
        self.n += 1
        self.send(EXEC, n=self.n, input=encode_input(inp))
        if self.child.run(inp, TRACE_CMP) is not None:
            self.queue.extend(self.mut.hints(inp, self.kcov[TRACE_CMP].cmps()))

    def new_pcs(self, pcs: Sequence[int]) -> List[List[Any]]:
        out = []
        for pc in set(pcs):
            real = (pc + self.kaslr) & 0xFFFFFFFFFFFFFFFF
            for name, start, size in self.ranges:
                if start <= real < start + size:
                    key = (name, real - start)
                    if key not in self.seen:
                        self.seen.add(key)
                        out.append([name, real - start])
                    break
        return out

    def next_input(self) -> Dict[str, Any]:
        if self.queue:
            return self.queue.popleft()
        pool = self.corpus or self.seeds
        return self.mut.mutate(self.rng.choice(pool), pool)

    def stats(self) -> Dict[str, Any]:
        return {"execs": self.execs, "seconds": round(time.monotonic() - self.t0, 3),
                "corpus": len(self.corpus), "pcs": len(self.seen)}

    def loop(self) -> str:
        deadline = self.t0 + float(self.plan["duration"])
        last = time.monotonic()
        while time.monotonic() < deadline:
            if not self.execute(self.next_input()):
                return "stopped: the kernel reported a splat, or a child hung"
            if time.monotonic() - last >= STATS_EVERY:
                last = time.monotonic()
                self.send(STATS, **self.stats())
        return "duration over"


def main(argv: List[str]) -> int:
    with open(argv[1]) as f:
        plan = json.load(f)
    if plan.get("version") != VERSION:
        print("fuzz plan version %r, this fuzzer speaks %d" % (plan.get("version"), VERSION), file=sys.stderr)
        return 2
    fz = Fuzzer(plan, sys.stdout)
    failed = load_module(plan)
    if failed:
        fz.send(ERROR, error=failed)
        return 1
    fz.setup()
    reason = fz.loop()
    fz.send(DONE, reason=reason, **fz.stats())
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))

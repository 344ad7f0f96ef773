"""A splat's frames in the module under test, resolved to file:line with the .ko that was loaded.

binutils of the kernel's own root (the toolchain that built the module) run in the
build sandbox: ``objdump -t`` gives each function's section and value in the
relocatable .ko, and ``addr2line -f -i -j SECTION`` the line of value + offset with
the chain of functions inlined there; the approach of Linux's scripts/faddr2line.
For a kernel tree (built on the host) the host's binutils read the tree's .ko.
"""

from __future__ import annotations

import dataclasses
import re
import tempfile
from pathlib import Path
from typing import Optional, Sequence

from harness import procs
from harness.kernel.roots import Root
from harness.kernel.sandbox import sandbox_argv
from harness.outcomes import Frame, SourceExcerpt

_SYMBOL = re.compile(r"^(?P<value>[0-9a-f]+) (?P<flags>.{7}) (?P<section>\S+)\t(?P<size>[0-9a-f]+) (?P<name>\S+)$")
KO_DIR = "/tmp/ko"  # where the .ko files are seen inside the sandbox (under its tmpfs)


class Binutils:
    """objdump and addr2line on a directory of .ko files: those of a kernel's root (``root``), or the
    host's (None: a kernel tree's modules are built on the host)."""

    def __init__(self, root: Optional[Path], ko_dir: Path, timeout: float = 60):
        self.root, self.ko_dir, self.timeout = root, ko_dir, timeout

    @classmethod
    def for_root(cls, root: Root, ko_dir: Path) -> "Binutils":
        return cls(None if root.kernel.tree is not None else root.path, ko_dir)

    def run(self, argv: list[str]) -> str:
        if self.root is None:
            res = procs.quick([a.replace(KO_DIR, str(self.ko_dir)) for a in argv], timeout=self.timeout)
            return res.stdout if res.returncode == 0 else ""
        bwrap = procs.require_tool("bwrap", "bubblewrap")
        with tempfile.TemporaryDirectory(prefix="kmod-harness-sym-") as tmp:
            system = ["--ro-bind", str(self.root), "/", "--tmpfs", "/tmp",
                      "--ro-bind", str(self.ko_dir), KO_DIR]
            res = procs.quick(sandbox_argv(bwrap, system, Path(tmp), "/tmp/work", "/tmp") + argv, timeout=self.timeout)
        return res.stdout if res.returncode == 0 else ""

    def symbols(self, ko: str) -> dict[str, tuple[str, int]]:
        """Function name -> (section, value) in the .ko (sections: .text, .init.text, .exit.text...)."""
        out: dict[str, tuple[str, int]] = {}
        for line in self.run(["objdump", "-t", f"{KO_DIR}/{ko}"]).splitlines():
            m = _SYMBOL.match(line)
            if m and "F" in m.group("flags"):
                out[m.group("name")] = (m.group("section"), int(m.group("value"), 16))
        return out

    def lines(self, binary: str, addresses: Sequence[int], section: Optional[str] = None
              ) -> dict[int, list[tuple[str, str, int]]]:
        """For each address (of ``section``, or absolute): (function, file, line), the innermost first,
        then what it was inlined into. One addr2line for all of them."""
        if not addresses:
            return {}
        argv = ["addr2line", "-a", "-f", "-i", "-e", binary] + (["-j", section] if section else [])
        text = self.run(argv + [f"{a:#x}" for a in addresses])
        out: dict[int, list[tuple[str, str, int]]] = {}
        current: Optional[list[tuple[str, str, int]]] = None
        items = text.splitlines()
        i = 0
        while i < len(items):
            if re.fullmatch(r"0x[0-9a-f]+", items[i]):
                current = out.setdefault(int(items[i], 16), [])
                i += 1
                continue
            if current is not None and i + 1 < len(items):
                file, _, line = items[i + 1].rpartition(":")
                line = line.split(" ", 1)[0]
                if file and file != "??" and line.isdigit():
                    current.append((items[i], file, int(line)))
            i += 2
        return out


def resolve(frames: Sequence[Frame], kos: dict[str, str], tools: Binutils,
            vmlinux: Optional[Path] = None) -> list[Frame]:
    """The frames with file, line and inlined chain filled in: those of ``kos`` (module -> .ko path
    relative to the tools' ko_dir), and the kernel's own when ``vmlinux`` (with its System.map
    beside it) is at hand (a kernel tree). Other frames are returned as they came."""
    found: dict[int, tuple[str, str, int]] = {}  # frame index -> (binary, section, address)
    symbols = {mod: tools.symbols(ko) for mod, ko in kos.items()}
    kernel = system_map(vmlinux.parent / "System.map") if vmlinux is not None else {}
    for i, f in enumerate(frames):
        if f.module in symbols and f.function in symbols[f.module]:
            section, value = symbols[f.module][f.function]
            found[i] = (f"{KO_DIR}/{kos[f.module]}", section, value + f.offset)
        elif f.module is None and f.function in kernel and vmlinux is not None:
            found[i] = (str(vmlinux), "", kernel[f.function] + f.offset)
    chains: dict[tuple[str, str, int], list[tuple[str, str, int]]] = {}
    for binary, section in {(b, sec) for b, sec, _ in found.values()}:
        addrs = sorted({a for b, sec, a in found.values() if (b, sec) == (binary, section)})
        for a, chain in tools.lines(binary, addrs, section or None).items():
            chains[(binary, section, a)] = chain
    out = []
    for i, f in enumerate(frames):
        chain = chains.get(found[i], []) if i in found else []
        if not chain:
            out.append(f)
            continue
        _, file, line = chain[0]
        out.append(dataclasses.replace(f, file=file, line=line, inlined=tuple(chain) if len(chain) > 1 else ()))
    return out


def system_map(path: Path) -> dict[str, int]:
    """Text symbols of a System.map: name -> address."""
    out: dict[str, int] = {}
    if path.is_file():
        for line in path.read_text(errors="replace").splitlines():
            parts = line.split()
            if len(parts) == 3 and parts[1] in "tTwW":
                out.setdefault(parts[2], int(parts[0], 16))
    return out


def source_excerpt(frame: Frame, source: Path, build_prefixes: Sequence[str], context: int = 3
                   ) -> Optional[SourceExcerpt]:
    """The lines around ``frame``'s line in the project's own copy of the file (the .ko names the
    build directory's copy), or None when the file is not the project's."""
    if frame.file is None or frame.line is None:
        return None
    file = frame.file
    rel = next((file[len(p):].lstrip("/") for p in build_prefixes if file.startswith(p + "/")), None)
    path = (source / rel) if rel else None
    if path is None or not path.is_file():
        return None
    lines = path.read_text(errors="replace").splitlines()
    first = max(1, frame.line - context)
    assert rel is not None
    return SourceExcerpt(rel, frame.line, first, tuple(lines[first - 1:frame.line + context]))

"""A fault point's frames resolved to the module's file:line, with the .ko that was loaded.

The injected call site is the innermost frame of the module in the injection's stack
dump. It is a return address: the line looked up is that of the byte before it (the
call), and of the chain of functions inlined there, the innermost one in the project's
own source (``kzalloc`` is inlined from include/linux/slab.h into the module's
function: the site is the module's line that called it).

kmemleak prints a leak's backtrace once the module is gone (the scan comes after the
unload), so its frames in the module are bare addresses. They are mapped back with
the sections of the point's load (read from /sys/module while it was loaded) or, for
an init that failed, the address of its init function (the ``initcall_start`` trace
event) less that function's place in ``.init.text``.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Any, Optional, Sequence

from harness import plan as guest_plan
from harness import resultjson, symbolize
from harness.kernel.roots import Root
from harness.verdict import faultleak, trace
from harness.verdict.faultfind import Decoded
from harness.verdict.faultpoint import PointOutcome
from harness.verdict.trace import Frame

_SYMBOL = re.compile(r"^(?P<value>[0-9a-f]+) (?P<flags>.{7}) (?P<section>\S+)\t(?P<size>[0-9a-f]+) (?P<name>\S+)$")
_SECTION = re.compile(r"^\s*\d+\s+(?P<name>\S+)\s+(?P<size>[0-9a-f]+)\s")
Chain = list[tuple[str, str, int]]
# An injected call the kernel logged no stack for: one made with __GFP_NOWARN (lib/fault-inject.c's
# FAULT_NOWARN), typically the slab allocator's first try for a new slab, which falls back on its own.
NO_STACK = "(a call with __GFP_NOWARN: the kernel logs no stack for it)"


class Decoder:
    def __init__(self, tools: symbolize.Binutils, ko: str, module: str, source: Path, built_in: str = "",
                 tree: Optional[Path] = None):
        """``tools``: binutils on the directory the .ko is in now; ``built_in``: where it was built (its
        debug information names the files there); ``tree``: the kernel tree's (its files are not the module's)."""
        self.tools = tools
        self.ko, self.module, self.source = ko, module, source
        self.binary = f"{symbolize.KO_DIR}/{ko}"
        self.prefixes = tuple(p for p in ("/tmp/build", built_in, guest_plan.BUILD_DIR) if p)
        self.tree = str(tree) if tree is not None else None
        self._symbols: Optional[dict[str, tuple[str, int, int]]] = None
        self._sizes: Optional[dict[str, int]] = None
        self._lines: dict[tuple[str, int], Chain] = {}

    @classmethod
    def for_root(cls, root: Root, ko_dir: Path, ko: str, module: str, source: Path, built_in: str = "") -> "Decoder":
        return cls(symbolize.Binutils.for_root(root, ko_dir), ko, module, source, built_in, root.kernel.tree)

    # -- the .ko ----------------------------------------------------------------------
    @property
    def symbols(self) -> dict[str, tuple[str, int, int]]:
        """Function -> (section, value, size)."""
        if self._symbols is None:
            self._symbols = {}
            for line in self.tools.run(["objdump", "-t", self.binary]).splitlines():
                m = _SYMBOL.match(line)
                if m and "F" in m.group("flags"):
                    self._symbols[m.group("name")] = (m.group("section"), int(m.group("value"), 16),
                                                      int(m.group("size"), 16))
        return self._symbols

    @property
    def sizes(self) -> dict[str, int]:
        if self._sizes is None:
            self._sizes = {m.group("name"): int(m.group("size"), 16)
                           for m in map(_SECTION.match, self.tools.run(["objdump", "-h", self.binary]).splitlines())
                           if m}
        return self._sizes

    def chain(self, section: str, address: int) -> Chain:
        key = (section, address)
        if key not in self._lines:
            self._lines[key] = self.tools.lines(self.binary, [address], section).get(address, [])
        return self._lines[key]

    # -- frames -----------------------------------------------------------------------
    def resolve(self, f: Frame, call: bool) -> Frame:
        """A frame of the module with file, line and inlined chain; ``call``: a return address."""
        if f.module != self.module or f.function not in self.symbols:
            return f
        section, value, _ = self.symbols[f.function]
        return self._filled(f, self.chain(section, value + f.offset - (1 if call and f.offset else 0)))

    def _filled(self, f: Frame, chain: Chain) -> Frame:
        if not chain:
            return f
        _, file, line = chain[0]
        return dataclasses.replace(f, file=file, line=line, inlined=tuple(chain) if len(chain) > 1 else ())

    def raw(self, f: Frame, point: PointOutcome) -> Frame:
        """A bare address of the module's code in the point's load, as a resolved frame."""
        if not f.function.startswith("0x") or point.run is None:
            return f
        where = self.locate(int(f.function, 16), point.run.sections, point.run.init_fn)
        if where is None:
            return f
        section, offset = where
        inside = [(name, v, size) for name, (sec, v, size) in self.symbols.items() if sec == section and v <= offset]
        name, value, size = max(inside, key=lambda s: s[1]) if inside else (f.function, 0, 0)
        frame = dataclasses.replace(f, function=name, offset=offset - value, size=size, module=self.module)
        return self._filled(frame, self.chain(section, offset - 1))

    def locate(self, address: int, sections: dict[str, int], init_fn: Optional[int]) -> Optional[tuple[str, int]]:
        bases = {name: base for name, base in sections.items() if name in self.sizes}
        init = self.symbols.get("init_module")
        if ".init.text" not in bases and init_fn is not None and init is not None and init[0] == ".init.text":
            bases[".init.text"] = init_fn - init[1]
        for name, base in bases.items():
            if 0 <= address - base < self.sizes[name]:
                return name, address - base
        return None

    def project_line(self, f: Frame) -> Optional[tuple[str, int, str]]:
        """(file relative to the project's source, line, function) of the innermost place of ``f``'s
        inlined chain that is in the project's source."""
        chain = list(f.inlined) or ([(f.function, f.file, f.line)] if f.file and f.line else [])
        for function, file, line in chain:
            rel = self.relative(file)
            if rel is not None:
                return rel, line, function
        return None

    def relative(self, file: str) -> Optional[str]:
        """``file`` (as the debug information names it) relative to the project's source, if it is the
        project's: under a known build directory, or else (a build the cache reused from another
        directory) the longest tail of its path that names a file of the source, outside the kernel."""
        rel = next((file[len(p):].lstrip("/") for p in self.prefixes if file.startswith(p + "/")), None)
        if rel is not None:
            return rel if (self.source / rel).is_file() else None
        if (self.tree and file.startswith(self.tree + "/")) or "/linux-headers-" in file or "/include/" in file:
            return None
        parts = file.strip("/").split("/")
        return next(("/".join(parts[i:]) for i in range(len(parts)) if (self.source / "/".join(parts[i:])).is_file()),
                    None)

    # -- points -----------------------------------------------------------------------
    def point(self, o: PointOutcome) -> Decoded:
        traces = {c.seq: self.consequence(o, c.seq, c.kind) for c in o.consequences if c.seq is not None}
        inj = o.injection
        if inj is None and o.injected:
            return Decoded(frame=NO_STACK, traces=traces)
        if inj is None or inj.site is None:
            return Decoded(frame=_text(inj.frames[0]) if inj and inj.frames else None, traces=traces)
        site = self.resolve(inj.site, call=True)
        where = self.project_line(site)
        if where is None:
            return Decoded(frame=_text(inj.site), in_function=inj.site.function, traces=traces)
        rel, line, function = where
        excerpt = self.excerpt(site, rel, line)
        return Decoded(site=f"{rel}:{line}", frame=_text(inj.site), in_function=function, source=excerpt,
                       traces=traces)

    def consequence(self, o: PointOutcome, seq: int, kind: str) -> dict[str, Any]:
        if kind == "kmemleak":
            leak = faultleak.parse_leak(o.records, seq)
            frames: Sequence[Frame] = [self.raw(f, o) for f in leak.frames] if leak else []
        else:
            frames = trace.of_splat(o.records, seq)
        frames = [self.resolve(f, call=f.where == "stack") for f in frames]
        mine = trace.in_modules(frames, [self.module])
        source = None
        for f in mine:
            where = self.project_line(f)
            if where is not None:
                source = self.excerpt(f, where[0], where[1])
                break
        shown = [self.shown(f) for f in frames]
        return {"trace": [resultjson.plain(f) for f in shown],
                "module_frames": trace.describe_all(trace.in_modules(shown, [self.module])), "source": source}

    def shown(self, f: Frame) -> Frame:
        """The frame with its files as people read them: the project's relative to its source, the
        kernel's relative to the tree (not the build's temporary directory, not the cache's path)."""
        if f.file is None:
            return f
        inlined = tuple((fn, self.short(file), line) for fn, file, line in f.inlined)
        return dataclasses.replace(f, file=self.short(f.file), inlined=inlined)

    def short(self, file: str) -> str:
        rel = self.relative(file)
        if rel is not None:
            return rel
        if self.tree and file.startswith(self.tree + "/"):
            return file[len(self.tree) + 1:].removeprefix("./")
        return file


    def excerpt(self, f: Frame, rel: str, line: int) -> Optional[dict[str, Any]]:
        got = symbolize.source_excerpt(dataclasses.replace(f, file=f"{self.prefixes[0]}/{rel}", line=line),
                                       self.source, self.prefixes)
        return None if got is None else resultjson.plain(got)


def _text(f: Frame) -> str:
    return f"{f.function}+{f.offset:#x}/{f.size:#x}" + (f" [{f.module}]" if f.module else "")

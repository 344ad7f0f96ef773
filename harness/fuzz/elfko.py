"""What a fuzzed .ko holds that kcov's PCs are read against: read from its ELF headers.

A module built with ``KCOV_INSTRUMENT=y`` calls ``__sanitizer_cov_trace_pc`` at the start
of every basic block; kcov records each call's return address. In the relocatable
.ko each such call is a relocation against that symbol in an executable section:
the call's return address is the relocated field's offset + 4 (``call rel32``). Those
are every PC the module can report, so they are the denominator of its coverage,
and one line each in the source. Only ELF64 little-endian (x86_64, arm64) is read.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path

from harness.errors import InfraError

SHF_ALLOC, SHF_EXECINSTR = 0x2, 0x4
SHT_SYMTAB, SHT_RELA = 2, 4
KCOV_SYMBOL = "__sanitizer_cov_trace_pc"
_SHDR = struct.Struct("<IIQQQQIIQQ")
_SYM = struct.Struct("<IBBHQQ")
_RELA = struct.Struct("<QQq")


@dataclass(frozen=True)
class Section:
    name: str
    type: int
    flags: int
    offset: int
    size: int
    link: int
    info: int
    entsize: int


@dataclass(frozen=True)
class KoInfo:
    exec_sections: dict[str, int]  # name -> size, of the sections holding code
    callsites: dict[str, tuple[int, ...]]  # section -> the PCs kcov can report there (offsets)

    @property
    def instrumented(self) -> bool:
        return any(self.callsites.values())

    @property
    def blocks(self) -> int:
        return sum(len(v) for v in self.callsites.values())


def _cstr(blob: bytes, at: int) -> str:
    end = blob.find(b"\0", at)
    return blob[at:end if end >= 0 else len(blob)].decode("utf-8", "replace")


def sections(blob: bytes, where: str = "") -> list[Section]:
    if blob[:4] != b"\x7fELF" or blob[4] != 2 or blob[5] != 1:
        raise InfraError(f"{where or 'the module'} is not a little-endian ELF64 file")
    shoff, = struct.unpack_from("<Q", blob, 0x28)
    shentsize, shnum, shstrndx = struct.unpack_from("<HHH", blob, 0x3A)
    raw = [_SHDR.unpack_from(blob, shoff + i * shentsize) for i in range(shnum)]
    names_off = raw[shstrndx][4]
    return [Section(_cstr(blob, names_off + r[0]), r[1], r[2], r[4], r[5], r[6], r[7], r[9]) for r in raw]


def read_ko(path: Path) -> KoInfo:
    blob = path.read_bytes()
    secs = sections(blob, str(path))
    execs = {s.name: s.size for s in secs if s.flags & SHF_ALLOC and s.flags & SHF_EXECINSTR and s.size}
    calls: dict[str, list[int]] = {}
    for rela in (s for s in secs if s.type == SHT_RELA and 0 <= s.info < len(secs)):
        target = secs[rela.info]
        if target.name not in execs or not (0 <= rela.link < len(secs)):
            continue
        symtab = secs[rela.link]
        strtab = secs[symtab.link]
        for i in range(rela.size // _RELA.size):
            r_offset, r_info, _ = _RELA.unpack_from(blob, rela.offset + i * _RELA.size)
            sym = _SYM.unpack_from(blob, symtab.offset + (r_info >> 32) * _SYM.size)
            if _cstr(blob, strtab.offset + sym[0]) == KCOV_SYMBOL:
                calls.setdefault(target.name, []).append(r_offset + 4)
    return KoInfo(execs, {k: tuple(sorted(v)) for k, v in calls.items()})

"""[fuzz] declarations: part of harness.toml's schema, its errors, and what is inferred from sources."""

from pathlib import Path

import pytest

from harness import fuzzdecl as decl
from harness import schema, tomlload, userfile
from harness.errors import UsageError
from harness.guest import fuzzmut

from conftest import REPO

FIXTURES = REPO / "tests" / "fixtures"
MODULE = '[module]\nname = "m"\nsource = "src"\ntrail = "trail.toml"\n\n'


def parse(data: dict) -> decl.FuzzDecl:
    return decl.FuzzDecl.model_validate(data)


def check(fuzz_toml: str) -> schema.ProjectFile:
    """A harness.toml with these [fuzz] tables, checked as every harness.toml is."""
    text = MODULE + fuzz_toml
    return userfile.check(schema.ProjectFile, userfile.Document(tomlload.loads(text), text, "h.toml"))


def test_the_three_kinds_become_targets_in_a_fixed_order():
    d = parse({"file": [{"path": "/proc/x"}], "netlink": [{"protocol": 30}],
               "chardev": [{"path": "/dev/x", "ioctls": [{"cmd": 0xC0084D01}, {"cmd": 0x4D02, "size": 16}]}]})
    t = d.targets()
    assert [x["key"] for x in t] == ["netlink:30", "chardev:/dev/x", "file:/proc/x"]
    # _IOC_SIZE(0xc0084d01) is 8; an explicit size wins
    assert t[1]["ioctls"] == [{"cmd": 0xC0084D01, "size": 8}, {"cmd": 0x4D02, "size": 16}]


def test_a_template_is_a_well_formed_message_from_the_fuzz_socket():
    d = parse({"netlink": [{"protocol": 31, "templates": [{"type": 16, "flags": 1, "payload": "hi",
                                                            "payload_hex": "00ff"}]}]})
    frame = bytes.fromhex(d.targets()[0]["templates"][0])
    assert frame == fuzzmut.nl_message(b"hi\x00\xff", 16, 1, 0, fuzzmut.PORT)
    assert int.from_bytes(frame[:4], "little") == 20 and len(frame) == 20


@pytest.mark.parametrize("fuzz, words", [
    ('[[fuzz.netlink]]\nprotocol = "30"\n', ["h.toml:7: fuzz.netlink[1].protocol: must be an integer"]),
    ("[[fuzz.netlink]]\nprotocol = 30\nproto = 1\n",
     ["h.toml:8: fuzz.netlink[1].proto: unknown key; did you mean 'protocol'?"]),
    ("[[fuzz.netlink]]\nprotocol = 32\n", ["h.toml:7: fuzz.netlink[1].protocol", "less than or equal to 31 (got 32)"]),
    ("[fuzz.netlink]\nprotocol = 30\n", ["fuzz.netlink: must be an array"]),
    ('[[fuzz.file]]\npath = "/tmp/x"\n', ["h.toml:7: fuzz.file[1].path: must be the file in the guest"]),
    ('[[fuzz.chardev]]\npath = "/dev/x"\nioctls = [{cmd = -1}]\n', ["h.toml:8: fuzz.chardev[1].ioctls[1].cmd"]),
    ('[[fuzz.chardev]]\npath = "/dev/x"\nioctls = [{cmd = 1, size = 5000}]\n', ["ioctls[1].size"]),
    ("[fuzz]\n", ["h.toml:6: fuzz: declares no interface"]),
    ("[[fuzz.netlink]]\nprotocol = 30\n[[fuzz.netlink]]\nprotocol = 30\n", ["declares netlink:30 twice"]),
    ("[[fuzz.socket]]\nport = 1\n",
     ["fuzz.socket: unknown table; known keys here: chardev, file, netlink"]),
])
def test_every_bad_value_is_named_with_its_file_line_and_key(fuzz, words):
    with pytest.raises(UsageError) as e:
        check(fuzz)
    for w in words:
        assert w in str(e.value)
    assert "REFERENCE.md" in e.value.hint


def test_a_good_declaration_is_part_of_the_project():
    m = check("[[fuzz.netlink]]\nprotocol = 30\n")
    assert m.fuzz is not None and [n.protocol for n in m.fuzz.netlink] == [30]
    assert check("").fuzz is None


def test_the_toml_it_prints_reads_back_as_the_same_declarations():
    d = parse({"netlink": [{"protocol": 30}], "chardev": [{"path": "/dev/x", "ioctls": [{"cmd": 0x40046601},
               {"cmd": 2, "size": 4}]}], "file": [{"path": "/proc/x"}]})
    assert check(d.toml()).fuzz == d


def test_the_projects_own_module_is_inferred_as_protocol_30():
    d, notes = decl.infer(REPO / "kernel_src")
    assert d is not None and [n.protocol for n in d.netlink] == [30] and not d.chardev and not d.file
    assert notes == ["netlink_kernel.c: netlink_kernel_create(..., MY_NETLINK, ...) -> [[fuzz.netlink]] protocol = 30"]


def test_a_device_its_ioctls_and_a_proc_file_are_inferred():
    d, notes = decl.infer(FIXTURES / "fuzz_targets" / "module")
    declared = parse(tomlload.load(FIXTURES / "fuzz_targets" / "harness.toml")["fuzz"])
    assert d == declared  # what the fixture declares by hand is what its sources make obvious
    assert len(notes) == 3


def test_an_ioctl_of_a_type_of_unknown_size_is_left_to_the_user(tmp_path: Path):
    (tmp_path / "m.c").write_text('#define X_SET _IOW(\'x\', 1, struct x_arg)\n#define X_GO _IO(\'x\', 2)\n'
                                  'static struct miscdevice md = {\n .name = "xdev",\n};\n')
    d, notes = decl.infer(tmp_path)
    assert d is not None and d.chardev[0].path == "/dev/xdev"
    assert [i.cmd for i in d.chardev[0].ioctls] == [decl.ioc(None, "x", 2, 0)]
    assert any("struct x_arg" in n and "declare it" in n for n in notes)


def test_nothing_to_infer(tmp_path: Path):
    (tmp_path / "m.c").write_text("int x;\n")
    assert decl.infer(tmp_path) == (None, [])


def test_ioc_matches_the_kernels_encoding():
    assert decl.ioc("W", "f", 1, 4) == 0x40046601
    assert decl.ioc("R", "f", 2, 4) == 0x80046602
    assert decl.ioc("WR", "M", 1, 8) == 0xC0084D01


def test_a_templates_framing_is_the_guests():
    """fuzzdecl frames templates itself (the schema at the package's base may not import the guest's
    programs): its header, port, padding and size limit are guest/fuzzmut.py's."""
    from harness.guest import fuzzmut
    assert decl.MAX_DATA == fuzzmut.MAX_DATA and decl.PORT == fuzzmut.PORT
    for body, mtype, flags, seq in ((b"", 0, 0, 0), (b"Hello", 16, 1, 7), (b"x" * 13, 0xFFFF, 0x301, 0xFFFFFFFF)):
        assert decl.nl_message(body, mtype, flags, seq) == fuzzmut.nl_message(body, mtype, flags, seq)

"""``harness init``: module names from kbuild files, and a harness.toml that loads."""

import pytest

from harness import scaffold
from harness.errors import UsageError
from harness.project import load_project


@pytest.mark.parametrize("text, names", [
    ("obj-m := v4l2loopback.o\n", ["v4l2loopback"]),
    ("obj-m += hello-1.o\nobj-m += hello-2.o \\\n  hello-3.o  # and more\n", ["hello-1", "hello-2", "hello-3"]),
    ("MOD = kh_echo\nobj-m += $(MOD).o\nall:\n\tmake -C $(KDIR) M=$(PWD) modules\n", ["kh_echo"]),
    ("CONFIG_VHBA = m\nobj-$(CONFIG_VHBA) += vhba.o\nobj-$(CONFIG_OTHER) += other.o\n", ["vhba"]),
    ("ifneq ($(KERNELRELEASE),)\nobj-m := a.o\nelse\nKDIR ?= /lib/modules/x/build\nendif\n", ["a"]),
    ("# obj-m += commented.o\nobj-y += builtin.o\n", []),
])
def test_obj_m_names(text, names):
    assert scaffold.obj_m(text) == names


def test_init_writes_a_project_that_loads(tmp_path):
    (tmp_path / "Makefile").write_text("obj-m += vinput.o\nobj-m += vkbd.o\n")
    path, text = scaffold.init(tmp_path)
    assert path == tmp_path / "harness.toml" and path.read_text() == text
    p = load_project(tmp_path)
    assert [m.name for m in p.modules] == ["vinput", "vkbd"] and p.source == tmp_path
    assert p.trail == tmp_path / "trail.toml"


def test_a_kbuild_file_is_read_before_the_makefile(tmp_path):
    (tmp_path / "Kbuild").write_text("obj-m := real.o\n")
    (tmp_path / "Makefile").write_text("all:\n\t$(MAKE) -C $(KERNEL_DIR) M=$(PWD)\n")
    scaffold.init(tmp_path)
    assert load_project(tmp_path).module == "real"


def test_an_existing_harness_toml_is_kept_unless_forced(tmp_path):
    (tmp_path / "Kbuild").write_text("obj-m := m.o\n")
    (tmp_path / "harness.toml").write_text("# mine\n")
    with pytest.raises(UsageError, match="exists; nothing was written") as e:
        scaffold.init(tmp_path)
    assert "--force" in str(e.value) and (tmp_path / "harness.toml").read_text() == "# mine\n"
    scaffold.init(tmp_path, force=True)
    assert load_project(tmp_path).module == "m"


def test_a_directory_without_obj_m_is_a_usage_error(tmp_path):
    (tmp_path / "Makefile").write_text("all:\n\techo\n")
    with pytest.raises(UsageError, match="no obj-m module names"):
        scaffold.init(tmp_path)
    assert not (tmp_path / "harness.toml").exists()

"""Files that ship inside the package: the ``vm/`` data and the guest-side programs.

Read through ``importlib.resources``, so they are found wherever the package is
installed (a wheel in any virtualenv, or an editable checkout, where
``harness.vm`` is the repository's top-level ``vm/`` folder: see pyproject.toml).
"""

from __future__ import annotations

import shutil
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

from harness import contract
from harness.errors import InfraError

if TYPE_CHECKING:
    from importlib.abc import Traversable

DATA_PACKAGE = "harness.vm"
GUEST_PACKAGE = "harness.guest"
GUEST_FILES = (contract.RUNNER_FILE, contract.CONTRACT_FILE, "ssh-up.sh")


def _folder(package: str) -> "Traversable":
    try:
        return resources.files(package)
    except ModuleNotFoundError:
        raise InfraError(f"kmod-harness's data package {package} is not installed",
                         hint="install kmod-harness (pip install . in its source tree, or `make setup`); "
                         "a source tree on PYTHONPATH alone lacks it") from None


def _file(package: str, *parts: str) -> Path:
    ref = _folder(package).joinpath(*parts)
    path = Path(str(ref))
    if not path.is_file():
        raise InfraError(f"kmod-harness is installed without its file {package}/{'/'.join(parts)}",
                         hint="reinstall the package (pip install --force-reinstall kmod-harness)")
    return path


def data(name: str) -> Path:
    """A file of ``vm/``: ``splats.toml``, ``trail.toml``, ``kernels.toml``."""
    return _file(DATA_PACKAGE, name)


def flavours() -> list[str]:
    """Configuration fragments a ``debian-src:`` kernel can be built with (``vm/configs/*.config``)."""
    folder = _folder(DATA_PACKAGE).joinpath("configs")
    return sorted(p.name[: -len(".config")] for p in folder.iterdir() if p.name.endswith(".config"))


def config_fragment(flavour: str) -> Path:
    return _file(DATA_PACKAGE, "configs", f"{flavour}.config")


# Shared vocabulary the guest's programs import: it lives at the package's base, not in guest/.
BASE_GUEST_FILES = (contract.CONTRACT_FILE, "faultplan.py")


def guest_file(name: str) -> Path:
    """A file the guest runs or imports, as the package ships it (``harness/guest/NAME``, or
    ``harness/NAME`` for the shared vocabulary)."""
    return _file("harness" if name in BASE_GUEST_FILES else GUEST_PACKAGE, name)


def install_guest_files(run_dir: Path) -> None:
    """Put the guest runner, the contract it imports and the SSH start-up script into a run directory."""
    for name in GUEST_FILES:
        shutil.copy(guest_file(name), run_dir / name)

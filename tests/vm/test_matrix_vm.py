"""Matrix smoke test: every kernel of vm/kernels.toml, one boot each, all passing (TCG here).

The host's own kernels run in `make test`; those of other architectures (marked arches) in
`make test-arches`, with the other tests of those guests: their roots and module builds go through
qemu-user and take minutes."""

import json

import pytest

from harness import arches, cli, matrix
from harness.kernel.spec import parse_spec

from conftest import REPO, foreign_root_or_skip

pytestmark = pytest.mark.vm


def check_matrix(res_dir, specs: list[str]) -> None:
    """`harness matrix --kernels SPECS` passed on every kernel, each with its own results."""
    code = cli.main(["matrix", "--kernels", ",".join(specs), "--results", str(res_dir)])
    data = json.loads((res_dir / "matrix.json").read_text())
    assert [k["kernel"] for k in data["kernels"]] == specs
    failed = {k["kernel"]: k["reason"] for k in data["kernels"] if k["verdict"] != "pass"}
    assert not failed and code == 0, failed
    assert all(k["package_version"] and k["kernel_release"] for k in data["kernels"])
    assert all(k["build_warnings"] == 0 for k in data["kernels"]), "W=1 must be clean on every kernel"
    summary = (res_dir / "summary.md").read_text()
    assert summary.count("| pass |") == len(specs)
    for k in data["kernels"]:
        assert (res_dir / k["kernel"].replace(":", "-") / "result.json").is_file()


def specs_for(foreign: bool) -> list[str]:
    """The matrix's kernels of the host's architecture, or of the others."""
    specs = [e.spec for e in matrix.load_matrix()]
    chosen = [s for s in specs if arches.foreign(arches.get(parse_spec(s).arch)) == foreign]
    assert chosen, f"vm/kernels.toml lists no {'foreign' if foreign else 'native'} kernel: {specs}"
    return chosen


def test_every_default_kernel_of_the_hosts_architecture_builds_loads_and_passes(own_tmp, monkeypatch):
    monkeypatch.chdir(REPO)
    specs = specs_for(foreign=False)
    check_matrix(own_tmp / "results", specs)
    data = json.loads((own_tmp / "results" / "matrix.json").read_text())
    releases = {k["kernel_release"].split(".")[0] + "." + k["kernel_release"].split(".")[1].split("-")[0]
                for k in data["kernels"]}
    assert {"5.10", "6.1", "6.12"} <= releases
    # Each booted through PVH (harness/kernel/pvh.py): xz-packed kernels (5.10, 6.1) and zstd ones (6.12 on).
    heads = {p.parent.name: p.read_text().splitlines()[0] for p in (own_tmp / "results").glob("*/console.log")}
    assert len(heads) == len(specs), heads
    assert all(" --run " in h and "/boot/vmlinux-" in h for h in heads.values()), heads


@pytest.mark.arches
def test_every_default_kernel_of_another_architecture_builds_loads_and_passes(own_tmp, monkeypatch):
    monkeypatch.chdir(REPO)
    specs = [foreign_root_or_skip(s) for s in specs_for(foreign=True)]
    check_matrix(own_tmp / "results", specs)
    data = json.loads((own_tmp / "results" / "matrix.json").read_text())
    for k in data["kernels"]:
        assert k["kernel_release"].endswith("-" + arches.get(parse_spec(k["kernel"]).arch).flavour), k

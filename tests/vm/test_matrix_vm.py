"""Matrix smoke test: every kernel of vm/kernels.toml, one boot each, all passing (TCG here)."""

import json

import pytest

from harness import cli, matrix

from conftest import REPO

pytestmark = pytest.mark.vm


def test_every_default_kernel_builds_loads_and_passes(own_tmp, monkeypatch):
    monkeypatch.chdir(REPO)
    res_dir = own_tmp / "results"
    code = cli.main(["matrix", "--results", str(res_dir)])
    data = json.loads((res_dir / "matrix.json").read_text())
    specs = [e.spec for e in matrix.load_matrix()]
    assert [k["kernel"] for k in data["kernels"]] == specs
    failed = {k["kernel"]: k["reason"] for k in data["kernels"] if k["verdict"] != "pass"}
    assert not failed and code == 0, failed
    assert all(k["package_version"] and k["kernel_release"] for k in data["kernels"])
    assert all(k["build_warnings"] == 0 for k in data["kernels"]), "W=1 must be clean on every kernel"
    releases = {k["kernel_release"].split(".")[0] + "." + k["kernel_release"].split(".")[1].split("-")[0]
                for k in data["kernels"]}
    assert {"5.10", "6.1", "6.12"} <= releases
    summary = (res_dir / "summary.md").read_text()
    assert summary.count("| pass |") == len(specs)
    for k in data["kernels"]:
        assert (res_dir / k["kernel"].replace(":", "-") / "result.json").is_file()

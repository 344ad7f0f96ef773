"""`harness faults` on the debug kernel (debian-src:trixie+debug): fault injection, KASAN, kmemleak.

The kernel is built from trixie's linux-source once (~30 min on 2 cores) and cached.
These tests run when it is cached, or always with HARNESS_DEBUG_KERNEL=1 (whose make
target builds it first); otherwise they are skipped, saying how to get them.
"""

import json
import re
import time

import pytest

from harness import cli
from harness.faultdecode import NO_STACK
from harness.run import results_id

from conftest import REPO, built_kernel_or_skip

pytestmark = [pytest.mark.vm, pytest.mark.debug_kernel]

SPEC = "debian-src:trixie+debug"
FAULTY = REPO / "tests" / "fixtures" / "faulty"


@pytest.fixture(scope="module")
def debug_kernel():
    return built_kernel_or_skip(SPEC, "HARNESS_DEBUG_KERNEL", "test-debug")


# A debug guest boots in 1.5-5 minutes under TCG, and took over 20 on this machine when it was shared
# (load 10 on 2 cores): the walk's boot limit is set far above its default here.
BOOT_LIMIT = "3600"


def walk(results, *args: str) -> tuple[int, dict, float]:
    t0 = time.monotonic()
    code = cli.main(["faults", "--kernel", SPEC, "--results", str(results), "--timeout", BOOT_LIMIT, *args])
    doc = json.loads((results / results_id(SPEC) / "faults.json").read_text())
    return code, doc, time.monotonic() - t0


def marked_line(marker: str) -> str:
    """faulty.c:N of the line the fixture marks with ``marker``."""
    lines = (FAULTY / "module" / "faulty.c").read_text().splitlines()
    return f"faulty.c:{next(i for i, line in enumerate(lines, 1) if marker in line)}"


def test_two_error_path_bugs_are_two_findings_at_their_call_sites(debug_kernel, own_tmp):
    code, doc, _ = walk(own_tmp, "--project", str(FAULTY))
    assert code == 1, doc["reason"]
    by_kind = {f["consequence"]: f for f in doc["findings"]}
    assert sorted(by_kind) == ["kasan", "kmemleak"], [(f["site"], f["consequence"], f["headline"])
                                                      for f in doc["findings"]]
    leak, double = by_kind["kmemleak"], by_kind["kasan"]
    # The leak: init's second allocation failed, and the first one's object was never freed.
    assert leak["step"] == "init" and leak["site"] == marked_line("/* fault site: init leak */"), leak
    assert leak["function"] == "kstrdup" and leak["fault"] == "failslab"
    assert leak["headline"].startswith("kmemleak: unreferenced object")
    # Its backtrace, printed once the module was gone, decoded: the object came from kzalloc in faulty_init.
    assert any("faulty_init" in line and "faulty.c:" in line for line in leak["module_frames"]), leak
    # The double free: the write path's second allocation failed, and the copy was freed twice.
    assert double["step"] == "write" and double["site"] == marked_line("/* fault site: write double free */"), double
    assert double["function"] == "kasprintf"
    assert "double-free" in double["headline"] and "faulty_write" in double["headline"]
    assert any("faulty_write" in line for line in double["module_frames"])
    # Every phase was walked to a pass that injected nothing; the clean passes are passes.
    assert all(p["complete"] for p in doc["phases"]), doc["phases"]
    assert doc["points_walked"] == sum(p["points"] for p in doc["phases"])
    outcomes = {o for row in doc["table"] for o in row["outcomes"]}
    assert "error returned" in outcomes
    # The double free tainted the kernel: the walk went on on a fresh guest.
    assert doc["guests"] >= 2
    junit = (own_tmp / "junit.xml").read_text()
    # one case per point, failed where the point has a finding: the fault numbering depends on the slab
    # allocator's state, so on a fresh guest the same call site can come again at another n (one finding,
    # "also at" that point, and one more failed case)
    with_findings = [p for p in doc["points"] if p["outcome"] == "finding"]
    assert junit.count("<testcase ") == len(doc["points"]) and junit.count("<failure ") == len(with_findings) >= 2
    page = (own_tmp / "index.html").read_text()
    assert leak["site"] in page and double["site"] in page
    # The command a finding prints walks that point alone, and finds it again.
    assert re.fullmatch(r"harness faults --kernel \S+ --project \S+ --step write --only \d+", double["reproduce"])
    args = double["reproduce"].split()[2:]
    code2, doc2, _ = walk(own_tmp / "again", *[a for a in args if a not in ("--kernel", SPEC)])
    assert code2 == 1 and [f["site"] for f in doc2["findings"]] == [double["site"]], doc2["findings"]
    assert doc2["points_walked"] == 1


def test_the_same_module_with_its_error_paths_right_has_no_finding(debug_kernel, own_tmp):
    code, doc, _ = walk(own_tmp, "--project", str(FAULTY / "fixed.toml"))
    assert doc["findings"] == [], doc["findings"]
    assert code == 0, doc["reason"]
    assert all(p["complete"] for p in doc["phases"]) and doc["guests"] == 1
    assert doc["points_walked"] >= 4


def test_a_point_that_kills_the_guest_is_a_finding_and_the_walk_goes_on_on_a_fresh_one(debug_kernel, own_tmp):
    code, doc, _ = walk(own_tmp, "--project", str(FAULTY / "oops.toml"), "--step", "write")
    assert code == 1, doc["reason"]
    site = marked_line("/* fault site: write double free */")
    crash = [f for f in doc["findings"] if f["consequence"] in ("bug", "oops")]
    assert len(crash) == 1 and crash[0]["site"] == site, doc["findings"]
    assert "NULL pointer dereference" in crash[0]["headline"] or crash[0]["headline"].startswith("Oops")
    # one report, one finding: its Oops line and the panic it ended in are not findings of their own
    assert [f["consequence"] for f in doc["findings"] if f["site"] == site] == [crash[0]["consequence"]]
    # the guest died in that point; the walk went on on a fresh guest, to a pass that injected nothing
    assert doc["guests"] >= 2 and doc["phases"][0]["complete"], doc["guest_ends"]
    died = next(p for p in doc["points"] if (p["step"], p["n"]) == ("write", crash[0]["n"]))
    assert died["seconds"] is None  # no result came: it was judged from what the guest got out
    assert not any(p["n"] == crash[0]["n"] + 1 and p["guest"] == died["guest"] for p in doc["points"])


def test_the_netlink_module_has_no_finding_in_init_and_the_client(debug_kernel, own_tmp):
    code, doc, secs = walk(own_tmp, "--project", str(REPO))
    assert doc["findings"] == [], doc["findings"]
    assert code == 0, doc["reason"]
    phases = {p["step"]: p for p in doc["phases"]}
    assert sorted(phases) == ["client", "init"]
    assert all(p["complete"] and p["calls"] for p in phases.values()), phases
    # every injected call the kernel logged a stack for resolved to the module's source: netlink_kernel_create
    # in init, the reply's nlmsg_new (inlined from netlink_msg.h) in the client
    sites = {p["site"] for p in doc["points"] if p["injected"] and p["site_frame"] != NO_STACK}
    assert sites and all(re.fullmatch(r"netlink_(kernel\.c|msg\.h):\d+", s or "") for s in sites), sites
    print(f"\nnetlink module: {doc['points_walked']} points ({phases['init']['points']} in init, "
          f"{phases['client']['points']} in the client) on {doc['guests']} guest(s) in {secs:.0f}s")

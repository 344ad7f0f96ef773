"""results/index.html in a real browser: headless Chromium (Debian's) driven by Playwright loads the
page from disk, and the tests read the page's text as the browser shows it, not the HTML source."""

import json
import shutil

import pytest

from harness.resultjson import load as result_from_json
from harness.run import index_html, results_id
from harness.verdict import compare

from conftest import DATA

CHROMIUM = "/usr/bin/chromium"
RUNS = {"forged_bug": "debian:bookworm", "inlined_trixie": "debian:trixie"}


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    if shutil.which(CHROMIUM) is None:
        pytest.fail(f"{CHROMIUM} is missing: `make setup` installs Debian's chromium for this test")
    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
            "--disable-sync", "--no-first-run"])
        yield b
        b.close()


@pytest.fixture
def matrix_page(tmp_path):
    """A matrix of two recorded runs (a pass, and a crash in an inlined helper), with their evidence."""
    results = []
    for name, kernel in RUNS.items():
        shutil.copytree(DATA / name, tmp_path / results_id(kernel))
        results.append(result_from_json(json.loads((DATA / name / "result.json").read_text())))
    old = [compare.Outcome(kernel="debian:bookworm", verdict="pass"), compare.Outcome(kernel="debian:trixie",
                                                                                      verdict="pass")]
    rows = compare.compare([compare.Outcome.of(r) for r in results], old)
    (tmp_path / "index.html").write_text(index_html(results, rows, "kmod-harness matrix", 81.0))
    return tmp_path


def test_the_matrix_page_shows_the_grid_timelines_trail_and_decoded_trace(browser, matrix_page):
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    requests = []
    page.on("request", lambda r: requests.append(r.url))
    page.goto((matrix_page / "index.html").as_uri())
    grid = page.inner_text("#grid")
    assert "debian:bookworm" in grid and "debian:trixie" in grid and "6.12.118+deb13-amd64" in grid
    assert "PASS" in grid and "CRASH" in grid  # as shown (CSS upper-cases it), not as written
    assert "new failure" in grid and "verdict: pass -> crash" in grid
    text = page.inner_text("body")
    assert "splatter.c:249" in text and "inlined from splatter_count" in text
    hot = page.inner_text("pre.source .hot")
    assert "249" in hot and "(*item->count)++;" in hot
    assert page.locator(".bar").count() >= 3  # phases of both runs and a guest's start-up
    assert "MyNetlink has received: x Oops: 0002 [#1] PREEMPT SMP NOPTI" in page.inner_text("table.trail")
    page.click("a[href='debian-trixie/console.log']")
    page.wait_for_url("**/debian-trixie/console.log")
    assert "BUG: kernel NULL pointer dereference" in page.inner_text("body")
    assert all(u.startswith("file://") for u in requests), requests  # nothing fetched from anywhere
    page.go_back()
    page.screenshot(path=str(matrix_page / "screenshot.png"), full_page=True)
    assert (matrix_page / "screenshot.png").stat().st_size > 20000


def test_a_single_run_page_links_its_evidence(browser, tmp_path):
    shutil.copytree(DATA / "inlined_bookworm", tmp_path / "debian-bookworm")
    r = result_from_json(json.loads((DATA / "inlined_bookworm" / "result.json").read_text()))
    (tmp_path / "index.html").write_text(index_html([r], [], "kmod-harness: debian:bookworm"))
    page = browser.new_page()
    page.goto((tmp_path / "index.html").as_uri())
    links = page.eval_on_selector_all("a", "els => els.map(e => e.getAttribute('href'))")
    assert "debian-bookworm/console.log" in links and "debian-bookworm/result.json" in links
    assert "read console.log first" in page.inner_text("body")

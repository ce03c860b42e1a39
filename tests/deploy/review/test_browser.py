"""The review page in a real headless browser (Debian's Chromium driven by Playwright): the page
of ``rareid search --html`` opened from ``file://`` with every network request refused, each
query and match drawn, filters, keyboard and clicks, the reviewer's marks exported as labels and
read back by ``rareid calibrate``, then searched again with the new thresholds; ``rareid serve``
started on a free loopback port, a crop uploaded, its ranking compared with ``rareid search``'s;
and 10,000 queries drawn a page at a time."""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from rareid.deploy.report.page import write_report
from tests.deploy.conftest import run_cli
from tests.deploy.review.conftest import TOP_K, person_of, search_html

ROOT = Path(__file__).resolve().parents[3]
HOW = (
    "browser tests need Chromium and Playwright: apt-get install -y chromium && pip install "
    "playwright (make test installs playwright; .ci/run installs chromium)"
)


def chromium() -> str | None:
    for name in (os.environ.get("RAREID_CHROMIUM", ""), "chromium", "chromium-browser"):
        if name and shutil.which(name):
            return shutil.which(name)
    return None


pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("one_torch_thread")]
if chromium() is None:  # one line for the whole module, saying how to run it
    pytest.skip(HOW, allow_module_level=True)
playwright = pytest.importorskip("playwright.sync_api", reason=HOW)


@pytest.fixture(scope="module")
def browser():
    with playwright.sync_playwright() as driver:
        launched = driver.chromium.launch(executable_path=chromium(), args=["--no-sandbox"])
        yield launched
        launched.close()


def offline_page(browser, tmp_path: Path, height: int = 2400):
    """A page that refuses (and records) every request that is not to a local file or the
    loopback server."""
    context = browser.new_context(viewport={"width": 1400, "height": height}, accept_downloads=True)
    page = context.new_page()
    page.refused = []

    def route(request_route):
        url = request_route.request.url
        local = url.startswith(("file:", "blob:", "data:", "http://127.0.0.1:"))
        if local:
            request_route.continue_()
        else:
            page.refused.append(url)
            request_route.abort()

    page.route("**/*", route)
    return page


def shot(page, name: str, tmp_path: Path) -> None:
    """A JPEG screenshot of the viewport: the page draws pixels, not only elements."""
    page.screenshot(path=str(tmp_path / name), type="jpeg", quality=80)
    assert (tmp_path / name).stat().st_size > 10_000


def mark_all_by_truth(page) -> None:
    """Mark every match: correct when the gallery file is the query's person. One match is
    marked with the keyboard first (j, l, c), then all by clicks (a click corrects it)."""
    page.keyboard.press("j")
    page.keyboard.press("l")
    assert page.locator(".match.focused").count() == 1
    page.keyboard.press("c")
    assert "marked-correct" in page.locator(".match.focused").get_attribute("class")
    for row in range(page.locator(".query").count()):
        query = page.locator(".query").nth(row)
        label = query.locator(".label").inner_text()
        for rank in range(query.locator(".match").count()):
            match = query.locator(".match").nth(rank)
            name = match.locator(".name").inner_text().split(" ", 1)[1]
            wanted = "correct" if person_of(name) == person_of(label) else "wrong"
            if f"marked-{wanted}" not in match.get_attribute("class"):
                query.locator(".match").nth(rank).locator(f"button[data-mark={wanted}]").click()


def test_review_page_filters_exports_labels_and_feeds_calibrate(tmp_path, review, browser):
    index = tmp_path / "gallery.npz"  # calibrate writes into the index: a copy of it
    shutil.copyfile(review.index, index)
    review = type(review)(**{**vars(review), "index": index})
    out = tmp_path / "matches"
    assert search_html(review, out, "--no-sheets") == 0
    rows = json.loads((out / "results.json").read_text())["matches"]
    page = offline_page(browser, tmp_path)
    page.goto((out / "index.html").as_uri())
    page.wait_for_selector("body[data-ready=true]")
    assert page.locator(".query").count() == 6
    # every query and every match drawn, with its name and a loaded thumbnail
    for query in page.locator(".query").all():
        label = query.locator(".label").inner_text()
        own = [row for row in rows if Path(row["query"]).name == label]
        names = [text.split(" ", 1)[1] for text in query.locator(".match .name").all_inner_texts()]
        assert names == [row["gallery"] for row in own] and len(names) == TOP_K
        assert f"level {own[0]['level']}" in query.locator(".facts").inner_text()
    page.wait_for_function(
        "Array.from(document.images).filter(i => i.closest('#list'))"
        ".every(i => i.complete && i.naturalWidth > 0)"
    )
    # filters
    page.fill("#filter-name", "q3")
    assert page.locator(".query").count() == 1
    page.fill("#filter-name", "")
    page.select_option("#filter-verdict", "same")
    assert page.locator(".query").count() == 0  # no calibration yet: all uncalibrated
    page.select_option("#filter-verdict", "uncalibrated")
    assert page.locator(".query").count() == 6
    page.select_option("#filter-verdict", "")
    page.select_option("#page-size", "10")
    page.select_option("#sort", "distance")
    tops = [
        float(t.split("d ")[1].split(":")[0])
        for t in page.locator(".match:first-child .dist").all_inner_texts()
    ]
    assert tops == sorted(tops)
    page.select_option("#sort", "name")
    # a click opens the full-size file; Escape closes it
    page.locator(".query").first.locator(".match img").first.click()
    page.wait_for_function("document.getElementById('viewer-img').naturalHeight > 0")
    assert page.evaluate("document.getElementById('viewer-img').naturalHeight") == 128
    page.keyboard.press("Escape")
    assert page.locator("#viewer").is_hidden()
    page.keyboard.press("j")  # the first query, its second match, full size
    page.keyboard.press("l")
    page.keyboard.press("l")
    page.keyboard.press("Enter")
    second = page.locator(".query").first.locator(".match .name").nth(1).inner_text()
    assert page.locator("#viewer-name").inner_text() == second.split(" ", 1)[1]
    page.keyboard.press("Escape")
    mark_all_by_truth(page)
    with page.expect_download() as download:
        page.click("#export")
    labels = tmp_path / "labels.csv"
    download.value.save_as(labels)
    assert not page.refused  # nothing went to the network
    page.context.close()

    with open(labels, newline="") as stream:
        table = list(csv.DictReader(stream))
    confirmed = [row for row in table if not row["person"].startswith("unconfirmed-")]
    assert len(confirmed) >= 12 and len(table) == len({row["path"] for row in table})
    for row in confirmed:  # each confirmed image is the person of the query it was marked for
        assert person_of(row["path"]) == person_of(row["person"] + ".png")
    assert run_cli(["calibrate", "--index", str(index), "--labels", str(labels)]) == 0
    calibration = json.loads((tmp_path / "calibration.json").read_text())
    level = str(rows[0]["level"])
    assert "0.01" in calibration["levels"][level]["thresholds"]
    again = tmp_path / "again"
    assert search_html(review, again, "--no-sheets", "--far", "0.01") == 0
    verdicts = [
        row["verdict"] for row in json.loads((again / "results.json").read_text())["matches"]
    ]
    assert "uncalibrated" not in verdicts and "same" in verdicts
    page = offline_page(browser, tmp_path, height=1000)
    page.goto((again / "index.html").as_uri())
    page.wait_for_selector("body[data-ready=true]")
    assert page.locator(".match.same").count() == verdicts.count("same")
    shot(page, "review_page.jpg", tmp_path)
    page.context.close()


def test_serve_page_uploads_a_crop_and_ranks_as_search_does(tmp_path, review, browser):
    out = tmp_path / "matches"
    assert search_html(review, out, "--no-sheets") == 0
    crop = review.queries / "q4.png"
    expected = [
        row["gallery"]
        for row in json.loads((out / "results.json").read_text())["matches"]
        if Path(row["query"]).name == crop.name
    ]
    environment = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "rareid", "serve", "--index", str(review.index), "--port", "0"]
    server = subprocess.Popen(
        [*command, "--top-k", str(TOP_K)], stdout=subprocess.PIPE, text=True, env=environment
    )
    try:
        line = server.stdout.readline()
        assert "on http://127.0.0.1:" in line, line
        url = line.rsplit(" ", 1)[1].strip()
        page = offline_page(browser, tmp_path, height=900)
        page.goto(url)
        page.wait_for_selector("body[data-ready=true]")
        assert page.locator("#drop").is_visible()
        page.set_input_files("#upload", str(crop))
        page.wait_for_selector(".query .match")
        names = [t.split(" ", 1)[1] for t in page.locator(".query .match .name").all_inner_texts()]
        assert names == expected
        page.wait_for_function(
            "Array.from(document.images).filter(i => i.closest('#list'))"
            ".every(i => i.complete && i.naturalWidth > 0)"
        )
        page.set_input_files("#upload", str(ROOT / "pyproject.toml"))
        page.wait_for_selector("#upload-status.error")
        assert "not a usable image" in page.locator("#upload-status").inner_text()
        page.evaluate(  # a crop dropped on the drop zone
            """([name, bytes]) => {
                const data = new DataTransfer();
                data.items.add(new File([new Uint8Array(bytes)], name, {type: "image/png"}));
                const drop = document.getElementById("drop");
                drop.dispatchEvent(new DragEvent("drop", {dataTransfer: data, bubbles: true}));
            }""",
            [crop.name, list(crop.read_bytes())],
        )
        page.wait_for_function("document.querySelectorAll('.query').length == 2")
        dropped = page.locator(".query").first.locator(".match .name").all_inner_texts()
        assert [text.split(" ", 1)[1] for text in dropped] == expected
        shot(page, "serve_page.jpg", tmp_path)
        assert not page.refused
        page.context.close()
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_ten_thousand_queries_are_drawn_a_page_at_a_time(tmp_path, browser) -> None:
    import cv2

    crop = tmp_path / "crop.png"
    cv2.imwrite(str(crop), np.full((40, 20, 3), 90, np.uint8))
    queries = [
        {"name": f"q{n:05d}.png", "path": crop, "level": 1 + n % 4, "height": 40, "width": 20}
        for n in range(10_000)
    ]
    matches = [
        [
            {
                "gallery": f"g{(n + r) % 300}.png",
                "path": crop,
                "distance": r + n / 1e4,
                "verdict": "uncalibrated",
            }
            for r in range(10)
        ]
        for n in range(10_000)
    ]
    page_file, _ = write_report(tmp_path / "big", queries, matches, title="10,000 queries")
    page = offline_page(browser, tmp_path, height=900)
    page.goto(page_file.as_uri())
    page.wait_for_selector("body[data-ready=true]")
    assert page.locator(".query").count() == 25  # one page, not 10,000 rows
    assert page.locator("#list img").count() == 25 * 11
    assert page.evaluate(
        "Array.from(document.images).filter(i => i.closest('#list')).every(i => i.loading === 'lazy')"
    )
    assert "page 1 of 400" in page.locator("#page-info").inner_text()
    page.fill("#filter-name", "q09999")
    assert page.locator(".query .label").all_inner_texts() == ["q09999.png"]
    page.fill("#filter-name", "")
    page.select_option("#filter-level", "3")
    assert "2500 of 10000 queries shown" in page.locator("#summary").inner_text()
    page.keyboard.press("n")  # typed into the select: not a page turn
    assert "page 1 of 100" in page.locator("#page-info").inner_text()
    page.keyboard.press("Escape")  # leaves the select
    page.keyboard.press("n")
    assert "page 2 of 100" in page.locator("#page-info").inner_text()
    assert not page.refused
    page.context.close()

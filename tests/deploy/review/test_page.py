"""``rareid search --html``: the review page's inlined results against results.json, its
thumbnails, its self-containment (no network address), and its size at 10,000 queries."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from rareid.deploy.report.page import plain_ranks, render_page, write_report
from tests.deploy.review.conftest import TOP_K, search_html

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def page_data(page: Path) -> dict:
    """The JSON the page inlines."""
    text = page.read_text()
    found = re.search(
        r'<script type="application/json" id="rareid-data">(.*?)</script>', text, re.S
    )
    assert found is not None
    return json.loads(found.group(1))


def test_search_html_inlines_every_query_and_match(tmp_path, review, capsys) -> None:
    out = tmp_path / "matches"
    assert search_html(review, out, "--no-sheets") == 0
    assert f"review page {out / 'index.html'}" in capsys.readouterr().out
    data = page_data(out / "index.html")
    rows = json.loads((out / "results.json").read_text())["matches"]
    assert data["mode"] == "file" and data["labels"] is True
    assert len(data["queries"]) == len(list(review.queries.iterdir())) == 6
    for query in data["queries"]:
        own = [row for row in rows if row["query"] == query["name"]]
        assert len(query["matches"]) == len(own) == TOP_K
        assert query["level"] == own[0]["level"] and query["size"] == (
            f"{own[0]['query_height']}x{own[0]['query_width']} px"
        )
        for match, row in zip(query["matches"], own, strict=True):
            assert data["gallery"][match["g"]]["name"] == row["gallery"]
            assert (match["d"], match["v"], match["s"]) == (
                row["distance"],
                row["verdict"],
                row["gallery_status"],
            )
            assert match["p"] == row["rank"]  # no re-ranking: nothing moved
        # thumbnails by relative path, full size by a path relative to the page
        assert (out / query["thumb"]).stat().st_size > 100
        assert (out / query["full"]).resolve() == Path(query["name"]).resolve()
    for entry in data["gallery"]:
        assert (out / entry["thumb"]).is_file()
        assert (out / entry["full"].replace("%20", " ")).resolve() == (
            review.gallery / entry["name"]
        ).resolve()
    text = (out / "index.html").read_text()
    assert not re.search(r"(src|href)=[\"']?(https?:)?//", text)  # no CDN, no network
    assert "http://" not in text and "https://" not in text


def test_rerank_marks_the_matches_it_moved(tmp_path, review) -> None:
    out = tmp_path / "reranked"
    assert search_html(review, out, "--no-sheets", "--rerank", "--backend", "torch") == 0
    data = page_data(out / "index.html")
    rows = json.loads((out / "results.json").read_text())["matches"]
    assert data["rerank"] is True
    for query in data["queries"]:
        own = [row for row in rows if row["query"] == query["name"]]
        expected = plain_ranks(own)
        assert [match["p"] for match in query["matches"]] == expected
        assert [match["o"] for match in query["matches"]] == [r["rerank_distance"] for r in own]
    assert plain_ranks([{"distance": 3}, {"distance": 1}, {"distance": 2}]) == [3, 1, 2]


def test_file_names_cannot_break_out_of_the_page(tmp_path) -> None:
    crop = tmp_path / "q.png"
    import cv2

    cv2.imwrite(str(crop), np.zeros((20, 10, 3), np.uint8))
    hostile = "</script><script>alert(1)</script>.png"
    page, unreadable = write_report(
        tmp_path / "out",
        [{"name": hostile, "label": hostile, "path": crop, "level": 1, "height": 20, "width": 10}],
        [[{"gallery": hostile, "path": tmp_path / "gone.png", "distance": 1.0, "verdict": "same"}]],
        title="<b>t</b>",
    )
    text = page.read_text()
    assert "</script><script>alert" not in text and "<b>t</b>" not in text
    assert unreadable == 1  # the missing gallery file: shown without a thumbnail
    assert page_data(page)["queries"][0]["label"] == hostile


def test_ten_thousand_queries_stay_a_light_page(tmp_path) -> None:
    """At 10,000 queries x 10 matches the page holds no <img> (the script draws one page of
    queries at a time, with lazy thumbnails), one thumbnail per distinct image and ~100 bytes
    per match of inlined JSON."""
    import cv2

    images = []
    for number in range(3):
        path = tmp_path / "crops" / f"c{number}.png"
        path.parent.mkdir(exist_ok=True)
        cv2.imwrite(str(path), np.full((40, 20, 3), 60 * number, np.uint8))
        images.append(path)
    queries = [
        {
            "name": f"q/{n:05d}.png",
            "path": images[n % 3],
            "level": 1 + n % 4,
            "height": 40,
            "width": 20,
        }
        for n in range(10_000)
    ]
    matches = [
        [
            {
                "gallery": f"g{(n + r) % 500}.png",
                "path": images[r % 3],
                "distance": 0.1 * r,
                "threshold": 0.5,
                "verdict": "same" if r < 5 else "different",
            }
            for r in range(10)
        ]
        for n in range(10_000)
    ]
    page, _ = write_report(tmp_path / "out", queries, matches, title="big")
    text = page.read_text()
    assert text.count("<img") == 1 and 'node.loading = "lazy"' in text  # the viewer's
    assert len(list((tmp_path / "out" / "thumbs").rglob("*.jpg"))) == 3  # 1 per distinct file
    assert page.stat().st_size < 110 * 10_000 * 10
    data = page_data(page)
    assert len(data["queries"]) == 10_000 and len(data["gallery"]) == 500


def test_render_page_puts_each_part_in_place_once() -> None:
    text = render_page({"title": "x", "queries": [], "gallery": [], "note": "<!--RAREID:JS-->"})
    assert text.count("<!--RAREID:") == 0 and text.count('"use strict"') == 1

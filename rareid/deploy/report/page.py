"""The review page of a search: one HTML file that opens from ``file://`` with no network.

The results are inlined as JSON and drawn by the page's own script (``static/page.js``) a page
of queries at a time, so 10,000 queries cost a JSON document, not 110,000 ``<img>`` elements;
thumbnails are small JPEGs under ``thumbs/`` beside the page, referenced by relative path and
loaded lazily. The same page, in ``serve`` mode, is what ``rareid serve`` answers at ``/``.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
from collections.abc import Sequence
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import quote

import numpy as np

from rareid.runs import atomic_write

#: Longest side of a thumbnail (px); smaller crops keep their own size.
THUMB_HEIGHT = 128
THUMB_QUALITY = 85
PAGE_NAME = "index.html"
THUMBS = "thumbs"


def _static(name: str) -> str:
    return resources.files("rareid.deploy.report").joinpath("static", name).read_text("utf-8")


def render_page(data: dict[str, Any]) -> str:
    """The page with ``data`` inlined: its template with the CSS, the script and the JSON put
    in place in one pass (no inserted text is scanned again)."""
    # "<" escaped: no file name can close the script element or open a comment
    payload = json.dumps(data, separators=(",", ":"), allow_nan=False).replace("<", "\\u003c")
    parts = {
        "TITLE": _escape(str(data.get("title", "rareid matches"))),
        "CSS": _static("page.css"),
        "JS": _static("page.js"),
        "DATA": payload,
    }
    return re.sub(r"<!--RAREID:(\w+)-->", lambda found: parts[found.group(1)], _static("page.html"))


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def thumbnail_jpeg(image: np.ndarray, height: int = THUMB_HEIGHT) -> bytes:
    """A JPEG of an RGB ``image`` at most ``height`` px high (aspect kept, never enlarged)."""
    import cv2

    if image.shape[0] > height:
        width = max(1, round(image.shape[1] * height / image.shape[0]))
        image = cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA)
    ok, encoded = cv2.imencode(
        ".jpg", cv2.cvtColor(image, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, THUMB_QUALITY]
    )
    if not ok:
        raise ValueError("cannot encode a thumbnail")
    return encoded.tobytes()


def _read_rgb(path: Path) -> np.ndarray | None:
    import cv2

    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    return None if image is None else cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def file_link(path: Path, base: Path) -> str:
    """A URL of ``path`` relative to the folder ``base`` (the page keeps working when the two
    move together); an absolute ``file://`` URL where no relative path exists."""
    try:
        relative = os.path.relpath(Path(path).resolve(), Path(base).resolve())
    except ValueError:  # another drive
        return Path(path).resolve().as_uri()
    return quote(Path(relative).as_posix())


class _Thumbs:
    """Thumbnails written once per source (a gallery image matched by many queries is one
    file); a source that cannot be read gets none and is counted."""

    def __init__(self, out_dir: Path) -> None:
        self.out_dir = out_dir
        self.done: dict[str, str] = {}
        self.links: dict[str, tuple[str, str]] = {}
        self.unreadable = 0

    def get(self, key: str, source: Path | np.ndarray, kind: str) -> str:
        if key in self.done:
            return self.done[key]
        image = source if isinstance(source, np.ndarray) else _read_rgb(source)
        if image is None:
            self.unreadable += 1
            self.done[key] = ""
            return ""
        name = f"{THUMBS}/{kind}/{len(self.done):06d}.jpg"
        target = self.out_dir / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(thumbnail_jpeg(image))
        self.done[key] = name
        return name


def _number(value: Any) -> float | None:
    """A JSON number, or None for an absent or non-finite value."""
    if value is None or value == "":
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def page_match(match: dict[str, Any], gallery: int, plain_rank: int) -> dict[str, Any]:
    """The page's record of one match (short keys: 10,000 queries x k matches are inlined)."""
    return {
        "g": gallery,
        "d": _number(match["distance"]),
        "o": _number(match.get("rerank_distance", match["distance"])),
        "t": _number(match.get("threshold")),
        "v": match["verdict"],
        "r": match.get("verdict_reason", ""),
        "p": plain_rank,
        "s": match.get("gallery_status", "ok"),
        "x": match.get("note", ""),
    }


def plain_ranks(matches: Sequence[dict[str, Any]]) -> list[int]:
    """Each match's rank among the shown ones by the verdict's distance ``distance``: with
    re-ranking, where the plain order would have put it (equal to its rank when nothing moved)."""
    order = sorted(range(len(matches)), key=lambda position: float(matches[position]["distance"]))
    ranks = [0] * len(matches)
    for rank, position in enumerate(order, start=1):
        ranks[position] = rank
    return ranks


def write_report(
    out_dir: str | os.PathLike,
    queries: Sequence[dict[str, Any]],
    matches: Sequence[Sequence[dict[str, Any]]],
    title: str,
    caption: str = "",
    run: dict[str, Any] | None = None,
    labels: bool = True,
) -> tuple[Path, int]:
    """Write ``index.html`` and its ``thumbs/`` to ``out_dir``; return the page and the count of
    images that could not be read for a thumbnail (shown without one).

    ``queries``: dicts with ``name``, ``label``, ``level``, ``size`` (text), optional ``rate``
    and ``flags``, and the crop as ``path`` (a file) or ``image`` (RGB array, with a ``key``).
    ``matches``: per query, dicts with ``gallery`` (its name), ``path`` or ``image``/``key``,
    ``distance``, ``verdict``, and optional ``threshold``, ``verdict_reason``,
    ``rerank_distance``, ``gallery_status``, ``note``. ``labels``: whether the page offers the
    labels CSV of ``rareid calibrate --labels`` (gallery names are paths in the index).
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(out / THUMBS, ignore_errors=True)  # ours alone: no stale thumbnail stays
    thumbs = _Thumbs(out)
    gallery: list[dict[str, str]] = []
    gallery_of: dict[str, int] = {}
    page_queries = []
    for query, ranked in zip(queries, matches, strict=True):
        entries = []
        for match, plain in zip(ranked, plain_ranks(ranked), strict=True):
            name = str(match["gallery"])
            if name not in gallery_of:
                gallery_of[name] = len(gallery)
                gallery.append(_image_entry(thumbs, out, name, match, "g"))
            entries.append(page_match(match, gallery_of[name], plain))
        record = _image_entry(thumbs, out, str(query["name"]), query, "q")
        record.update(
            label=str(query.get("label", query["name"])),
            level=query["level"],
            size=str(query.get("size") or _size_text(query)),
            rate=_number(query.get("rate")),
            flags=str(query.get("flags") or ""),
            matches=entries,
        )
        page_queries.append(record)
    data = {
        "mode": "file",
        "title": title,
        "caption": caption,
        "key": f"{(run or {}).get('index', '')}|{(run or {}).get('created', '')}",
        "rerank": bool((run or {}).get("rerank")),
        "labels": labels,
        "gallery": gallery,
        "queries": page_queries,
    }
    page = out / PAGE_NAME
    text = render_page(data).encode()
    atomic_write(page, lambda handle: handle.write(text))
    return page, thumbs.unreadable


def _size_text(query: dict[str, Any]) -> str:
    return f"{query['height']}x{query['width']} px" if "height" in query else ""


def _image_entry(
    thumbs: _Thumbs, out: Path, name: str, item: dict[str, Any], kind: str
) -> dict[str, str]:
    """name, thumbnail and full-size link of a crop given as a file or as an array."""
    if item.get("path") is not None:
        path = Path(item["path"])
        if str(path) not in thumbs.links:  # one resolve per file, not per match
            thumbs.links[str(path)] = (
                thumbs.get(str(path.resolve()), path, kind),
                file_link(path, out),
            )
        thumb, full = thumbs.links[str(path)]
        return {"name": name, "thumb": thumb, "full": full}
    thumb = thumbs.get(str(item["key"]), item["image"], kind)
    return {"name": name, "thumb": thumb, "full": thumb}

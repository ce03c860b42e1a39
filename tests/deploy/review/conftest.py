"""Fixtures of the review page and ``rareid serve`` tests: a gallery of several crops per
person under ``person N/``, its index, one small query crop per person, and the search of
them with ``--html``."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import cv2
import pytest

from tests.deploy.conftest import index_args, run_cli, write_labelled_crops, write_rgb

#: Gallery renders per person (two cameras): labelled pairs for `rareid calibrate`.
FRAMES = 4
#: Height of the query crops (px): a low level against the 128 px gallery.
QUERY_HEIGHT = 58
TOP_K = 6


def person_of(name: str) -> str:
    """The person of a gallery path (``person N/frame_F.png``) or a query (``qN.png``)."""
    return name.split("/")[0].replace("person ", "") if "/" in name else Path(name).stem[1:]


@pytest.fixture(scope="session")
def review(tmp_path_factory, trained_checkpoint, world, people) -> SimpleNamespace:
    """The gallery, its index and the query crops (``qN.png`` shows person N)."""
    root = tmp_path_factory.mktemp("review")
    gallery = root / "gallery"
    write_labelled_crops(gallery, world, people, frames=FRAMES)
    (gallery / "labels.csv").unlink()  # the reviewer writes the labels
    index = root / "gallery.npz"
    assert run_cli(index_args(trained_checkpoint, gallery, index)) == 0
    queries = root / "queries"
    for number, pid in enumerate(people):
        image = world.render(pid, 1, 77)
        width = round(QUERY_HEIGHT * image.shape[1] / image.shape[0])
        small = cv2.resize(image, (width, QUERY_HEIGHT), interpolation=cv2.INTER_AREA)
        write_rgb(queries / f"q{number}.png", small)
    return SimpleNamespace(
        root=root, gallery=gallery, index=index, queries=queries, checkpoint=trained_checkpoint
    )


def search_html(review: SimpleNamespace, out: Path, *extra: str) -> int:
    """``rareid search --html`` of the review queries into ``out``."""
    argv = ["search", "--index", str(review.index), "--query", str(review.queries)]
    return run_cli([*argv, "--out", str(out), "--top-k", str(TOP_K), "--html", *extra])

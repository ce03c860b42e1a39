"""A synthetic set with a published benchmark's exact counts (``rareid synth --like``)."""

from __future__ import annotations

from collections import Counter, defaultdict
from pathlib import Path

import pytest

from rareid.data.readers.market import FolderLayoutReader
from rareid.data.synthetic.plan import SHAPES, DatasetShape, plan, shape_params

TINY = DatasetShape(
    train_identities=6,
    train_images=30,
    test_identities=5,
    query_images=9,
    gallery_images=25,
    distractors=4,
    junk=3,
    cameras=3,
)


def _params(shape: DatasetShape) -> dict:
    return {"seed": 0, **shape_params(shape)}


def test_market_plan_has_market_1501s_counts_and_a_cross_camera_match_per_query() -> None:
    jobs = plan(_params(SHAPES["market1501"]))
    folders = Counter(job.folder for job in jobs)
    assert folders == {"bounding_box_train": 12_936, "query": 3_368, "bounding_box_test": 19_732}
    assert len({job.pid for job in jobs if job.folder == "bounding_box_train"}) == 751
    assert len({job.pid for job in jobs if job.folder == "query"}) == 750
    gallery = Counter(job.pid for job in jobs if job.folder == "bounding_box_test")
    assert (gallery[0], gallery[-1]) == (2_793, 3_819)
    assert sum(gallery.values()) - gallery[-1] == 15_913  # the gallery once junk is dropped
    assert {job.cam for job in jobs} == set(range(6))
    assert len({(job.folder, job.name) for job in jobs}) == len(jobs)
    gallery_cams: dict[int, set[int]] = defaultdict(set)
    for job in jobs:
        if job.folder == "bounding_box_test":
            gallery_cams[job.pid].add(job.cam)
    query_cams = Counter((job.pid, job.cam) for job in jobs if job.folder == "query")
    assert max(query_cams.values()) == 1  # at most one query per identity and camera
    assert all(gallery_cams[pid] - {cam} for pid, cam in query_cams)


def test_plan_depends_only_on_the_parameters() -> None:
    first, again = plan(_params(TINY)), plan(_params(TINY))
    assert first == again
    assert plan({**_params(TINY), "seed": 1}) != first


def test_impossible_shapes_are_refused() -> None:
    with pytest.raises(ValueError, match="queries per test identity"):
        shape_params(DatasetShape(6, 30, 5, 16, 40, 0, 0, 3))
    with pytest.raises(ValueError, match="cross-camera"):
        shape_params(DatasetShape(6, 30, 5, 9, 12, 0, 0, 3))


def test_synth_like_writes_what_the_market_reader_reads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from rareid.cli import main

    monkeypatch.setitem(SHAPES, "tiny", TINY)
    root = tmp_path / "market1501"
    assert main(["synth", "--like", "tiny", "--out", str(root)]) == 0
    assert "11 identities (6 train / 5 test" in capsys.readouterr().out
    files = FolderLayoutReader("market1501")(tmp_path)
    assert len(files.train) == 30 and len({r.pid for r in files.train}) == 6
    assert len(files.query) == 9 and len(files.gallery) == 25 + 4
    assert "dropped 3 junk image(s)" in " ".join(files.notes)
    assert main(["synth", "--like", "tiny", "--out", str(root)]) == 0
    assert "found complete" in capsys.readouterr().out
    assert main(["synth", "--like", "tiny", "--identities", "5", "--out", str(root)]) == 2
    assert "--like tiny fixes the identities" in capsys.readouterr().err
    assert main(["synth", "--like", "market", "--out", str(tmp_path / "other")]) == 2
    assert "--like: expected one of market1501, tiny, got 'market'" in capsys.readouterr().err

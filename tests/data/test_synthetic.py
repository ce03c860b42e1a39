"""Tests of the procedural synthetic pedestrian dataset (rareid.data.synthetic)."""

from __future__ import annotations

import hashlib
import itertools
import json
import re
from collections import defaultdict
from pathlib import Path

import cv2
import numpy as np
import pytest

from rareid.data.synthetic import (
    VIEW_FRONT,
    SyntheticWorld,
    ensure_synthetic_dataset,
    make_contact_sheet,
    write_synthetic_dataset,
)

MARKET = re.compile(r"^(-?\d+)_c(\d+)s(\d+)_(\d+)_(\d+)\.jpg$")
FOLDERS = ("bounding_box_train", "query", "bounding_box_test")
SMALL = {
    "identities": 12,
    "cameras": 3,
    "images_per_camera": (2, 3),
    "distractors": 5,
    "junk": 4,
    "progress": False,
}


def parse(folder: Path) -> list[tuple[int, int, Path]]:
    """(pid, cam 1-based, path) of every file, asserting Market naming."""
    out = []
    for p in sorted(folder.iterdir()):
        m = MARKET.match(p.name)
        assert m is not None, f"bad name {p.name}"
        assert m.group(3) == "1"
        out.append((int(m.group(1)), int(m.group(2)), p))
    return out


def hashes(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("synth") / "a"
    return root, write_synthetic_dataset(root, seed=0, **SMALL)


def test_layout_names_and_counts(small) -> None:
    root, summary = small
    for name in (*FOLDERS, "README.txt", "synthetic.json", ".complete"):
        assert (root / name).exists(), name
    assert "seed" in (root / "README.txt").read_text().lower()
    train = parse(root / "bounding_box_train")
    query = parse(root / "query")
    gallery = parse(root / "bounding_box_test")
    assert len(train) == summary.train_images
    assert len(query) == summary.query_images
    assert len(gallery) == summary.gallery_images
    assert summary.total_images == len(train) + len(query) + len(gallery)
    assert summary.train_identities == 6 and summary.test_identities == 6
    assert {pid for pid, _, _ in train} == set(range(1, 7))
    assert {pid for pid, _, _ in query} == set(range(7, 13))
    assert {pid for pid, _, _ in gallery} == {-1, 0, *range(7, 13)}
    assert sum(pid == 0 for pid, _, _ in gallery) == 5
    assert sum(pid == -1 for pid, _, _ in gallery) == 4
    assert all(1 <= cam <= 3 for _, cam, _ in train + query + gallery)
    # every identity in every camera, 2-3 images each (train + query + gallery together)
    per = defaultdict(int)
    for pid, cam, _ in train + query + gallery:
        if pid > 0:
            per[pid, cam] += 1
    assert set(per) == {(p, c) for p in range(1, 13) for c in (1, 2, 3)}
    assert all(2 <= n <= 3 for n in per.values())
    meta = json.loads((root / "synthetic.json").read_text())
    assert sorted(itertools.chain(*meta["groups"])) == list(range(1, 13))


def test_images_are_128x64_rgb(small) -> None:
    root, _ = small
    files = sorted(root.rglob("*.jpg"))
    for p in files[::7]:
        img = cv2.imread(str(p), cv2.IMREAD_UNCHANGED)
        assert img.shape == (128, 64, 3), p.name
        assert img.dtype == np.uint8


def check_queries(root: Path, max_per_id: int = 2) -> None:
    query = parse(root / "query")
    gallery = parse(root / "bounding_box_test")
    by_id = defaultdict(list)
    for pid, cam, _ in query:
        by_id[pid].append(cam)
    for pid, cams in by_id.items():
        assert 1 <= len(cams) <= max_per_id
        assert len(set(cams)) == len(cams), f"two queries of {pid} from one camera"
    for pid, cam, p in query:
        assert any(g == pid and c != cam for g, c, _ in gallery), f"{p.name}: no valid match"


def test_each_query_has_cross_camera_match(small) -> None:
    check_queries(small[0])
    assert len(parse(small[0] / "query")) == 12  # 2 queries per test identity here


def test_queries_valid_with_two_cameras_one_image(tmp_path: Path) -> None:
    # the tightest setting: 2 cameras, one image each -> one query, the other camera matches
    write_synthetic_dataset(
        tmp_path / "d", identities=6, cameras=2, images_per_camera=1, progress=False
    )
    check_queries(tmp_path / "d")
    assert len(parse(tmp_path / "d" / "query")) == 3


def test_same_seed_same_bytes_other_seed_differs(small, tmp_path: Path) -> None:
    root, _ = small
    again = tmp_path / "again"
    write_synthetic_dataset(again, seed=0, **SMALL)
    ha = {k: v for k, v in hashes(root).items() if k.endswith(".jpg")}
    assert ha == {k: v for k, v in hashes(again).items() if k.endswith(".jpg")}
    assert (root / "README.txt").read_text().replace(str(root), "") == (
        again / "README.txt"
    ).read_text().replace(str(again), "")
    other = tmp_path / "other"
    write_synthetic_dataset(other, seed=1, **SMALL)
    hb = {k: v for k, v in hashes(other).items() if k.endswith(".jpg")}
    common = set(ha) & set(hb)
    assert sum(ha[k] == hb[k] for k in common) == 0
    assert ha != hb


def test_render_independent_of_order() -> None:
    keys = [(pid, cam) for pid in (1, 7, 0, -1) for cam in (0, 2)]
    w1, w2 = SyntheticWorld(12, 3, 3, 6), SyntheticWorld(12, 3, 3, 6)
    a = {k: w1.render(*k, 10) for k in keys}
    b = {k: w2.render(*k, 10) for k in reversed(keys)}
    for k in keys:
        np.testing.assert_array_equal(a[k], b[k])
    assert not np.array_equal(a[1, 0], a[7, 0])


def test_groups_share_coarse_and_differ_in_fine() -> None:
    w = SyntheticWorld(100, 0, 4, 50)
    sizes = [len(g) for g in w.groups]
    assert all(4 <= s <= 6 for s in sizes[:-1]) and 4 <= sizes[-1] <= 7, sizes
    assert sorted(itertools.chain(*w.groups)) == list(range(1, 101))
    assert all(max(g) <= 50 or min(g) > 50 for g in w.groups), "group crosses the split"
    for g in w.groups:
        people = [w.people[p] for p in g]
        assert len({p.texture for p in people}) == len(g), "textures must differ in a group"
        assert len({(round(p.logo_pos[0], 1), round(p.logo_pos[1], 1)) for p in people}) == len(g)
        base = people[0]
        for p in people[1:]:
            assert np.abs(p.upper - base.upper).max() <= 10 + 1e-6
            assert np.abs(p.lower - base.lower).max() <= 10 + 1e-6
            assert abs(p.build - base.build) <= 1.6 + 1e-6


@pytest.mark.parametrize("identities", [2, 5, 9, 13, 15, 23, 31])
def test_groups_for_any_size(identities: int) -> None:
    n_train = identities // 2
    w = SyntheticWorld(identities, 1, 2, n_train)
    for split in (range(1, n_train + 1), range(n_train + 1, identities + 1)):
        groups = [g for g in w.groups if g[0] in split]
        assert sorted(itertools.chain(*groups)) == list(split)
        sizes = [len(g) for g in groups]
        assert all(s <= 7 for s in sizes) and (len(split) < 4 or min(sizes) >= 4), sizes
    for g in w.groups:
        assert len({w.people[p].texture for p in g}) == len(g)


def down4(img: np.ndarray) -> np.ndarray:
    return cv2.resize(img, (16, 32), interpolation=cv2.INTER_AREA).astype(np.float32)


def highpass(img: np.ndarray) -> np.ndarray:
    """What a x4 downsampling loses: the image minus its LR version brought back to HR."""
    x = img.astype(np.float32)
    return x - cv2.resize(down4(img), (64, 128), interpolation=cv2.INTER_LINEAR)


@pytest.fixture(scope="module")
def world_fronts():
    w = SyntheticWorld(100, 0, 4, 50)
    groups = [g for g in w.groups if g[0] > 50]
    fronts = {p: w.render(p, 0, 1, view=VIEW_FRONT, clean=True) for g in groups for p in g}
    return w, groups, fronts


def test_low_resolution_is_ambiguous_within_groups(world_fronts) -> None:
    w, _, fronts = world_fronts
    lr = {p: down4(a) for p, a in fronts.items()}
    within, between = [], []
    for a, b in itertools.combinations(sorted(lr), 2):
        d = float(np.abs(lr[a] - lr[b]).mean())
        (within if w.group_of[a] == w.group_of[b] else between).append(d)
    # same-group people look alike at 32x16: much closer than people of other groups
    assert np.mean(within) < 0.4 * np.mean(between), (np.mean(within), np.mean(between))
    assert np.max(within) < np.percentile(between, 25)


def test_low_resolution_ambiguity_in_full_renders() -> None:
    # with all camera effects, jitter and views: per-identity mean LR appearance over cameras
    w = SyntheticWorld(40, 0, 4, 20)
    groups = [g for g in w.groups if g[0] > 20]
    means = {
        p: np.mean([down4(w.render(p, c, f)) for c in range(4) for f in range(4)], axis=0)
        for g in groups
        for p in g
    }
    within, between = [], []
    for a, b in itertools.combinations(sorted(means), 2):
        d = float(np.abs(means[a] - means[b]).mean())
        (within if w.group_of[a] == w.group_of[b] else between).append(d)
    assert np.mean(within) < 0.8 * np.mean(between), (np.mean(within), np.mean(between))


def test_fine_details_separate_group_members_at_high_resolution(world_fronts) -> None:
    w, groups, fronts = world_fronts
    hf = {p: highpass(a) for p, a in fronts.items()}
    chest_hr, chest_lr = (slice(30, 62), slice(24, 40)), (slice(7, 16), slice(6, 10))
    lost_within, lr_within, lr_between = [], [], []
    for a, b in itertools.combinations(sorted(fronts), 2):
        lr = float(np.abs(down4(fronts[a]) - down4(fronts[b]))[chest_lr].mean())
        if w.group_of[a] != w.group_of[b]:
            lr_between.append(lr)
            continue
        # what x4 downsampling throws away differs clearly between any two group members
        # (1-2 px stripes/checks/dots, logo, strap)
        lost = float(np.abs(hf[a] - hf[b])[chest_hr].mean())
        assert lost > 4.0, (a, b, lost)
        lost_within.append(lost)
        lr_within.append(lr)
    # inside a group the chest differs mostly in fine detail, across groups in coarse colour
    assert np.mean(lost_within) > 1.4 * np.mean(lr_within), (lost_within, lr_within)
    assert np.mean(lr_between) > 2.5 * np.mean(lr_within)
    # the same person drawn twice is identical (the difference above is identity, not noise)
    p = groups[0][0]
    np.testing.assert_array_equal(fronts[p], w.render(p, 0, 1, view=VIEW_FRONT, clean=True))


def test_ensure_skips_complete_and_rewrites_changed(tmp_path: Path) -> None:
    root = tmp_path / "d"
    params = {**SMALL, "identities": 6, "distractors": 1, "junk": 1}
    s1 = ensure_synthetic_dataset(root, seed=0, **params)
    assert s1.written
    marker = root / "bounding_box_train" / "sentinel.txt"
    marker.write_text("x")  # not synth's: survives a rewrite, counted
    stamp = (root / ".complete").stat().st_mtime_ns
    s2 = ensure_synthetic_dataset(root, seed=0, **params)
    assert not s2.written
    assert marker.exists() and (root / ".complete").stat().st_mtime_ns == stamp
    assert (s2.train_images, s2.query_images, s2.gallery_images) == (
        s1.train_images,
        s1.query_images,
        s1.gallery_images,
    )
    s3 = ensure_synthetic_dataset(root, seed=1, **params)  # other parameters -> rewrite
    assert s3.written
    assert marker.read_text() == "x" and s3.kept_files == ("bounding_box_train/sentinel.txt",)
    assert "kept 1 file rareid synth did not write (bounding_box_train/sentinel.txt)" in str(s3)
    assert json.loads((root / "synthetic.json").read_text())["params"]["seed"] == 1
    # an incomplete folder (crash mid-write) is rewritten too
    (root / ".complete").unlink()
    assert ensure_synthetic_dataset(root, seed=1, **params).written
    assert (root / ".complete").exists()


def test_force_keeps_and_counts_a_users_file_at_the_top(tmp_path: Path, capsys) -> None:
    """A rewrite of a synthetic dataset keeps a user's own file beside its folders and says so."""
    from rareid.cli import main

    root = tmp_path / "d"
    args = ["synth", "--out", str(root), "--identities", "4", "--cameras", "2"]
    assert main(args) == 0
    (root / "notes.txt").write_text("mine")
    (root / "my crops").mkdir()
    (root / "my crops" / "a.jpg").write_bytes(b"x")
    capsys.readouterr()
    assert main([*args, "--force"]) == 0
    out = capsys.readouterr().out
    assert (root / "notes.txt").read_text() == "mine" and (root / "my crops" / "a.jpg").is_file()
    assert "kept 2 files rareid synth did not write (my crops/a.jpg, notes.txt)" in out


def test_refuses_foreign_folder(tmp_path: Path) -> None:
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="does not hold a rareid synthetic"):
        ensure_synthetic_dataset(tmp_path / "d", identities=4, progress=False)
    with pytest.raises(FileExistsError):
        write_synthetic_dataset(tmp_path / "d", identities=4, progress=False)
    assert (tmp_path / "d" / "notes.txt").read_text() == "mine"


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"identities": 1}, "identities"),
        ({"identities": 2.5}, "identities"),
        ({"cameras": 1}, "cameras"),
        ({"images_per_camera": 0}, "images_per_camera"),
        ({"images_per_camera": (3, 2)}, "images_per_camera"),
        ({"train_fraction": 1.0}, "train_fraction"),
        ({"train_fraction": 0.01}, "train_fraction"),
        ({"distractors": -1}, "distractors"),
        ({"junk": -2}, "junk"),
        ({"seed": -1}, "seed"),
    ],
)
def test_bad_arguments(tmp_path: Path, kwargs: dict, name: str) -> None:
    for fn in (write_synthetic_dataset, ensure_synthetic_dataset):
        with pytest.raises(ValueError, match=name):
            fn(tmp_path / "d", **{"identities": 4, "progress": False, **kwargs})
    assert not (tmp_path / "d").exists()


def test_contact_sheet(tmp_path: Path) -> None:
    out = make_contact_sheet(tmp_path / "sheet.png", groups=1, members=2, cameras=2, zoom=1)
    img = cv2.imread(str(out))
    assert img.shape[1] == 2 * 64 * 2 + 8


# sha256 of the renders below as drawn by generator version 1 (before the renderer was split
# into a package); a change here means the pictures changed and GENERATOR_VERSION must move.
GOLDEN_RENDERS_V1 = "c3fe1b8c94de15e50866072eac0e0b4812b740f7d791de3e9a30d6fab4151010"


def test_renders_are_the_pictures_of_generator_version_1():
    world = SyntheticWorld(24, 7, 4, 12)
    digest = hashlib.sha256()
    for pid in (-1, 0, 3, 13, 20):
        for cam in range(4):
            for view in range(4):
                digest.update(world.render(pid, cam, 500 + cam, view=view).tobytes())
                if pid > 0:
                    digest.update(
                        world.render(pid, cam, 500 + cam, view=view, clean=True).tobytes()
                    )
    assert digest.hexdigest() == GOLDEN_RENDERS_V1


def test_force_rewrite_deletes_only_what_synth_wrote(tmp_path: Path, capsys) -> None:
    from rareid.cli import main

    root = tmp_path / "d"
    command = ["synth", "--out", str(root), "--identities", "4", "--cameras", "2"]
    assert main(command) == 0
    written = set(hashes(root))
    assert "synthetic.files" in written
    mine = [root / "bounding_box_train" / "my_notes.txt", root / "query" / "extra" / "a.png"]
    mine[1].parent.mkdir()
    for path in mine:
        path.write_text("mine")
    capsys.readouterr()
    assert main([*command, "--seed", "1", "--force"]) == 0
    out = capsys.readouterr().out
    assert all(path.read_text() == "mine" for path in mine)
    assert "kept 2 files rareid synth did not write" in out
    assert "bounding_box_train/my_notes.txt" in out
    assert json.loads((root / "synthetic.json").read_text())["params"]["seed"] == 1
    fresh = tmp_path / "fresh"
    assert (
        main(["synth", "--out", str(fresh), "--identities", "4", "--cameras", "2", "--seed", "1"])
        == 0
    )
    # the old dataset's files that the new one does not write again are gone; the user's stay
    assert set(hashes(root)) - set(hashes(fresh)) == {str(p.relative_to(root)) for p in mine}
    assert written - set(hashes(root))


def test_force_rewrite_refuses_to_overwrite_a_users_file(tmp_path: Path) -> None:
    root = tmp_path / "d"
    params = {**SMALL, "identities": 4, "distractors": 0, "junk": 0}
    write_synthetic_dataset(root, seed=0, **params)
    manifest = (root / "synthetic.files").read_text().split()
    planned = root / manifest[0]
    # the user replaces one of synth's files with their own, under a name synth writes
    planned.unlink()
    (root / "synthetic.files").write_text("\n".join(manifest[1:]) + "\n")
    planned.write_text("mine")
    with pytest.raises(FileExistsError, match=f"1 file.*{planned.name}"):
        write_synthetic_dataset(root, seed=0, **params)
    assert planned.read_text() == "mine"


def test_force_rewrite_of_a_dataset_without_manifest_uses_its_parameters(tmp_path: Path) -> None:
    root = tmp_path / "d"
    params = {**SMALL, "identities": 4, "distractors": 1, "junk": 1}
    first = set(hashes(write_synthetic_dataset(root, seed=0, **params).root))
    (root / "synthetic.files").unlink()  # written by an older rareid
    mine = root / "bounding_box_test" / "mine.jpg"
    mine.write_bytes(b"mine")
    summary = write_synthetic_dataset(root, seed=2, **params)
    assert summary.kept_files == ("bounding_box_test/mine.jpg",)
    assert mine.read_bytes() == b"mine"
    stale = (first - {"synthetic.files"}) - set(hashes(root))
    assert stale  # the seed-0 files that seed 2 does not write were deleted

"""Dataset readers on tiny fixture trees in the real layouts."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from rareid.data import ImageRecord, ReIDSplits, build_dataset
from rareid.data.readers import (
    DATASET_NAMES,
    BadImageError,
    DatasetFiles,
    DatasetFormatError,
    DatasetNotFoundError,
    dataset_names,
    extract_cuhk03,
    reader_options,
    register_dataset,
)
from tests.data.fixtures import (
    MARKET_DIR,
    write_caviar_tree,
    write_cuhk03_mat,
    write_duke_tree,
    write_folder_tree,
    write_image,
    write_market_tree,
)


def _pid_of_market_file(path: str) -> int:
    return int(Path(path).name.split("_")[0])


def _cam_of_market_file(path: str) -> int:
    return int(Path(path).name.split("_")[1][1:].split("s")[0])


# --------------------------------------------------------------------------------------
# Market-1501
# --------------------------------------------------------------------------------------


@pytest.fixture
def market(tmp_path: Path):
    return write_market_tree(tmp_path / "data", size=(16, 8))


def test_market_counts_pids_camids(market, caplog) -> None:
    with caplog.at_level(logging.INFO, logger="rareid.data.readers"):
        ds = build_dataset("market1501", market.root)
    assert isinstance(ds, ReIDSplits) and ds.name == "market1501"
    assert not ds.query_is_lowres
    assert (len(ds.train), len(ds.query), len(ds.gallery)) == (24, 9, 20)
    assert ds.num_classes == 4
    # Train ids (2, 7, 11, 30) relabelled in sorted order of the original id.
    relabel = {2: 0, 7: 1, 11: 2, 30: 3}
    for r in ds.train:
        assert r.pid == relabel[_pid_of_market_file(r.path)]
    assert {r.pid for r in ds.train} == {0, 1, 2, 3}
    # Query/gallery keep the original ids; distractors (0) are in the gallery only.
    assert {r.pid for r in ds.query} == {3, 5, 40}
    assert {r.pid for r in ds.gallery} == {0, 3, 5, 40}
    assert sum(r.pid == 0 for r in ds.gallery) == 2
    # camid = camera number - 1, read from the file name.
    for r in ds.train + ds.query + ds.gallery:
        assert r.camid == _cam_of_market_file(r.path) - 1
    assert {r.camid for r in ds.gallery} == {0, 1, 2}
    # Absolute existing paths, sorted, exactly the fixture's files (junk dropped, Thumbs.db ignored).
    for split, expected in (
        ("train", market.train),
        ("query", market.query),
        ("gallery", market.gallery),
    ):
        records: list[ImageRecord] = getattr(ds, split)
        paths = [r.path for r in records]
        assert paths == sorted(paths)
        assert all(os.path.isabs(p) and os.path.isfile(p) for p in paths)
        assert set(paths) == {str(p) for p in expected}
    assert not any("-1_" in Path(r.path).name for r in ds.gallery)
    # The junk is counted in the logged summary.
    assert "dropped 3 junk image(s) (pid -1)" in caplog.text
    assert "bounding_box_test" in caplog.text


def test_market_records_are_frozen(market) -> None:
    ds = build_dataset("market", market.root)
    with pytest.raises(AttributeError):
        ds.train[0].pid = 5  # type: ignore[misc]


@pytest.mark.parametrize("dirname", [MARKET_DIR, "market1501", None])
def test_market_root_variants(tmp_path: Path, dirname: str | None) -> None:
    info = write_market_tree(tmp_path, dirname=dirname, size=(16, 8), extras=False)
    for root in {info.root, info.base}:  # the parent, or the dataset folder itself
        ds = build_dataset("Market-1501", root)
        assert len(ds.train) == 24
        assert Path(ds.train[0].path).parent == info.base / "bounding_box_train"


def test_market_accepts_str_root_and_real_example_names(tmp_path: Path) -> None:
    base = tmp_path / MARKET_DIR
    write_image(base / "bounding_box_train" / "0002_c1s1_000451_03.jpg", 16, 8, 1)
    write_image(base / "query" / "0001_c1s1_001051_00.jpg", 16, 8, 2)
    write_image(base / "bounding_box_test" / "0001_c2s1_000301_01.jpg", 16, 8, 3)
    write_image(base / "bounding_box_test" / "-1_c1s1_000401_03.jpg", 16, 8, 4)
    write_image(base / "bounding_box_test" / "0000_c1s1_000151_01.jpg", 16, 8, 5)
    ds = build_dataset("MARKET", str(tmp_path))
    assert ds.train == [ImageRecord(str(base / "bounding_box_train/0002_c1s1_000451_03.jpg"), 0, 0)]
    assert [(r.pid, r.camid) for r in ds.gallery] == [(0, 0), (1, 1)]


def test_market_missing_root(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"root .*nowhere does not exist"):
        build_dataset("market1501", tmp_path / "nowhere")


def test_market_missing_dataset_folder(tmp_path: Path) -> None:
    with pytest.raises(DatasetNotFoundError) as err:
        build_dataset("market1501", tmp_path)
    message = str(err.value)
    assert f"Market-1501 not found under {tmp_path}" in message
    # the query folder marks the dataset: a test-only copy needs no bounding_box_train/
    assert f"expected {tmp_path / MARKET_DIR / 'query'}" in message
    assert "download" in message and "folder that contains query/" in message


def test_market_missing_query_folder(tmp_path: Path) -> None:
    info = write_market_tree(tmp_path, size=(16, 8))
    for f in (info.base / "query").iterdir():
        f.unlink()
    (info.base / "query").rmdir()
    with pytest.raises(FileNotFoundError, match=r"missing folder .*query"):
        build_dataset("market1501", tmp_path)


def test_market_unparseable_name(market) -> None:
    bad = write_image(market.base / "bounding_box_train" / "person_3.jpg", 16, 8, 0)
    with pytest.raises(DatasetFormatError, match=r"cannot parse file name .*person_3\.jpg") as err:
        build_dataset("market1501", market.root)
    assert str(bad) in str(err.value)
    assert "<pid>_c<cam>s<seq>_<frame>_<box>.jpg" in str(err.value)


def test_market_duke_name_is_not_market(market) -> None:
    write_image(market.base / "query" / "0005_c2_f0046985.jpg", 16, 8, 0)
    with pytest.raises(ValueError, match=r"0005_c2_f0046985\.jpg"):
        build_dataset("market1501", market.root)


def test_market_empty_split_names_folder(tmp_path: Path) -> None:
    info = write_market_tree(tmp_path, size=(16, 8))
    for f in (info.base / "query").glob("*.jpg"):
        f.unlink()
    with pytest.raises(ValueError, match=r"no usable images in .*query .*query split is empty"):
        build_dataset("market1501", tmp_path)


def test_market_only_junk_in_gallery_is_empty(tmp_path: Path) -> None:
    info = write_market_tree(tmp_path, size=(16, 8), distractors=0)
    for p in info.gallery:
        p.unlink()
    with pytest.raises(ValueError, match=r"bounding_box_test .*gallery split is empty"):
        build_dataset("market1501", tmp_path)


@pytest.mark.parametrize("folder", ["bounding_box_train", "query"])
def test_market_distractor_outside_gallery(market, folder: str) -> None:
    write_image(market.base / folder / "0000_c1s1_000151_01.jpg", 16, 8, 0)
    with pytest.raises(ValueError, match=rf"identity 0 .*{folder}/0000_c1s1_000151_01\.jpg"):
        build_dataset("market1501", market.root)


def test_market_camera_zero_rejected(market) -> None:
    write_image(market.base / "query" / "0003_c0s1_000151_01.jpg", 16, 8, 0)
    with pytest.raises(ValueError, match=r"start at 1 .*0003_c0s1_000151_01\.jpg"):
        build_dataset("market1501", market.root)


def test_query_identity_absent_from_gallery_is_fine(market) -> None:
    write_image(market.base / "query" / "0999_c1s1_000151_01.jpg", 16, 8, 0)
    ds = build_dataset("market1501", market.root)
    assert 999 in {r.pid for r in ds.query}
    assert 999 not in {r.pid for r in ds.gallery}


def test_hidden_files_and_subfolders_ignored(market) -> None:
    (market.base / "query" / "._0003_c1s1_000001_01.jpg").write_bytes(b"apple double")
    (market.base / "query" / "sub").mkdir()
    write_image(market.base / "query" / "sub" / "0003_c1s1_009999_01.jpg", 16, 8, 0)
    ds = build_dataset("market1501", market.root)
    assert len(ds.query) == 9


# --------------------------------------------------------------------------------------
# DukeMTMC-reID, generic folder, synthetic
# --------------------------------------------------------------------------------------


def test_duke(tmp_path: Path) -> None:
    info = write_duke_tree(tmp_path)
    ds = build_dataset("DukeMTMC-reID", tmp_path)
    assert ds.name == "dukemtmc"
    assert (len(ds.train), len(ds.query), len(ds.gallery)) == (12, 8, 8)
    assert ds.num_classes == 3
    assert {r.pid for r in ds.train} == {0, 1, 2}
    assert {r.pid for r in ds.query} == {5, 12}
    assert {r.camid for r in ds.gallery} == {0, 1, 6, 7}
    assert {r.path for r in ds.query} == {str(p) for p in info.query}
    ds_alias = build_dataset("duke", info.base)
    assert ds_alias.train == ds.train


def test_duke_rejects_market_names(tmp_path: Path) -> None:
    info = write_duke_tree(tmp_path)
    write_image(info.base / "bounding_box_train" / "0002_c1s1_000451_03.jpg", 16, 8, 0)
    with pytest.raises(ValueError, match=r"<pid>_c<cam>_f<frame>\.jpg"):
        build_dataset("dukemtmc", tmp_path)


def test_duke_not_found_message(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"expected .*DukeMTMC-reID.query"):
        build_dataset("dukemtmc", tmp_path)


def test_folder_dataset(tmp_path: Path) -> None:
    info = write_folder_tree(tmp_path)
    write_image(tmp_path / "gallery" / "0030_c2_anything.png", 16, 8, 0)  # lenient naming
    ds = build_dataset("folder", tmp_path)
    assert ds.name == "folder"
    assert (len(ds.train), len(ds.query), len(ds.gallery)) == (4, 2, 4)
    assert ds.num_classes == 2
    assert {r.pid for r in ds.gallery} == {0, 30}
    assert len(info.junk) == 1
    with pytest.raises(FileNotFoundError, match=r"expected .*train"):
        build_dataset("folder", tmp_path / "train")


def test_folder_bad_name(tmp_path: Path) -> None:
    write_folder_tree(tmp_path)
    write_image(tmp_path / "train" / "IMG_0001.jpg", 16, 8, 0)
    with pytest.raises(ValueError, match=r"IMG_0001\.jpg"):
        build_dataset("folder", tmp_path)


@pytest.mark.parametrize("dirname", ["synthetic", None])
def test_synthetic_reads_market_layout(tmp_path: Path, dirname: str | None) -> None:
    info = write_market_tree(tmp_path, dirname=dirname, size=(16, 8))
    ds = build_dataset("synthetic", tmp_path)
    assert ds.name == "synthetic"
    assert (len(ds.train), len(ds.query), len(ds.gallery)) == (24, 9, 20)
    assert Path(ds.query[0].path).parent == info.base / "query"


# --------------------------------------------------------------------------------------
# Names and options
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("alias", "canonical"),
    [
        ("market", "market1501"),
        ("Market-1501", "market1501"),
        ("MARKET_1501", "market1501"),
        ("duke", "dukemtmc"),
        ("DukeMTMC-reID", "dukemtmc"),
        ("cuhk", "cuhk03"),
        ("CUHK-03", "cuhk03"),
        ("caviar4reid", "caviar"),
        ("Folder", "folder"),
        ("synth", "synthetic"),
    ],
)
def test_name_aliases(alias: str, canonical: str) -> None:
    from rareid.data.readers import resolve_dataset_name

    assert resolve_dataset_name(alias) == canonical
    assert canonical in DATASET_NAMES


def test_unknown_name_lists_valid_names(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"unknown dataset 'viper'.*market1501.*dukemtmc.*cuhk03"):
        build_dataset("viper", tmp_path)


def test_unknown_option_names_it(market, tmp_path: Path) -> None:
    with pytest.raises(TypeError, match=r"'split_sed'.*valid options are .*split_seed"):
        build_dataset("cuhk03", tmp_path, split_sed=1)


def test_bad_option_types(market, tmp_path: Path) -> None:
    with pytest.raises(TypeError, match="split_seed must be an int"):
        build_dataset("cuhk03", tmp_path, split_seed="0")
    with pytest.raises(TypeError, match="verify_images must be a bool"):
        build_dataset("market", market.root, verify_images="yes")
    with pytest.raises(ValueError, match="cuhk03_num_test must be >= 1"):
        build_dataset("cuhk03", tmp_path, cuhk03_num_test=0)


def test_options_of_other_datasets_are_rejected(market) -> None:
    """Each reader declares its own options: CUHK03's options are an error for Market."""
    for option, value in (("split_seed", 3), ("cuhk03_labeled", True), ("caviar_num_test", 5)):
        with pytest.raises(TypeError, match=rf"'{option}' that dataset 'market1501' does not"):
            build_dataset("market", market.root, **{option: value})
    assert reader_options("cuhk03") == {
        "split_seed": 0,
        "cuhk03_labeled": False,
        "cuhk03_num_test": 100,
    }
    assert reader_options("caviar") == {"split_seed": 0, "caviar_num_test": 25}
    assert reader_options("market") == {}


def test_register_dataset_from_user_code(market, tmp_path: Path) -> None:
    """A user adds a reader with its own options; it is found by name and by alias."""
    calls = []

    def read_mine(root: Path, *, flip: bool = False) -> DatasetFiles:
        calls.append((root, flip))
        market_files = build_dataset("market", market.root)
        train = [ImageRecord(r.path, r.pid + 1, r.camid) for r in market_files.train]
        return DatasetFiles("mine", root, train, market_files.query, market_files.gallery)

    register_dataset("mine-test", read_mine, aliases=("my-test-data",))
    ds = build_dataset("My_Test_Data", tmp_path, flip=True)
    assert isinstance(ds, ReIDSplits) and ds.name == "mine" and ds.num_classes == 4
    assert calls == [(tmp_path, True)]
    assert "minetest" in dataset_names()
    with pytest.raises(TypeError, match="'flop'"):
        build_dataset("mine-test", tmp_path, flop=True)
    with pytest.raises(ValueError, match="already registered"):
        register_dataset("market", read_mine)


def test_import_is_light() -> None:
    code = (
        "import sys, rareid.data; "
        "bad = [m for m in ('torch', 'lightning', 'h5py') if m in sys.modules]; "
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).parents[2])


# --------------------------------------------------------------------------------------
# CUHK03
# --------------------------------------------------------------------------------------


@pytest.fixture
def cuhk(tmp_path: Path):
    return write_cuhk03_mat(tmp_path / "data")


def test_cuhk03_extraction_names_pixels_and_empties(cuhk) -> None:
    ds = build_dataset("cuhk03", cuhk.root, cuhk03_num_test=4)
    images_dir = cuhk.root / "cuhk03" / "images_detected"
    written = {p.name for p in images_dir.glob("*.png")}
    expected = cuhk.images["detected"]
    assert written == set(expected)  # every stored image, no empty cell
    assert 0 < len(expected) < 10 * cuhk.num_identities  # the fixture does have empty cells
    for name, rgb in expected.items():
        bgr = cv2.imread(str(images_dir / name), cv2.IMREAD_COLOR)
        np.testing.assert_array_equal(bgr[:, :, ::-1], rgb)  # (3, W, H) transposed back
    assert len(ds.train) + len(ds.query) + len(ds.gallery) == len(expected)
    assert (images_dir / ".rareid_extracted.json").is_file()


def test_cuhk03_extracts_once(cuhk) -> None:
    build_dataset("cuhk03", cuhk.root, cuhk03_num_test=4)
    images_dir = cuhk.root / "cuhk03" / "images_detected"
    before = {p.name: p.stat().st_mtime_ns for p in images_dir.iterdir()}
    cuhk.mat_path.unlink()  # a second extraction would now fail
    ds = build_dataset("cuhk03", cuhk.root, cuhk03_num_test=4)
    after = {p.name: p.stat().st_mtime_ns for p in images_dir.iterdir()}
    assert before == after
    assert len(ds.train) + len(ds.query) + len(ds.gallery) == len(cuhk.images["detected"])


def test_cuhk03_incomplete_extraction_is_redone(cuhk) -> None:
    build_dataset("cuhk03", cuhk.root, cuhk03_num_test=4)
    images_dir = cuhk.root / "cuhk03" / "images_detected"
    victim = sorted(images_dir.glob("*.png"))[0]
    victim.unlink()
    build_dataset("cuhk03", cuhk.root, cuhk03_num_test=4)
    assert victim.is_file()
    # Interrupted before the marker: extracted again too.
    (images_dir / ".rareid_extracted.json").unlink()
    build_dataset("cuhk03", cuhk.root, cuhk03_num_test=4)
    assert (images_dir / ".rareid_extracted.json").is_file()


def test_cuhk03_missing_images_without_mat_is_an_error(cuhk) -> None:
    build_dataset("cuhk03", cuhk.root, cuhk03_num_test=4)
    images_dir = cuhk.root / "cuhk03" / "images_detected"
    sorted(images_dir.glob("*.png"))[0].unlink()
    cuhk.mat_path.unlink()
    with pytest.raises(ValueError, match=r"fewer images than its marker .*restore"):
        build_dataset("cuhk03", cuhk.root, cuhk03_num_test=4)


def test_cuhk03_split_and_camids(cuhk) -> None:
    ds = build_dataset("cuhk03", cuhk.root, cuhk03_num_test=4)
    assert ds.name == "cuhk03" and not ds.query_is_lowres
    assert ds.num_classes == cuhk.num_identities - 4 == 12
    assert {r.pid for r in ds.train} == set(range(12))
    test_ids = {r.pid for r in ds.query}
    assert len(test_ids) == 4 and {r.pid for r in ds.gallery} == test_ids
    assert not {r.path for r in ds.query} & {r.path for r in ds.gallery}
    for r in ds.query + ds.gallery:
        campair, pid, view, _ = (int(x) for x in Path(r.path).stem.split("_"))
        assert r.pid == campair * 1000 + pid
        assert r.camid == 2 * (campair - 1) + (view - 1)
    train_files = {tuple(Path(r.path).stem.split("_")[:2]) for r in ds.train}
    test_files = {tuple(Path(r.path).stem.split("_")[:2]) for r in ds.query + ds.gallery}
    assert not train_files & test_files
    assert len(train_files) == 12
    # Relabelled in sorted order of (campair, pid).
    order = sorted(train_files, key=lambda t: (int(t[0]), int(t[1])))
    for r in ds.train:
        assert order.index(tuple(Path(r.path).stem.split("_")[:2])) == r.pid


def test_mlr_cuhk03_queries_one_view_gallery_the_other(cuhk) -> None:
    """MLR-CUHK03: per test identity the queries come from one view, the gallery the other."""
    ds = build_dataset("cuhk03", cuhk.root, cuhk03_num_test=6)
    views = {}
    for pid in {r.pid for r in ds.query}:
        q_cams = {r.camid for r in ds.query if r.pid == pid}
        g_cams = {r.camid for r in ds.gallery if r.pid == pid}
        assert len(q_cams) == 1 and len(g_cams) == 1 and q_cams != g_cams
        views[pid] = q_cams.pop() % 2  # 0: view 1, 1: view 2
    assert set(views.values()) == {0, 1}  # the view is drawn per identity
    test_files = {
        r.path
        for r in build_dataset("cuhk03", cuhk.root, cuhk03_num_test=6).query
        + build_dataset("cuhk03", cuhk.root, cuhk03_num_test=6).gallery
    }
    assert test_files == {r.path for r in ds.query + ds.gallery}

    def query_views(seed: int) -> tuple:
        other = build_dataset("cuhk03", cuhk.root, cuhk03_num_test=6, split_seed=seed)
        return tuple(sorted({(r.pid, r.camid) for r in other.query}))

    assert query_views(3) == query_views(3)
    assert len({query_views(s) for s in range(5)}) > 1


def test_mlr_cuhk03_every_query_has_a_match_in_every_trial(cuhk) -> None:
    from rareid.data.datamodule import ReIDDataModule
    from rareid.data.protocol import Role

    dm = ReIDDataModule(
        dataset="cuhk03",
        root=str(cuhk.root),
        dataset_options={"cuhk03_num_test": 5},
        input_size=(32, 16),
        trials=4,
        val_identities=0,
        num_workers=0,
    )
    table = dm.eval_dataset("test").table
    queries = np.flatnonzero(table.role == Role.QUERY)
    assert set(table.rate[queries].tolist()) <= {2.0, 3.0, 4.0}
    gallery = table.role == Role.GALLERY
    for row in queries:
        trial = table.trial[row]
        in_trial = gallery & ((table.gallery_trials >> trial) & 1 == 1)
        valid = in_trial & (table.pid == table.pid[row]) & (table.camid != table.camid[row])
        assert valid.sum() == 1  # single-shot, other view


def test_cuhk03_split_seed(cuhk) -> None:
    def test_ids(seed: int) -> frozenset[int]:
        ds = build_dataset("cuhk03", cuhk.root, cuhk03_num_test=4, split_seed=seed)
        return frozenset(r.pid for r in ds.query)

    assert test_ids(0) == test_ids(0)
    assert len({test_ids(s) for s in range(6)}) > 1


def test_cuhk03_labeled_option(cuhk) -> None:
    ds = build_dataset("cuhk03", cuhk.root, cuhk03_num_test=4, cuhk03_labeled=True)
    labeled_dir = cuhk.root / "cuhk03" / "images_labeled"
    assert {p.name for p in labeled_dir.glob("*.png")} == set(cuhk.images["labeled"])
    assert cuhk.images["labeled"].keys() != cuhk.images["detected"].keys()
    assert all(Path(r.path).parent == labeled_dir for r in ds.train + ds.query)
    assert not (cuhk.root / "cuhk03" / "images_detected").exists()


def test_cuhk03_not_enough_identities(cuhk) -> None:
    with pytest.raises(ValueError, match=r"16 identities .*cuhk03_num_test=16"):
        build_dataset("cuhk03", cuhk.root, cuhk03_num_test=16)
    with pytest.raises(ValueError, match=r"cuhk03_num_test=100"):
        build_dataset("cuhk03", cuhk.root)  # the real split needs 1,467 identities


def test_cuhk03_pre_extracted_folder_without_mat(tmp_path: Path) -> None:
    folder = tmp_path / "cuhk03" / "images_detected"
    for campair, pid in [(1, 1), (1, 2), (2, 1), (3, 7)]:
        for view, img in [(1, 1), (2, 6)]:
            write_image(folder / f"{campair}_{pid:03d}_{view}_{img:02d}.png", 16, 8, campair + pid)
    ds = build_dataset("cuhk", tmp_path, cuhk03_num_test=1)
    assert len(ds.train) == 6 and len(ds.query) == len(ds.gallery) == 1
    assert ds.num_classes == 3
    # The cuhk03 folder itself is accepted as root too.
    assert build_dataset("cuhk03", tmp_path / "cuhk03", cuhk03_num_test=1).train == ds.train


def test_cuhk03_not_found(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"expected .*cuhk03_release.cuhk-03\.mat"):
        build_dataset("cuhk03", tmp_path)


def test_cuhk03_bad_extracted_name(tmp_path: Path) -> None:
    folder = tmp_path / "cuhk03" / "images_detected"
    write_image(folder / "1_001_1_01.png", 16, 8, 0)
    write_image(folder / "1_001_3_01.png", 16, 8, 0)  # view 3 does not exist
    with pytest.raises(ValueError, match=r"cannot parse file name .*1_001_3_01\.png"):
        build_dataset("cuhk03", tmp_path, cuhk03_num_test=1)


def test_cuhk03_corrupt_mat(tmp_path: Path) -> None:
    mat = tmp_path / "cuhk03" / "cuhk03_release" / "cuhk-03.mat"
    mat.parent.mkdir(parents=True)
    mat.write_bytes(b"MATLAB 5.0 MAT-file, not HDF5")
    with pytest.raises(ValueError, match=r"cannot open .*cuhk-03\.mat as a MATLAB v7\.3"):
        build_dataset("cuhk03", tmp_path, cuhk03_num_test=1)


def test_extract_cuhk03_direct(cuhk, tmp_path: Path) -> None:
    n = extract_cuhk03(cuhk.mat_path, tmp_path / "out", "labeled")
    assert n == len(cuhk.images["labeled"])
    with pytest.raises(ValueError, match="detected' or 'labeled"):
        extract_cuhk03(cuhk.mat_path, tmp_path / "out", "both")


# --------------------------------------------------------------------------------------
# CAVIAR4REID
# --------------------------------------------------------------------------------------


@pytest.fixture
def caviar(tmp_path: Path):
    return write_caviar_tree(tmp_path / "data")


def test_caviar_protocol(caviar) -> None:
    ds = build_dataset("caviar", caviar.root, caviar_num_test=4)
    assert ds.name == "caviar" and ds.query_is_lowres
    assert ds.num_classes == 4
    assert {r.pid for r in ds.train} == {0, 1, 2, 3}
    # train: near-camera HR images only; far-camera images are kept apart (validation)
    assert {r.camid for r in ds.train} == {0} and len(ds.train) == 4 * 3
    assert {r.camid for r in ds.train_lowres} == {1} and len(ds.train_lowres) == 4 * 3
    assert {r.pid for r in ds.train_lowres} == {0, 1, 2, 3}
    train_ids = {int(Path(r.path).name[:4]) for r in ds.train}
    assert train_ids == set(ds.train_ids)
    assert {r.path for r in ds.train_lowres} == {str(p) for i in train_ids for p in caviar.far[i]}
    test_ids = {r.pid for r in ds.query}
    assert test_ids == {r.pid for r in ds.gallery}
    assert len(test_ids) == 4 and test_ids <= set(caviar.both_ids)
    assert all(r.camid == 1 for r in ds.query)  # far camera = real LR queries
    assert all(r.camid == 0 for r in ds.gallery)  # near camera = HR gallery
    assert {r.path for r in ds.query} == {str(p) for i in test_ids for p in caviar.far[i]}
    assert {r.path for r in ds.gallery} == {str(p) for i in test_ids for p in caviar.near[i]}
    # Identities seen by one camera only (9, 10, 11) are not used anywhere.
    used = {Path(r.path).name[:4] for r in ds.train + ds.query + ds.gallery}
    assert used == {f"{i:04d}" for i in caviar.both_ids}


def test_caviar_split_seed(caviar) -> None:
    def split(seed: int) -> frozenset[int]:
        return frozenset(
            r.pid
            for r in build_dataset("caviar", caviar.root, caviar_num_test=4, split_seed=seed).query
        )

    assert split(1) == split(1)
    assert len({split(s) for s in range(6)}) > 1


def test_caviar_folder_itself_as_root(caviar) -> None:
    a = build_dataset("caviar", caviar.root, caviar_num_test=3)
    b = build_dataset("caviar4reid", caviar.folder, caviar_num_test=3)
    assert a == b


def test_caviar_not_enough_identities(caviar) -> None:
    with pytest.raises(
        ValueError, match=r"8 identities appear in both cameras .*caviar_num_test=25"
    ):
        build_dataset("caviar", caviar.root)


def test_caviar_bad_names(caviar) -> None:
    write_image(caviar.folder / "0001021.jpg", 16, 8, 0)
    with pytest.raises(ValueError, match=r"index 21 out of range .*0001021\.jpg"):
        build_dataset("caviar", caviar.root, caviar_num_test=4)
    (caviar.folder / "0001021.jpg").unlink()
    write_image(caviar.folder / "p1_001.jpg", 16, 8, 0)
    with pytest.raises(ValueError, match=r"cannot parse file name .*p1_001\.jpg"):
        build_dataset("caviar", caviar.root, caviar_num_test=4)


def test_caviar_not_found(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"expected .*CAVIARa"):
        build_dataset("caviar", tmp_path)


# --------------------------------------------------------------------------------------
# verify_images / skip_bad_images
# --------------------------------------------------------------------------------------


def _corrupt(market) -> tuple[Path, Path]:
    garbage = market.train[0]
    garbage.write_bytes(b"this is not a jpeg")
    truncated = market.gallery[0]
    data = truncated.read_bytes()
    truncated.write_bytes(data[: len(data) // 2])
    return garbage, truncated


def test_verify_images_names_every_bad_file(market) -> None:
    garbage, truncated = _corrupt(market)
    ds = build_dataset("market", market.root)  # without verification nothing is decoded
    assert len(ds.train) == 24
    with pytest.raises(BadImageError, match=r"2 unreadable or corrupt image") as err:
        build_dataset("market", market.root, verify_images=True)
    assert str(garbage) in str(err.value) and str(truncated) in str(err.value)
    assert "skip_bad_images=True" in str(err.value)


def test_skip_bad_images(market, caplog) -> None:
    garbage, truncated = _corrupt(market)
    with caplog.at_level(logging.WARNING, logger="rareid.data.readers"):
        ds = build_dataset("market", market.root, verify_images=True, skip_bad_images=True)
    assert "skipped 2 unreadable or corrupt image(s)" in caplog.text
    paths = {r.path for r in ds.train + ds.query + ds.gallery}
    assert str(garbage) not in paths and str(truncated) not in paths
    assert (len(ds.train), len(ds.gallery)) == (23, 19)


def test_verify_clean_dataset_passes(market) -> None:
    assert build_dataset("market", market.root, verify_images=True) == build_dataset(
        "market", market.root
    )


def test_shipped_configs_use_only_their_readers_options() -> None:
    import yaml

    from rareid.data.readers import COMMON_OPTIONS

    configs = sorted((Path(__file__).parents[2] / "conf").rglob("*.yaml"))
    checked = 0
    for config in configs:
        data = (yaml.safe_load(config.read_text()) or {}).get("data") or {}
        if "dataset" not in data:
            continue
        allowed = set(reader_options(data["dataset"])) | set(COMMON_OPTIONS)
        assert set(data.get("dataset_options") or {}) <= allowed, config
        checked += 1
    assert checked >= 10

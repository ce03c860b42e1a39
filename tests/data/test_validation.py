"""Validation on identities held out from the training split, never on the test split."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch

import rareid.data.dataset as dataset_module
from rareid.data.datamodule import ReIDDataModule
from rareid.data.protocol import Role
from tests.data.fixtures import market_datamodule, write_market_tree

SIZE = (32, 16)
TRAIN_IDS = tuple(range(2, 22))  # 20 training identities
TEST_IDS = (101, 102, 103)


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    root = tmp_path_factory.mktemp("market_val")
    write_market_tree(
        root,
        train_ids=TRAIN_IDS,
        test_ids=TEST_IDS,
        cameras=(1, 2),
        images_per_camera=2,
        size=(32, 16),
        extras=False,
    )
    return str(root)


def make_dm(root: str, **kwargs) -> ReIDDataModule:
    return market_datamodule(
        root, **{"input_size": SIZE, "k": 2, "trials": 2, "eval_batch_size": 16, **kwargs}
    )


class Recorder(L.LightningModule):
    """Records the identities of every training and validation batch."""

    def __init__(self) -> None:
        super().__init__()
        self.layer = torch.nn.Linear(3, 1)
        self.train_labels: set[int] = set()
        self.val_pids: set[int] = set()
        self.val_batches = 0

    def training_step(self, batch, batch_idx):
        self.train_labels.update(batch["pid"].tolist())
        return self.layer(batch["hr"].mean(dim=(2, 3))).mean() + 0 * batch["lr"].sum()

    def validation_step(self, batch, batch_idx):
        self.val_batches += 1
        self.val_pids.update(batch["pid"].tolist())

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.01)


def fit(dm: ReIDDataModule) -> Recorder:
    model = Recorder()
    trainer = L.Trainer(
        accelerator="cpu",
        max_epochs=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
    )
    trainer.fit(model, datamodule=dm)
    return model


def test_fit_never_reads_a_test_image(root, monkeypatch):
    dm = make_dm(root, val_identities=4)
    test_paths = {r.path for r in dm.dataset.query + dm.dataset.gallery}
    read = []
    original = dataset_module.read_image

    def recording_read(path):
        read.append(str(path))
        return original(path)

    monkeypatch.setattr(dataset_module, "read_image", recording_read)
    model = fit(dm)
    assert read and not set(read) & test_paths
    assert model.val_batches > 0 and model.val_pids
    assert not model.val_pids & set(TEST_IDS)


def test_held_out_identities_never_in_training_batches(root):
    dm = make_dm(root, val_identities=4)
    model = fit(dm)
    split = dm.fit_split
    assert len(split.val_ids) == 4 and set(split.val_ids) <= set(TRAIN_IDS)
    trained = {split.train_ids[label] for label in model.train_labels}
    assert trained and not trained & set(split.val_ids)
    assert model.val_pids == set(split.val_ids)
    # dense labels over the reduced training set
    assert dm.num_classes == len(TRAIN_IDS) - 4 == len(split.train_ids)
    assert sorted(model.train_labels) == list(range(dm.num_classes))


def test_validation_set_is_an_mlr_set_split_by_camera(root):
    dm = make_dm(root, val_identities=0.25, val_trials=3)
    assert dm.has_validation and len(dm.fit_split.val_ids) == 5  # 25 % of 20
    table = dm.eval_dataset("val").table
    queries = table.role == Role.QUERY
    gallery = table.role == Role.GALLERY
    assert queries.any() and gallery.any()
    assert set(table.rate[queries].tolist()) <= {2.0, 3.0, 4.0}
    assert set(table.trial[queries].tolist()) == {0, 1, 2}
    for pid in dm.fit_split.val_ids:
        q_cams = set(table.camid[queries & (table.pid == pid)].tolist())
        g_cams = set(table.camid[gallery & (table.pid == pid)].tolist())
        assert len(q_cams) == 1 and g_cams and not q_cams & g_cams
        for trial in range(3):  # single-shot: one HR gallery image per identity per trial
            member = gallery & (table.pid == pid) & ((table.gallery_trials >> trial) & 1 == 1)
            assert member.sum() == 1


def test_validation_ids_are_seeded(root):
    a = make_dm(root, val_identities=5, seed=1).fit_split.val_ids
    assert a == make_dm(root, val_identities=5, seed=1).fit_split.val_ids
    others = {make_dm(root, val_identities=5, seed=s).fit_split.val_ids for s in range(2, 6)}
    assert others - {a}


def test_zero_val_identities_runs_fit_without_validation(root):
    dm = make_dm(root, val_identities=0)
    assert not dm.has_validation and dm.num_classes == len(TRAIN_IDS)
    model = fit(dm)
    assert model.val_batches == 0 and model.train_labels
    with pytest.raises(ValueError, match="val_identities"):
        dm.eval_dataset("val")


def test_default_holds_out_about_ten_percent(root):
    dm = make_dm(root)
    assert len(dm.fit_split.val_ids) == 2 and dm.num_classes == 18


@pytest.mark.parametrize("value", [-1, 1.5, 20, 25, "a", True])
def test_bad_val_identities(root, value):
    with pytest.raises(ValueError, match="val_identities"):
        make_dm(root, val_identities=value).fit_split  # noqa: B018


def test_single_camera_identities_cannot_be_held_out(tmp_path):
    write_market_tree(tmp_path, cameras=(1,), extras=False, size=(32, 16))
    with pytest.raises(ValueError, match="two or more cameras"):
        make_dm(str(tmp_path), val_identities=1).fit_split  # noqa: B018
    assert np.isfinite(make_dm(str(tmp_path), val_identities=0).num_classes)


def test_caviar_trains_on_near_camera_only_and_validates_on_real_lowres(tmp_path):
    from tests.data.fixtures import write_caviar_tree

    info = write_caviar_tree(
        tmp_path, both_ids=range(1, 13), near_only_ids=(20,), far_only_ids=(21,)
    )  # far images 24x12, near 64x32
    far = {str(p) for paths in info.far.values() for p in paths}
    dm = ReIDDataModule(
        dataset="caviar",
        root=str(tmp_path),
        dataset_options={"caviar_num_test": 4},
        input_size=SIZE,
        p=2,
        k=2,
        num_workers=0,
        trials=2,
        val_identities=2,
    )
    train_paths = set(dm.train_dataset().paths)
    assert train_paths and not train_paths & far  # far-camera images never enter training
    assert dm.num_classes == 8 - 2
    val = dm.eval_dataset("val")
    table = val.table
    queries = np.flatnonzero(table.role == Role.QUERY)
    gallery = np.flatnonzero(table.role == Role.GALLERY)
    assert {val.path(i) for i in queries} <= far  # real LR validation queries
    assert not {val.path(i) for i in gallery} & far
    assert not table.synthesize[queries].any()
    np.testing.assert_allclose(table.rate[queries], 64 / 24)  # level estimated from height
    held = {int(Path(val.path(i)).name[:4]) for i in queries}
    assert held == set(dm.fit_split.val_ids) and len(held) == 2
    test_ids = {r.pid for r in dm.dataset.query}
    assert not held & test_ids and not set(dm.fit_split.train_ids) & test_ids


def test_too_few_training_identities_names_the_hold_out(tmp_path):
    write_market_tree(tmp_path, extras=False, size=(32, 16))  # 4 training identities
    dm = make_dm(str(tmp_path), p=4, val_identities=1)
    with pytest.raises(ValueError, match=r"only 3.*held out for validation: val_identities=1"):
        dm.train_dataloader()


def test_val_distractors_join_every_validation_gallery(root, tmp_path):
    import cv2

    folder = tmp_path / "pool"
    folder.mkdir()
    for index in range(3):
        cv2.imwrite(str(folder / f"other_{index}.jpg"), np.full((32, 16, 3), 40 * index, np.uint8))
    dm = make_dm(root, val_identities=5, val_trials=2, val_distractors=str(folder))
    table = dm.eval_dataset("val").table
    distractors = (table.role == Role.GALLERY) & (table.pid == 0)
    assert distractors.sum() == 3
    assert ((table.gallery_trials[distractors] & 0b11) == 0b11).all()  # in every trial
    plain = make_dm(root, val_identities=5, val_trials=2).eval_dataset("val").table
    assert (plain.pid == 0).sum() == 0 and len(table.pid) == len(plain.pid) + 3
    assert "val_distractors" in dm.protocol_options()
    assert "val_distractors" not in make_dm(root).protocol_options()


def test_val_distractors_must_be_a_folder_of_images(root, tmp_path):
    with pytest.raises(FileNotFoundError, match=r"val_distractors: .* is not a folder"):
        _ = make_dm(root, val_identities=5, val_distractors=str(tmp_path / "nope")).fit_split
    with pytest.raises(ValueError, match=r"val_distractors: no \.jpg/\.png images"):
        _ = make_dm(root, val_identities=5, val_distractors=str(tmp_path)).fit_split

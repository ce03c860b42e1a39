"""ReIDDataModule: training batches, MLR evaluation sets, options (rareid/data/datamodule.py)."""

from __future__ import annotations

from collections import Counter

import cv2
import lightning as L
import numpy as np
import pytest
import torch
from torch.utils.data import BatchSampler, DataLoader, DistributedSampler

from rareid.data.datamodule import ReIDDataModule
from rareid.data.lowres import degrade
from rareid.data.protocol import Role
from rareid.data.readers import BadImageError, ImageRecord, ReIDSplits
from rareid.levels import rate_to_level
from tests.data.fixtures import market_datamodule, write_caviar_tree, write_market_tree

SIZE = (64, 32)
# write_market_tree defaults: 4 train ids x 3 cams x 2 images; 3 test ids -> 9 queries,
# 18 gallery images + 2 distractors (pid 0); 3 junk images (pid -1, dropped by the reader)
N_QUERY, N_GALLERY, TEST_IDS = 9, 20, {3, 5, 40}


@pytest.fixture(scope="module")
def market_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("market")
    write_market_tree(root)
    return str(root)


def make_dm(root: str, **kwargs) -> ReIDDataModule:
    defaults = {"input_size": SIZE, "k": 4, "trials": 3, "val_identities": 0}
    return market_datamodule(root, **{**defaults, **kwargs})


def test_num_classes_right_after_init(market_root):
    dm = make_dm(market_root)
    assert dm.num_classes == 4
    assert dm.eval_rates == (2.0, 3.0, 4.0)  # rates without 1
    assert dm.hparams.p == 2 and dm.hparams.gallery_mode == "single"
    # the default holds out ~10 % of the training identities (at least one) for validation
    assert make_dm(market_root, val_identities=0.1).num_classes == 3


def test_train_batches(market_root):
    dm = make_dm(market_root)
    dm.setup("fit")
    loader = dm.train_dataloader()
    batches = list(loader)
    assert len(batches) == len(loader) > 0
    for batch in batches:
        assert set(batch) == {"hr", "lr", "lr_level", "pid", "camid"}
        assert batch["hr"].shape == batch["lr"].shape == (8, 3, *SIZE)
        assert batch["hr"].dtype == batch["lr"].dtype == torch.float32
        for key in ("lr_level", "pid", "camid"):
            assert batch[key].dtype == torch.int64 and batch[key].shape == (8,)
        assert batch["lr_level"].min() >= 1 and batch["lr_level"].max() <= 4
        assert batch["pid"].min() >= 0 and batch["pid"].max() < dm.num_classes
        assert sorted(Counter(batch["pid"].tolist()).values()) == [4, 4]  # P x K
        assert -5 < batch["hr"].mean() < 5  # normalised, not 0..255
    levels = torch.cat([b["lr_level"] for b in batches])
    assert len(set(levels.tolist())) > 1


def eval_arrays(ds) -> dict[str, np.ndarray]:
    t = ds.table
    return {"role": t.role, "trial": t.trial, "level": t.level, "rate": t.rate, "pid": t.pid}


def test_eval_dataset_roles_trials_levels(market_root):
    dm = make_dm(market_root, trials=3)
    ds = dm.eval_dataset("test")
    t = ds.table
    assert len(ds) == N_GALLERY + 3 * N_QUERY + N_QUERY
    assert (t.role == Role.GALLERY).sum() == N_GALLERY
    assert (t.role == Role.HR_QUERY).sum() == N_QUERY
    queries = t.role == Role.QUERY
    assert Counter(t.trial[queries].tolist()) == {0: N_QUERY, 1: N_QUERY, 2: N_QUERY}
    assert (t.trial[~queries] == -1).all()
    assert set(t.rate[queries].tolist()) <= {2.0, 3.0, 4.0}
    for rate, level in zip(t.rate[queries], t.level[queries], strict=True):
        assert level == rate_to_level(rate, [1, 2, 3, 4])
    assert (t.level[~queries] == 4).all()
    # per trial every query once
    for trial in range(3):
        rows = np.flatnonzero(queries & (t.trial == trial))
        assert sorted(ds.path(i) for i in rows) == sorted({ds.path(i) for i in rows})
    # validation uses val_trials, on one held-out training identity (2 images per camera)
    val = make_dm(market_root, val_identities=1).eval_dataset("validate").table
    assert (val.role == Role.QUERY).sum() == 2 and set(val.trial[val.role == Role.QUERY]) == {0}


def test_eval_batches(market_root):
    dm = make_dm(market_root, eval_batch_size=16, val_identities=1)
    loader = dm.test_dataloader()
    batches = list(loader)
    keys = {"image", "level", "pid", "camid", "role", "trial", "gallery_trials", "index"}
    for batch in batches:
        assert set(batch) == keys
        assert batch["image"].dtype == torch.float32 and batch["image"].shape[1:] == (3, *SIZE)
        for key in keys - {"image"}:
            assert batch[key].dtype == torch.int64
    index = torch.cat([b["index"] for b in batches])
    assert index.tolist() == list(range(len(dm.eval_dataset("test"))))
    gallery_trials = torch.cat([b["gallery_trials"] for b in batches])
    role = torch.cat([b["role"] for b in batches])
    assert (gallery_trials[role != Role.GALLERY] == 0).all()
    assert len(list(dm.predict_dataloader())) == len(batches)
    assert len(list(dm.val_dataloader())) >= 1


def test_single_shot_gallery_bitmask(market_root):
    dm = make_dm(market_root, trials=5, gallery_mode="single")
    t = dm.eval_dataset("test").table
    gallery = t.role == Role.GALLERY
    bits, pids = t.gallery_trials[gallery], t.pid[gallery]
    draws = []
    for trial in range(5):
        member = (bits >> trial) & 1 == 1
        chosen = pids[member]
        assert (chosen == 0).sum() == 2  # distractors kept in every trial
        assert Counter(chosen[chosen != 0].tolist()) == {pid: 1 for pid in TEST_IDS}
        draws.append(tuple(np.flatnonzero(member)))
    assert len(set(draws)) > 1  # each trial its own draw
    assert (bits < (1 << 5)).all()


def test_multi_shot_gallery_bitmask(market_root):
    t = make_dm(market_root, trials=4, gallery_mode="multi").eval_dataset("test").table
    assert (t.gallery_trials[t.role == Role.GALLERY] == 0b1111).all()


def query_rows(dm, stage="test"):
    ds = dm.eval_dataset(stage)
    rows = np.flatnonzero(ds.table.role == Role.QUERY)
    return ds, rows


def test_same_seed_same_rates_and_pixels(market_root):
    ds_a, rows = query_rows(make_dm(market_root, seed=3))
    ds_b, _ = query_rows(make_dm(market_root, seed=3))
    np.testing.assert_array_equal(ds_a.table.rate, ds_b.table.rate)
    np.testing.assert_array_equal(ds_a.table.gallery_trials, ds_b.table.gallery_trials)
    for i in rows[:6]:
        assert torch.equal(ds_a[i]["image"], ds_b[i]["image"])
    ds_c, _ = query_rows(make_dm(market_root, seed=4))
    assert not np.array_equal(ds_a.table.rate[rows], ds_c.table.rate[rows])
    diff = [not torch.equal(ds_a[i]["image"], ds_c[i]["image"]) for i in rows]
    assert any(diff)


def test_degraded_query_pixels_and_display_image(market_root):
    dm = make_dm(market_root)
    ds, rows = query_rows(dm)
    i = int(rows[0])
    info = dm.eval_sample_info("test", i)
    assert set(info) >= {"path", "role", "trial", "rate", "level", "pid", "camid"}
    assert info["role"] == Role.QUERY and info["trial"] == 0 and info["pid"] in TEST_IDS
    native = cv2.cvtColor(cv2.imread(info["path"]), cv2.COLOR_BGR2RGB)
    shown = dm.load_eval_image("test", i)
    np.testing.assert_array_equal(shown, degrade(native, info["rate"]))
    assert shown.shape[0] == round(128 / info["rate"])
    gallery_info = dm.eval_sample_info("test", 0)
    assert gallery_info["role"] == Role.GALLERY and gallery_info["level"] == 4
    assert dm.load_eval_image("test", 0).shape == (128, 64, 3)
    with pytest.raises(IndexError):
        dm.eval_sample_info("test", len(ds))


def test_num_workers_two_gives_the_same_eval_batches(market_root):
    serial = list(make_dm(market_root).test_dataloader())
    dm = make_dm(market_root, num_workers=2)
    parallel = list(dm.test_dataloader())
    assert len(serial) == len(parallel)
    for a, b in zip(serial, parallel, strict=True):
        for key in a:
            assert torch.equal(a[key], b[key]), key
    batches = list(dm.train_dataloader())
    assert len(batches) == len(dm.train_dataloader()) and batches[0]["hr"].shape[0] == 8


def test_train_randomness_seeded_without_workers(market_root):
    first = next(iter(make_dm(market_root, seed=1).train_dataloader()))
    again = next(iter(make_dm(market_root, seed=1).train_dataloader()))
    other = next(iter(make_dm(market_root, seed=2).train_dataloader()))
    assert torch.equal(first["lr"], again["lr"]) and torch.equal(first["pid"], again["pid"])
    assert not torch.equal(first["lr"], other["lr"])


def _epoch_batches(dm: ReIDDataModule, epoch: int) -> list[dict]:
    loader = dm.train_dataloader()
    loader.batch_sampler.set_epoch(epoch)
    return list(loader)


def test_an_epochs_training_views_depend_on_seed_and_epoch_only(market_root):
    """Epoch 1 draws the same views fresh, after epoch 0, and with workers: what a resume needs."""
    history = make_dm(market_root, seed=3)
    _epoch_batches(history, 0)
    after_epoch_0 = _epoch_batches(history, 1)
    fresh = _epoch_batches(make_dm(market_root, seed=3), 1)
    workers = _epoch_batches(make_dm(market_root, seed=3, num_workers=2), 1)
    for batches in (fresh, workers):
        assert len(batches) == len(after_epoch_0)
        for a, b in zip(after_epoch_0, batches, strict=True):
            for key in a:
                assert torch.equal(a[key], b[key]), key
    epoch_0 = _epoch_batches(make_dm(market_root, seed=3), 0)
    assert not torch.equal(epoch_0[0]["lr"], after_epoch_0[0]["lr"])


def test_unseen_eval_rates_get_assigned_levels(market_root):
    dm = make_dm(market_root, rates=[1, 2, 4, 8], eval_rates=[3, 6], level_policy="nearest")
    t = dm.eval_dataset("test").table
    queries = t.role == Role.QUERY
    for rate, level in zip(t.rate[queries], t.level[queries], strict=True):
        assert level == {3.0: 2, 6.0: 1}[rate]  # 3 -> 4 (level 2), 6 -> 8 (level 1)
    t = make_dm(market_root, rates=[1, 2, 4, 8], eval_rates=[3], level_policy="higher")
    assert set(t.eval_dataset("test").table.level[queries].tolist()) == {3}  # 3 -> 2


def test_caviar_real_lowres_queries(tmp_path):
    write_caviar_tree(tmp_path)  # near 64x32 (HR gallery), far 24x12 (real LR queries)
    dm = ReIDDataModule(
        dataset="caviar",
        root=str(tmp_path),
        dataset_options={"caviar_num_test": 4},
        input_size=SIZE,
        p=2,
        k=2,
        num_workers=0,
        trials=2,
    )
    ds = dm.eval_dataset("test")
    t = ds.table
    n_query = len(dm.dataset.query)
    assert (t.role == Role.HR_QUERY).sum() == 0  # no HR version of a real LR query
    queries = np.flatnonzero(t.role == Role.QUERY)
    assert Counter(t.trial[queries].tolist()) == {0: n_query, 1: n_query}
    # reference height = median gallery height 64; 64 / 24 = 2.67 -> log-nearest rate 3 = level 2
    np.testing.assert_allclose(t.rate[queries], 64 / 24)
    assert (t.level[queries] == 2).all()
    i = int(queries[0])
    assert dm.load_eval_image("test", i).shape == (24, 12, 3)  # shown as it is
    assert ds[i]["image"].shape == (3, *SIZE)
    # an explicit reference height: 96 / 24 = 4 -> level 1
    dm96 = ReIDDataModule(
        dataset="caviar",
        root=str(tmp_path),
        dataset_options={"caviar_num_test": 4},
        input_size=SIZE,
        reference_height=96,
        trials=1,
    )
    t96 = dm96.eval_dataset("test").table
    assert (t96.level[t96.role == Role.QUERY] == 1).all()


def test_directly_built_dataset(tmp_path):
    """A ReIDSplits made by hand (no reader) works once assigned to ``dataset``."""
    paths = []
    for i in range(6):
        path = tmp_path / f"{i}.png"
        cv2.imwrite(str(path), np.full((40, 20, 3), 30 * i, dtype=np.uint8))
        paths.append(str(path))
    train = [ImageRecord(paths[i], i % 2, 0) for i in range(4)]
    query = [ImageRecord(paths[4], 7, 0)]
    gallery = [ImageRecord(paths[5], 7, 1), ImageRecord(paths[0], 0, 1)]
    dm = ReIDDataModule(input_size=SIZE, p=2, k=2, num_workers=0, trials=2, val_identities=0)
    dm.dataset = ReIDSplits("hand", train, query, gallery, num_classes=2)
    assert dm.num_classes == 2
    assert next(iter(dm.train_dataloader()))["hr"].shape == (4, 3, *SIZE)
    t = dm.eval_dataset("test").table
    assert t.gallery_trials[:2].tolist() == [0b11, 0b11]


def test_corrupt_image_error_names_the_file(tmp_path):
    info = write_market_tree(tmp_path, extras=False)
    bad = info.train[0]
    bad.write_bytes(b"\xff\xd8 broken")
    dm = make_dm(str(tmp_path))
    with pytest.raises(BadImageError, match=bad.name):  # found before the first batch
        dm.train_dataset()
    gallery = info.gallery[0]
    gallery.write_bytes(b"")
    with pytest.raises(OSError, match=gallery.name):
        list(make_dm(str(tmp_path), verify_eval_images=False).test_dataloader())


def test_eval_images_are_header_checked_before_the_first_batch(tmp_path):
    info = write_market_tree(tmp_path, extras=False)
    truncated = info.gallery[1]
    data = truncated.read_bytes()
    truncated.write_bytes(data[: len(data) // 2])
    empty = info.query[0]
    empty.write_bytes(b"")
    dm = make_dm(str(tmp_path))
    with pytest.raises(BadImageError, match="2 unreadable or truncated") as err:
        dm.test_dataloader()
    assert f"{truncated}: truncated JPEG" in str(err.value)
    assert f"{empty}: empty file" in str(err.value)
    # fit never reads the test split: its images are not checked there
    assert make_dm(str(tmp_path), val_identities=1).val_dataloader() is not None


def _break_two(paths) -> tuple:
    """A truncated JPEG (decodes with only a libjpeg warning) and a garbage file."""
    truncated, garbage = paths[0], paths[1]
    data = truncated.read_bytes()
    truncated.write_bytes(data[: len(data) * 2 // 3])
    assert cv2.imread(str(truncated)) is not None  # what the check must not rely on
    garbage.write_bytes(b"this is no image at all, " * 80)
    return truncated, garbage


def test_bad_training_images_stop_the_fit_before_the_first_batch(tmp_path):
    info = write_market_tree(tmp_path, extras=False)
    truncated, garbage = _break_two(info.train)
    with pytest.raises(BadImageError, match="training images: 2 unreadable or truncated") as err:
        make_dm(str(tmp_path)).train_dataloader()
    assert f"{truncated}: truncated JPEG" in str(err.value)
    assert f"{garbage}: not a readable image" in str(err.value)
    assert "data.bad_images=skip" in str(err.value)


def test_bad_images_skip_leaves_them_out_with_a_count_and_names(tmp_path, caplog):
    info = write_market_tree(tmp_path, extras=False)
    bad = {str(p) for p in _break_two(info.train)}
    bad_gallery, bad_query = _break_two([info.gallery[0], info.query[0]])
    bad_eval = {str(bad_gallery), str(bad_query)}
    dm = make_dm(str(tmp_path), bad_images="skip")
    with caplog.at_level("WARNING", logger="rareid.data.datamodule"):
        loader = dm.train_dataloader()
        test = dm.eval_dataset("test")
    train_line, test_line = [r.getMessage() for r in caplog.records]
    assert "training images: skipped 2 unreadable or truncated image(s)" in train_line
    assert all(path in train_line for path in bad)
    assert "test images: skipped 2" in test_line and str(bad_query) in test_line
    assert not bad & set(loader.dataset.paths)
    assert len(loader.dataset) == len(info.train) - 2
    assert not bad_eval & set(test.table.paths)
    assert len(list(loader)) == len(loader)  # nothing left that fails to load
    list(dm.test_dataloader())


def test_tiny_files_are_decoded_by_the_check(tmp_path):
    from rareid.data.readers.base import TINY_IMAGE_BYTES, header_problem

    fake = tmp_path / "fake.jpg"
    fake.write_bytes(b"\xff\xd8\xff\xe0" + b"\x00" * 64 + b"\xff\xd9")  # the markers only
    assert header_problem(str(fake)) == "not a readable image (cannot be decoded)"
    tiny = tmp_path / "tiny.png"
    cv2.imwrite(str(tiny), np.zeros((4, 2, 3), np.uint8))
    assert tiny.stat().st_size <= TINY_IMAGE_BYTES and header_problem(str(tiny)) is None


def test_bad_images_is_a_choice_the_cli_validates(tmp_path):
    with pytest.raises(ValueError, match="bad_images"):
        make_dm(str(tmp_path), bad_images="ignore")


def test_decode_failure_in_a_worker_names_the_file_and_stops(tmp_path):
    info = write_market_tree(tmp_path, extras=False)
    bad = info.gallery[2]
    # passes the header check (JPEG start and end markers, too big to be decoded in full by
    # the check) but cannot be decoded
    bad.write_bytes(b"\xff\xd8\xff\xe0" + b"\x00" * 2048 + b"\xff\xd9")
    dm = make_dm(str(tmp_path), num_workers=1)
    with pytest.raises(Exception, match=bad.name):
        list(dm.test_dataloader())


def test_lightning_injects_distributed_sampler(market_root):
    """What Lightning does under DDP: re-create the PK sampler with a DistributedSampler."""
    from lightning.fabric.utilities.data import _replace_dunder_methods
    from lightning.pytorch.utilities.data import _update_dataloader

    dm = make_dm(market_root, p=2, k=2)
    with _replace_dunder_methods(DataLoader, "dataset"), _replace_dunder_methods(BatchSampler):
        loader = dm.train_dataloader()
    batches = []
    for rank in range(2):
        dist = DistributedSampler(loader.dataset, num_replicas=2, rank=rank)
        new = _update_dataloader(loader, dist)
        assert (new.batch_sampler.num_replicas, new.batch_sampler.rank) == (2, rank)
        batches.append([b["pid"].tolist() for b in new])
    assert len(batches[0]) == len(batches[1]) > 0
    for pids0, pids1 in zip(*batches, strict=True):
        assert not set(pids0) & set(pids1)


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("gallery_mode", "few"),
        ("interpolation", "bicubic2"),
        ("level_policy", "closest"),
        ("trials", 63),
        ("trials", 0),
        ("val_trials", 0),
        ("p", 0),
        ("k", -1),
        ("num_workers", -1),
        ("rates", []),
        ("rates", [0.5, 1]),
        ("eval_rates", [0.5]),
        ("eval_rates", []),
        ("input_size", (0, 32)),
        ("mean", (0.5, 0.5)),
        ("std", (0.2, 0.2, 0.0)),
        ("reference_height", -3),
        ("dataset", "market9000"),
        ("dataset_options", [1, 2]),
    ],
)
def test_bad_options_name_the_option(market_root, option, value):
    with pytest.raises(ValueError, match=option):
        make_dm(market_root, **{option: value})


def test_rates_without_r1_need_explicit_eval_rates(market_root):
    with pytest.raises(ValueError, match="eval_rates"):
        make_dm(market_root, rates=[1])
    assert make_dm(market_root, rates=[1], eval_rates=[2], lr_view_hr=True).eval_rates == (2.0,)


def _train_levels(dm) -> set[int]:
    dm.setup("fit")
    return {level for batch in dm.train_dataloader() for level in batch["lr_level"].tolist()}


def test_lr_views_are_drawn_from_the_rates_above_1_as_the_paper_trains(market_root):
    # Level 4 is r = 1: the paper's LR views never are; lr_view_hr draws it too.
    levels = set().union(*(_train_levels(make_dm(market_root, seed=seed)) for seed in range(3)))
    assert levels == {1, 2, 3}
    with_hr = set().union(
        *(_train_levels(make_dm(market_root, seed=seed, lr_view_hr=True)) for seed in range(3))
    )
    assert with_hr == {1, 2, 3, 4}


def test_only_hr_rates_need_lr_view_hr(market_root):
    with pytest.raises(ValueError, match="lr_view_hr"):
        make_dm(market_root, rates=[1], eval_rates=[2])


def test_unknown_stage(market_root):
    with pytest.raises(ValueError, match="stage"):
        make_dm(market_root).eval_dataset("training")


class Recorder(L.LightningModule):
    """Consumes the DataModule's batches and records what it saw."""

    def __init__(self) -> None:
        super().__init__()
        self.layer = torch.nn.Linear(3, 1)
        self.train_pids: list[list[int]] = []
        self.eval_index: list[int] = []

    def training_step(self, batch, batch_idx):
        self.train_pids.append(batch["pid"].tolist())
        return self.layer(batch["hr"].mean(dim=(2, 3))).mean() + 0 * batch["lr"].sum()

    def validation_step(self, batch, batch_idx):
        self.eval_index.extend(batch["index"].tolist())

    def on_train_epoch_end(self):
        gathered = self.all_gather(torch.tensor(self.train_pids[-1]))
        if gathered.dim() == 2:  # DDP: (world, P*K) -> disjoint identities per step
            assert not set(gathered[0].tolist()) & set(gathered[1].tolist())

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.01)


def test_lightning_fit_single_device(market_root):
    dm = make_dm(market_root, p=2, k=2, val_trials=1, val_identities=1)
    model = Recorder()
    trainer = L.Trainer(
        accelerator="cpu",
        devices=1,
        max_epochs=2,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
    )
    trainer.fit(model, datamodule=dm)
    assert trainer.train_dataloader.batch_sampler.epoch == 1  # Lightning called set_epoch
    per_epoch = len(model.train_pids) // 2
    assert per_epoch == len(trainer.train_dataloader)
    assert model.train_pids[:per_epoch] != model.train_pids[per_epoch:]
    n_val = len(dm.eval_dataset("val"))
    assert sorted(model.eval_index) == sorted(list(range(n_val)) * 2)  # validated every epoch


@pytest.mark.e2e
def test_lightning_ddp_two_cpu_processes(market_root):
    dm = make_dm(market_root, p=2, k=2, num_workers=1)
    trainer = L.Trainer(
        accelerator="cpu",
        devices=2,
        strategy="ddp_spawn",
        max_epochs=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
    )
    trainer.fit(Recorder(), datamodule=dm)
    assert trainer.state.finished


def test_naive_rate_degrades_both_views_queries_and_gallery(market_root):
    dm = make_dm(market_root, naive_rate=3)
    assert dm.eval_rates == (3.0,)
    sample = dm.train_dataset()[0]
    # Both training views come from the rate-3 image; the LR view's level is rate 3's level.
    assert sample["lr_level"] == rate_to_level(3, dm.rates)
    ds = dm.eval_dataset("test")
    arrays = eval_arrays(ds)
    assert set(arrays["role"].tolist()) == {0, 1}  # no HR reference queries
    gallery_rows = np.flatnonzero(arrays["role"] == 0)
    info = ds.info(int(gallery_rows[0]))
    assert info["rate"] == 3.0 and info["synthesized"]
    native = cv2.imread(info["path"])
    assert ds.load_image(int(gallery_rows[0])).shape[:2] == degrade(native, 3).shape[:2]
    with pytest.raises(ValueError, match="naive_rate"):
        make_dm(market_root, naive_rate=5)


@pytest.mark.parametrize(
    ("option", "value"),
    [("gallery_mode", "few"), ("interpolation", "bicubic2"), ("level_policy", "closest")],
)
def test_string_options_are_literals_the_cli_validates(option, value):
    from jsonargparse import ArgumentParser

    parser = ArgumentParser(exit_on_error=False)
    parser.add_class_arguments(ReIDDataModule, "data")
    with pytest.raises(Exception, match=option):
        parser.parse_args([f"--data.{option}", value])
    good = {"gallery_mode": "multi", "interpolation": "cubic", "level_policy": "lower"}[option]
    assert parser.parse_args([f"--data.{option}", good]).data[option] == good

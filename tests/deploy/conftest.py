"""Fixtures of the deployment tests: a tiny model trained for seconds on a handful of synthetic
identities whose coarse look differs (so identity is easy even at low resolution), a gallery
folder of their crops under arbitrary file names, and degraded query crops of unseen sizes."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import cv2
import lightning as L
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, Dataset

from rareid.callbacks.progressive import ProgressiveMaskTraining
from rareid.data.lowres import synthesize_lowres
from rareid.data.synthetic import SyntheticWorld
from rareid.data.transforms import EvalTransform
from rareid.models.module import RAReIDModule
from tests.helpers import quiet_trainer_kwargs, tiny_module_kwargs

NUM_PEOPLE = 6
EPOCHS = 20
IMG_SIZE = (64, 32)
#: Normalisation saved as the datamodule's in the checkpoint: not ImageNet's, so a helper that
#: ignored the checkpoint would be caught.
MEAN, STD = (0.5, 0.4, 0.3), (0.25, 0.2, 0.3)
#: Arbitrary gallery names: spaces, unicode, nesting, several formats.
GALLERY_NAMES = (
    "cam A/im 001.jpg",
    "cam A/Ünïcode_ß.png",
    "deep/er/x.bmp",
    "IMG-20240101 (copy).JPG",
    "p.webp",
    "zz/last one.png",
)
#: Query crop heights no model rate produces exactly (native height 128, rates 1..4).
QUERY_HEIGHTS = (97, 58, 41, 29)


def make_model(**overrides) -> RAReIDModule:
    return RAReIDModule(
        **tiny_module_kwargs(
            backbone="test_resnet",  # timm's 0.4 M-parameter ResNet: trains in seconds
            num_classes=NUM_PEOPLE,
            embedding_dim=32,
            embedding_norm=True,
            mask_schedule="end_to_end",
            lr=2e-3,
            **overrides,
        )
    )


@pytest.fixture(scope="session")
def world() -> SyntheticWorld:
    return SyntheticWorld(identities=48, seed=0, cameras=2, train_identities=24)


@pytest.fixture(scope="session")
def people(world: SyntheticWorld) -> list[int]:
    """One identity from each of the first coarse groups: they look different at any size."""
    return [group[0] for group in world.groups[:NUM_PEOPLE]]


class ViewPairs(Dataset):
    """HR view and an LR view (rate from the model's rates) of renders of ``people``."""

    def __init__(self, world: SyntheticWorld, people: list[int], per_person: int = 8) -> None:
        transform = EvalTransform(IMG_SIZE, MEAN, STD)
        rng = np.random.default_rng(0)
        self.items = []
        for label, pid in enumerate(people):
            for frame in range(per_person):
                image = world.render(pid, frame % 2, 100 + frame)
                level = int(rng.integers(1, 5))
                rate = float(5 - level)
                low = synthesize_lowres(image, rate, IMG_SIZE)
                self.items.append(
                    {
                        "hr": transform(image),
                        "lr": transform(low) if rate > 1 else transform(image),
                        "lr_level": torch.tensor(level),
                        "pid": torch.tensor(label),
                        "camid": torch.tensor(frame % 2),
                    }
                )

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return self.items[index]


class PairsModule(L.LightningDataModule):
    def __init__(self, dataset: ViewPairs) -> None:
        super().__init__()
        self.dataset = dataset

    def train_dataloader(self) -> DataLoader:
        return DataLoader(self.dataset, batch_size=16, shuffle=True, num_workers=0)


@pytest.fixture(scope="session")
def trained_checkpoint(tmp_path_factory, world, people) -> Path:
    """A checkpoint trained for a few seconds; the datamodule normalisation is saved in it."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        L.seed_everything(0, verbose=False)
        root = tmp_path_factory.mktemp("trained")
        model = make_model()
        trainer = L.Trainer(
            **quiet_trainer_kwargs(root, max_epochs=EPOCHS),
            callbacks=[ProgressiveMaskTraining()],
        )
        trainer.fit(model, PairsModule(ViewPairs(world, people)))
        path = root / "tiny.ckpt"
        trainer.save_checkpoint(path)
    finally:
        torch.set_num_threads(previous)
    checkpoint = torch.load(path, weights_only=True)
    checkpoint["datamodule_hyper_parameters"] = {"mean": MEAN, "std": STD, "rates": [1, 2, 3, 4]}
    torch.save(checkpoint, path)
    return path


def write_rgb(path: Path, image: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    ok, data = cv2.imencode(path.suffix.lower(), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    assert ok
    path.write_bytes(data.tobytes())


def write_labelled_crops(
    folder: Path, world: SyntheticWorld, people: list[int], frames: int = 6, name: str = ""
) -> Path:
    """``frames`` renders of each person over 2 cameras under ``folder`` and their labels CSV
    (``path,person,camera``); ``name`` is the file-name pattern (default: a folder a person)."""
    pattern = name or "person {number}/frame_{frame}.png"
    rows = ["path,person,camera"]
    for number, pid in enumerate(people):
        for frame in range(frames):
            file = pattern.format(number=number, frame=frame)
            write_rgb(folder / file, world.render(pid, frame % 2, 40 + frame))
            rows.append(f"{file},id{number},c{frame % 2}")
    labels = folder / "labels.csv"
    labels.write_text("\n".join(rows) + "\n")
    return labels


@pytest.fixture(scope="session")
def gallery_dir(tmp_path_factory, world, people) -> Path:
    """One HR crop per person (camera 0) under arbitrary names, plus a corrupt file."""
    root = tmp_path_factory.mktemp("gallery")
    for name, pid in zip(GALLERY_NAMES, people, strict=True):
        write_rgb(root / name, world.render(pid, 0, 1))
    (root / "broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    (root / "notes.txt").write_text("not an image, not listed")
    return root


@pytest.fixture(scope="session")
def query_dir(tmp_path_factory, world, people) -> Path:
    """Every person seen again by the gallery camera in another frame, shrunk to heights no rate gives exactly."""
    root = tmp_path_factory.mktemp("queries")
    for number, pid in enumerate(people):
        image = world.render(pid, 0, 7)
        for height in QUERY_HEIGHTS:
            width = max(1, round(height * image.shape[1] / image.shape[0]))
            small = cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA)
            write_rgb(root / f"person{number}_h{height}.png", small)
    return root


@pytest.fixture(scope="session")
def query_truth(gallery_dir, query_dir) -> dict[str, str]:
    """Query file name -> the gallery name of the same person."""
    return {
        f"person{number}_h{height}.png": name
        for number, name in enumerate(GALLERY_NAMES)
        for height in QUERY_HEIGHTS
    }


def run_cli(argv: list[str]) -> int:
    """``rareid`` in this process: its exit status, also when it exits through SystemExit."""
    from rareid.cli import main

    try:
        return main(argv)
    except SystemExit as exit_:
        return int(exit_.code)


def index_args(
    checkpoint: Path, folder: Path, out: Path, *extra: str, workers: int | None = 0
) -> list[str]:
    """``rareid index`` of ``folder`` into ``out``, quiet; in-process (no workers) unless
    ``workers`` says otherwise (``None``: the command's default)."""
    threads = [] if workers is None else ["--num-workers", str(workers)]
    return [
        "index",
        "--ckpt",
        str(checkpoint),
        "--gallery",
        str(folder),
        "--out",
        str(out),
        "--no-progress",
        *threads,
        *extra,
    ]


def delete_change_and_add(folder: Path) -> None:
    """One of each change ``rareid index --add`` must notice: the first gallery file deleted, the
    second replaced by another person's picture (a later time), a new file added."""
    (folder / GALLERY_NAMES[0]).unlink()
    changed = folder / GALLERY_NAMES[1]
    shutil.copyfile(folder / GALLERY_NAMES[2], changed)
    later = time.time() + 5
    os.utime(changed, (later, later))
    shutil.copyfile(folder / GALLERY_NAMES[3], folder / "new one.png")


def vectors_index(vectors: torch.Tensor, split: list[int], metric: str = "euclidean"):
    """An HR index of ready-made ``vectors`` (no files, no model) for search tests."""
    from rareid.deploy.gallery.index import GalleryIndex
    from rareid.deploy.model.inference import Preprocess

    size = vectors.shape[0]
    return GalleryIndex(
        embeddings=vectors,
        paths=[f"g{i}.jpg" for i in range(size)],
        sizes=np.full((size, 2), (128, 64)),
        levels=torch.full((size,), len(split)),
        root="/nowhere",
        rates=[1.0, 2.0, 3.0, 4.0],
        split_sizes=split,
        metric=metric,
        preprocess=Preprocess((64, 32)),
    )


def save_folder_index(checkpoint: Path, folder: Path, out: Path) -> Path:
    """``rareid index`` of ``folder`` through the Python API, saved to ``out``."""
    from rareid.deploy.gallery.index import GalleryIndex
    from rareid.deploy.model.inference import list_images, load_model

    model, preprocess = load_model(checkpoint)
    index = GalleryIndex.build(
        model, list_images(folder), root=folder, preprocess=preprocess, checkpoint_path=checkpoint
    )
    return index.save(out)


def search_args(index: Path, query: Path, out: Path, *extra: str) -> list[str]:
    """``rareid search`` of the crops ``query`` against ``index``, results under ``out``."""
    return ["search", "--index", str(index), "--query", str(query), "--out", str(out), *extra]


#: Sub-vector sizes of the random search indexes.
SPLIT = [8, 8, 8, 8]


def random_index(size: int = 3000, seed: int = 0, metric: str = "euclidean"):
    """An index of ``size`` random vectors of the :data:`SPLIT` layout (no files, no model)."""
    generator = torch.Generator().manual_seed(seed)
    return vectors_index(torch.randn(size, sum(SPLIT), generator=generator), SPLIT, metric)

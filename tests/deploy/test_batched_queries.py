"""Query crops are embedded a batch at a time, so ``rareid search`` memory stays flat with the
number of queries."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import torch

from rareid.deploy.model.backends import EmbeddingBackend, embed_in_batches


class Recording(EmbeddingBackend):
    """Embeds each image as its first pixels times its level; remembers every batch size."""

    def __init__(self) -> None:
        self.batches: list[int] = []

    def embed(self, images: torch.Tensor, levels: torch.Tensor) -> torch.Tensor:
        self.batches.append(images.shape[0])
        return images.flatten(1)[:, :4] * levels[:, None]


def _preprocess(images: list[torch.Tensor]) -> torch.Tensor:
    return torch.stack(images)


def test_batches_never_exceed_the_size_and_give_the_one_shot_embeddings() -> None:
    images = [torch.full((3, 4, 2), float(i)) for i in range(10)]
    levels = torch.tensor([1, 2, 3, 4, 1, 2, 3, 4, 1, 2])
    backend = Recording()
    batched = embed_in_batches(backend, images, _preprocess, levels, batch_size=4)
    assert backend.batches == [4, 4, 2]
    assert torch.equal(batched, Recording().embed(_preprocess(images), levels))
    with pytest.raises(ValueError, match="batch_size"):
        embed_in_batches(backend, images, _preprocess, levels, batch_size=0)
    with pytest.raises(ValueError, match="one level per image"):
        embed_in_batches(backend, images, _preprocess, levels[:3])


def test_search_batch_size_changes_nothing_but_memory(
    tmp_path: Path, trained_checkpoint: Path, gallery_dir: Path, query_dir: Path, capsys
) -> None:
    from tests.deploy.conftest import run_cli, save_folder_index, search_args

    index = save_folder_index(trained_checkpoint, gallery_dir, tmp_path / "g.npz")
    rows = {}
    for size in ("1", "64"):
        out = tmp_path / f"batch{size}"
        command = search_args(index, query_dir, out, "--no-sheets", "--batch-size", size)
        assert run_cli([*command, "--device", "cpu"]) == 0
        with (out / "results.csv").open() as handle:
            rows[size] = [(row["query"], row["gallery"]) for row in csv.DictReader(handle)]
    assert rows["1"] == rows["64"] and len(rows["1"]) >= 16
    assert run_cli(search_args(index, query_dir, tmp_path / "bad", "--batch-size", "0")) == 2
    assert "--batch-size" in capsys.readouterr().err

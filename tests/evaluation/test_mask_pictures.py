"""Pictures of what the masks learned and of the per-level sub-vector norms."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from rareid.evaluation.masks import (
    draw_mask_heatmaps,
    mask_summary,
    subvector_norms,
    write_mask_pictures,
)
from rareid.models.module import RAReIDModule
from tests.helpers import tiny_module_kwargs


@pytest.fixture(scope="module")
def module() -> RAReIDModule:
    torch.manual_seed(0)
    return RAReIDModule(**tiny_module_kwargs())


def test_mask_summary_reads_the_sigmoid_gates(module: RAReIDModule, tmp_path: Path) -> None:
    stage = module.masks.masks[0]
    channels = stage.logits.shape[1]
    with torch.no_grad():
        stage.logits.zero_()  # every gate 0.5 ...
        stage.logits[0, : channels // 2] = -10.0  # ... level 1 (r=4): half closed
        stage.logits[3, :] = 10.0  # level 4 (HR): all open
    module.masks.set_active(0, True)
    summary = mask_summary(module.masks, module.rates)
    first = summary[module.masks.stage_names[0]]
    assert first["active"] is True and first["channels"] == channels
    levels = first["levels"]
    assert list(levels) == ["r=1 (level 4)", "r=2 (level 3)", "r=3 (level 2)", "r=4 (level 1)"]
    assert levels["r=1 (level 4)"]["open"] == 1.0 and levels["r=1 (level 4)"]["diff_to_hr"] == 0
    assert levels["r=4 (level 1)"]["closed"] == pytest.approx(0.5)
    assert levels["r=2 (level 3)"]["mean"] == pytest.approx(0.5)
    assert levels["r=2 (level 3)"]["diff_to_hr"] == pytest.approx(0.5, abs=1e-4)
    assert summary[module.masks.stage_names[1]]["active"] is False
    path = draw_mask_heatmaps(module.masks, module.rates, tmp_path / "masks.png")
    assert path.stat().st_size > 5000


def test_subvector_norms_per_level() -> None:
    embeddings = torch.zeros(3, 6)
    embeddings[0, :2] = torch.tensor([3.0, 4.0])  # level 2: block 1 norm 5
    embeddings[1, :2] = torch.tensor([0.0, 1.0])  # level 2: block 1 norm 1
    embeddings[1, 4:] = torch.tensor([6.0, 8.0])  # level 2: block 3 norm 10
    embeddings[2, 2:4] = torch.tensor([1.0, 0.0])  # level 1
    norms = subvector_norms(embeddings, torch.tensor([2, 2, 1]), [2, 2, 2])
    assert list(norms) == [2, 1]  # highest resolution first
    assert norms[2] == pytest.approx([3.0, 0.0, 5.0])
    assert norms[1] == pytest.approx([0.0, 1.0, 0.0])


class FakeEvalSet:
    """Rows: gallery (role 0), LR queries of trials 0 and 1 (role 1), HR queries (role 2)."""

    def __init__(self) -> None:
        self.rows = [(0, 0, 4)] * 3 + [(1, 0, 1), (1, 0, 3), (1, 1, 2), (1, 1, 2)] + [(2, 0, 4)]
        self.seen: list[int] = []

    def __len__(self) -> int:
        return len(self.rows)

    def info(self, index: int) -> dict[str, int]:
        role, trial, level = self.rows[index]
        return {"role": role, "trial": trial, "level": level}

    def __getitem__(self, index: int) -> dict[str, object]:
        self.seen.append(index)
        generator = torch.Generator().manual_seed(index)
        return {"image": torch.randn(3, 64, 32, generator=generator), "level": self.rows[index][2]}


def test_write_mask_pictures_embeds_trial_zero_and_hr_queries(
    module: RAReIDModule, tmp_path: Path
) -> None:
    dataset = FakeEvalSet()
    module.train()
    paths = write_mask_pictures(module, dataset, tmp_path)
    assert module.training  # the mode is restored
    assert sorted(dataset.seen) == [3, 4, 7]  # no gallery row, no trial-1 query
    assert {"masks", "subvector_norms", "masks_json"} <= set(paths)
    assert all(p.is_file() for p in paths.values())
    saved = json.loads((tmp_path / "masks.json").read_text())
    assert set(saved["subvector_norms"]) == {"4", "3", "1"}
    assert saved["split_sizes"] == list(module.split_sizes)  # proportional: [4, 1, 3, 8]
    assert all(np.isfinite(v).all() for v in saved["subvector_norms"].values())
    assert len(saved["masks"]) == len(module.masks)


def test_no_mask_picture_without_masks(tmp_path: Path) -> None:
    plain = RAReIDModule(**tiny_module_kwargs(use_masks=False, varying_length=False))
    paths = write_mask_pictures(plain, FakeEvalSet(), tmp_path)
    assert "masks" not in paths and paths["subvector_norms"].is_file()
    assert "masks" not in json.loads((tmp_path / "masks.json").read_text())


def test_block_masks_give_one_picture_row_group_per_block() -> None:
    from rareid.evaluation.masks import mask_gates

    blocks = RAReIDModule(**tiny_module_kwargs(mask_granularity="block"))
    gates = mask_gates(blocks.masks)
    assert len(gates) > len(blocks.masks)  # resnet18: two blocks per stage
    assert all(values.ndim == 2 and values.shape[0] == blocks.num_levels for _, values, _ in gates)
    assert gates[0][0].endswith(".block0")

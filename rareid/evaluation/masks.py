"""What the resolution masks learned, and how each level fills the sub-vectors of the embedding.

The paper shows no picture of its masks. Two pictures, written by ``rareid test`` beside the
rank list, answer "do the masks do anything, and what?":

* ``masks.png``: per backbone stage, the sigmoid gate of every channel for every level (a heat
  map, channels sorted by their mean gate). A stage whose rows look alike treats every
  resolution the same; rows near 0.5 with random texture never moved from the initialisation.
* ``subvector_norms.png``: mean L2 norm of each sub-vector of the (un-padded) embedding for
  test queries of each level. With varying-length embeddings a level-k query is compared on
  the first k sub-vectors only; what the network puts in the rest shows whether the split is
  used as the paper intends.

``masks.json`` holds the numbers behind both. Plain torch + matplotlib (Agg), no Lightning.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from rareid.levels import prefix_lengths

__all__ = [
    "draw_mask_heatmaps",
    "draw_subvector_norms",
    "mask_gates",
    "mask_summary",
    "subvector_norms",
    "write_mask_pictures",
]


def _level_labels(rates: Sequence[float]) -> list[str]:
    """Row labels from level m (HR) down to level 1: ``"r=1 (level 4)"``..."""
    ordered = sorted(float(r) for r in rates)
    count = len(ordered)
    return [f"r={rate:g} (level {count - index})" for index, rate in enumerate(ordered)]


def mask_gates(masks: Any) -> list[tuple[str, np.ndarray, bool]]:
    """(stage name, gates, active) per stage; gates are ``sigmoid(logits)`` as (levels, channels)
    with row 0 = level 1 (lowest resolution). Block-granularity masks (one per residual block)
    give one entry per block, named ``<stage>.block<i>``."""
    out = []
    for name, mask in zip(masks.stage_names, masks.masks, strict=True):
        gates = torch.sigmoid(mask.logits.detach().float()).cpu().numpy()
        if gates.ndim == 3:  # (blocks, levels, channels)
            out.extend(
                (f"{name}.block{block}", block_gates, bool(mask.active))
                for block, block_gates in enumerate(gates)
            )
        else:
            out.append((name, gates, bool(mask.active)))
    return out


def mask_summary(masks: Any, rates: Sequence[float]) -> dict[str, Any]:
    """Per stage and level: mean and std of the gates, share of closed (< 0.1) and open (> 0.9)
    channels, and the mean absolute difference to the HR level's gates."""
    labels = _level_labels(rates)
    summary: dict[str, Any] = {}
    for name, gates, active in mask_gates(masks):
        hr = gates[-1]
        per_level = {}
        for row, label in zip(gates[::-1], labels, strict=True):
            per_level[label] = {
                "mean": float(row.mean()),
                "std": float(row.std()),
                "closed": float((row < 0.1).mean()),
                "open": float((row > 0.9).mean()),
                "diff_to_hr": float(np.abs(row - hr).mean()),
            }
        summary[name] = {"active": active, "channels": int(gates.shape[1]), "levels": per_level}
    return summary


def draw_mask_heatmaps(masks: Any, rates: Sequence[float], path: str | Path) -> Path:
    """One heat map per stage: levels (HR on top) x channels sorted by their mean gate."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    stages = mask_gates(masks)
    labels = _level_labels(rates)
    figure = Figure(figsize=(9.0, 1.0 + 1.3 * len(stages)), layout="constrained")
    FigureCanvasAgg(figure)
    axes = np.atleast_1d(figure.subplots(len(stages), 1))
    image = None
    for ax, (name, gates, active) in zip(axes, stages, strict=True):
        order = np.argsort(-gates.mean(axis=0), kind="stable")
        rows = gates[::-1][:, order]  # HR first
        image = ax.imshow(
            rows, aspect="auto", cmap="viridis", vmin=0.0, vmax=1.0, interpolation="nearest"
        )
        means = ", ".join(f"{m:.2f}" for m in rows.mean(axis=1))
        state = "active" if active else "inactive (identity)"
        ax.set_title(
            f"{name}: {gates.shape[1]} channels, {state}; mean gate per level {means}", fontsize=9
        )
        ax.set_yticks(range(len(labels)), labels, fontsize=8)
        ax.set_xticks([])
    axes[-1].set_xlabel("channels, sorted by mean gate over levels")
    if image is not None:
        figure.colorbar(image, ax=list(axes), shrink=0.8, label="sigmoid(mask)")
    path = Path(path)
    figure.savefig(path, dpi=100)
    return path


def subvector_norms(
    embeddings: torch.Tensor, levels: torch.Tensor, split_sizes: Sequence[int]
) -> dict[int, list[float]]:
    """Mean L2 norm of each sub-vector, per level: ``{level: [norm of block 1, ...]}``."""
    bounds = [0, *prefix_lengths(split_sizes)]
    out: dict[int, list[float]] = {}
    for level in sorted({int(v) for v in levels.tolist()}, reverse=True):
        rows = embeddings[levels == level].float()
        out[level] = [
            float(rows[:, start:end].norm(dim=1).mean())
            for start, end in itertools.pairwise(bounds)
        ]
    return out


def draw_subvector_norms(
    norms: Mapping[int, Sequence[float]],
    rates: Sequence[float],
    path: str | Path,
    varying_length: bool = True,
) -> Path:
    """Heat map: levels (HR on top) x sub-vectors, with the part a level's distances use boxed."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.patches import Rectangle

    ordered = sorted(float(r) for r in rates)
    count = len(ordered)
    levels = sorted(norms, reverse=True)
    values = np.array([norms[level] for level in levels])
    figure = Figure(
        figsize=(1.6 + 1.1 * values.shape[1], 1.2 + 0.55 * len(levels)), layout="constrained"
    )
    FigureCanvasAgg(figure)
    ax = figure.subplots()
    image = ax.imshow(values, cmap="magma", aspect="auto")
    for row, level in enumerate(levels):
        for col in range(values.shape[1]):
            ax.text(
                col,
                row,
                f"{values[row, col]:.2f}",
                ha="center",
                va="center",
                fontsize=8,
                color="white" if values[row, col] < values.max() / 2 else "black",
            )
        used = (level if varying_length else count) if values.shape[1] == count else 1
        ax.add_patch(Rectangle((-0.5, row - 0.5), used, 1, fill=False, edgecolor="cyan", lw=1.5))
    ax.set_yticks(
        range(len(levels)),
        [
            f"r={ordered[count - lv]:g} (level {lv})" if 1 <= lv <= count else str(lv)
            for lv in levels
        ],
        fontsize=8,
    )
    ax.set_xticks(range(values.shape[1]), [f"v{j + 1}" for j in range(values.shape[1])])
    ax.set_title(
        "mean L2 norm of each sub-vector, per query level\n(boxed: the part used in distances)",
        fontsize=9,
    )
    figure.colorbar(image, ax=ax, shrink=0.8)
    path = Path(path)
    figure.savefig(path, dpi=100)
    return path


def _query_rows(dataset: Any, per_level: int) -> list[int]:
    """Up to ``per_level`` rows of trial-0 LR queries and of HR queries, per level."""
    picked: dict[int, list[int]] = {}
    for index in range(len(dataset)):
        info = dataset.info(index)
        if info["role"] == 0 or (info["role"] == 1 and info["trial"] != 0):
            continue
        rows = picked.setdefault(int(info["level"]), [])
        if len(rows) < per_level:
            rows.append(index)
    return [row for rows in picked.values() for row in rows]


@torch.no_grad()
def _embed_rows(
    forward: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    dataset: Any,
    rows: Sequence[int],
    device: torch.device,
    batch_size: int = 64,
) -> tuple[torch.Tensor, torch.Tensor]:
    embeddings, levels = [], []
    for start in range(0, len(rows), batch_size):
        items = [dataset[row] for row in rows[start : start + batch_size]]
        images = torch.stack([item["image"] for item in items]).to(device)
        batch_levels = torch.tensor([int(item["level"]) for item in items], device=device)
        embeddings.append(forward(images, batch_levels).cpu())
        levels.append(batch_levels.cpu())
    return torch.cat(embeddings), torch.cat(levels)


def write_mask_pictures(
    model: Any, dataset: Any, out: str | Path, per_level: int = 64
) -> dict[str, Path]:
    """``masks.png`` (when the model has masks), ``subvector_norms.png`` and ``masks.json``.

    ``model`` is a :class:`~rareid.models.module.RAReIDModule` (its ``masks``, ``rates``,
    ``split_sizes``, ``hparams.varying_length`` and un-padded forward are used); ``dataset`` an
    evaluation dataset (``info(i)`` and items with ``image`` and ``level``).
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths: dict[str, Path] = {}
    summary: dict[str, Any] = {}
    masks = getattr(model, "masks", None)
    if masks is not None:
        paths["masks"] = draw_mask_heatmaps(masks, model.rates, out / "masks.png")
        summary["masks"] = mask_summary(masks, model.rates)
    rows = _query_rows(dataset, per_level)
    if rows:
        was_training = model.training
        model.eval()
        try:
            embeddings, levels = _embed_rows(model, dataset, rows, model.device)
        finally:
            model.train(was_training)
        varying = bool(model.hparams.varying_length)
        norms = subvector_norms(embeddings, levels, model.split_sizes)
        paths["subvector_norms"] = draw_subvector_norms(
            norms, model.rates, out / "subvector_norms.png", varying_length=varying
        )
        summary["subvector_norms"] = {str(level): values for level, values in norms.items()}
        summary["split_sizes"] = list(model.split_sizes)
    (out / "masks.json").write_text(json.dumps(summary, indent=1) + "\n")
    paths["masks_json"] = out / "masks.json"
    return paths

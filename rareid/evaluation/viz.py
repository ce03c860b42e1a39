"""Pictures of an evaluation: rank lists and a t-SNE of the embeddings (paper Fig. 5), and the
data behind them, taken from a filled :class:`~rareid.evaluation.mlr.MLRMetric`.

Rank lists are composed as pixel arrays (exact, testable layout) and written with OpenCV;
t-SNE plots use matplotlib's object API with the Agg canvas, so importing this module never
changes the user's matplotlib backend.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np
import torch
from torch import Tensor

from rareid.evaluation.rank import CHUNK_ELEMENTS
from rareid.levels import Role

if TYPE_CHECKING:
    from rareid.evaluation.mlr import MLRMetric

log = logging.getLogger(__name__)

__all__ = [
    "RankListLayout",
    "draw_rank_list",
    "log_images_to_loggers",
    "plot_tsne",
    "rank_lists",
    "tsne_inputs",
]

MATCH_COLOR = (0, 190, 0)  # RGB
NON_MATCH_COLOR = (230, 0, 0)
QUERY_COLOR = (40, 40, 40)
BACKGROUND = (255, 255, 255)


@dataclass(frozen=True)
class RankListLayout:
    """Pixel layout of a rank-list picture: one row per query, query first, then top-k.

    A cell is ``row_height`` x ``row_height // 2`` (person crops are 2:1) including a border of
    ``border`` pixels; a label strip of ``label_height`` sits above every row.
    """

    row_height: int = 128
    border: int = 4
    label_height: int = 22
    pad: int = 6
    query_gap: int = 18

    @property
    def cell_width(self) -> int:
        return self.row_height // 2

    def size(self, rows: int, topk: int) -> tuple[int, int]:
        """(height, width) of the picture."""
        height = self.pad + rows * (self.label_height + self.row_height + self.pad)
        width = self.pad + self.cell_width + self.query_gap + topk * (self.cell_width + self.pad)
        return height, width

    def cell(self, row: int, col: int) -> tuple[int, int, int, int]:
        """(y0, x0, y1, x1) of a cell; ``col`` 0 is the query, 1..k the ranked gallery."""
        y0 = self.pad + row * (self.label_height + self.row_height + self.pad) + self.label_height
        x0 = self.pad
        if col > 0:
            x0 += self.cell_width + self.query_gap + (col - 1) * (self.cell_width + self.pad)
        return y0, x0, y0 + self.row_height, x0 + self.cell_width


@torch.no_grad()
def rank_lists(
    metric: MLRMetric, trial: int = 0, topk: int = 10, roles: Sequence[int] = (Role.QUERY,)
) -> dict[str, Tensor]:
    """Top-k gallery of each query of ``trial`` (junk removed as in the protocol).

    Returns CPU tensors: ``query_index``, ``query_level``, ``query_pid``, ``query_role`` (n,),
    ``gallery_index`` (n, k) sample indices in rank order, ``matches`` (n, k) same identity,
    ``distances`` (n, k); ``k = min(topk, fewest kept gallery entries of any query)`` so the
    lists are rectangular. MLR queries are those of ``trial``; HR queries are all of them.
    """
    samples = metric.samples()
    g_mask = metric.gallery_mask(samples, trial)
    q_mask = metric.query_mask(samples, trial, roles)
    if not bool(g_mask.any()) or not bool(q_mask.any()):
        empty = torch.zeros(0, dtype=torch.long)
        return {
            "query_index": empty,
            "query_level": empty,
            "query_pid": empty,
            "query_role": empty,
            "gallery_index": empty.reshape(0, 0),
            "matches": empty.reshape(0, 0).bool(),
            "distances": empty.reshape(0, 0).float(),
        }
    dist = metric.distances(samples, q_mask, g_mask)
    q_pid, q_cam = samples["pids"][q_mask], samples["camids"][q_mask]
    g_pid, g_cam = samples["pids"][g_mask], samples["camids"][g_mask]
    junk = (q_pid[:, None] == g_pid[None, :]) & (q_cam[:, None] == g_cam[None, :])
    depth = max(0, min(topk, int((~junk).sum(1).min())))
    chunk = max(1, CHUNK_ELEMENTS // dist.shape[1])
    parts = []
    for start in range(0, dist.shape[0], chunk):
        order = torch.sort(dist[start : start + chunk], dim=1, stable=True).indices
        kept = ~junk[start : start + chunk].gather(1, order)
        take = kept & (torch.cumsum(kept, 1) <= depth)
        parts.append(order[take].reshape(order.shape[0], depth))
    columns = torch.cat(parts)
    return {
        "query_index": samples["indices"][q_mask].cpu(),
        "query_level": samples["levels"][q_mask].cpu(),
        "query_pid": q_pid.cpu(),
        "query_role": samples["roles"][q_mask].cpu(),
        "gallery_index": samples["indices"][g_mask][columns].cpu(),
        "matches": (g_pid[columns] == q_pid[:, None]).cpu(),
        "distances": dist.gather(1, columns).float().cpu(),
    }


def tsne_inputs(metric: MLRMetric, trial: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(embeddings, pids, levels) as NumPy arrays: trial ``trial``'s queries, the HR queries and
    the trial's gallery, the samples of paper Fig. 5."""
    samples = metric.samples()
    chosen = metric.query_mask(samples, trial, (Role.QUERY, Role.HR_QUERY)) | metric.gallery_mask(
        samples, trial
    )
    return (
        metric.embeddings_of(samples, chosen).float().cpu().numpy(),
        samples["pids"][chosen].cpu().numpy(),
        samples["levels"][chosen].cpu().numpy(),
    )


def _check_image(image: Any, what: str) -> np.ndarray:
    arr = np.asarray(image)
    if arr.ndim != 3 or arr.shape[2] != 3 or arr.dtype != np.uint8 or 0 in arr.shape[:2]:
        raise ValueError(
            f"{what}: expected an HxWx3 uint8 RGB image, got shape {arr.shape} dtype {arr.dtype}"
        )
    return arr


def _put_cell(
    canvas: np.ndarray,
    box: tuple[int, int, int, int],
    image: np.ndarray,
    color: tuple[int, int, int],
    border: int,
    interpolation: int,
) -> None:
    y0, x0, y1, x1 = box
    canvas[y0:y1, x0:x1] = color
    inner_h, inner_w = y1 - y0 - 2 * border, x1 - x0 - 2 * border
    resized = cv2.resize(image, (inner_w, inner_h), interpolation=interpolation)
    canvas[y0 + border : y1 - border, x0 + border : x1 - border] = resized


def _label(canvas: np.ndarray, text: str, x: int, y_bottom: int, scale: float) -> None:
    cv2.putText(
        canvas, text, (x, y_bottom - 5), cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), 1, cv2.LINE_AA
    )


def _fmt_rate(rate: float) -> str:
    return f"{rate:g}"


def draw_rank_list(
    queries: Sequence[Mapping[str, Any]],
    galleries: Sequence[Sequence[Mapping[str, Any]]],
    out_path: str | Path,
    layout: RankListLayout | None = None,
) -> Path:
    """Draw query rows with their ranked gallery images and write a PNG.

    ``queries[i]``: ``image`` (HxWx3 uint8 RGB, at its LR size), ``level``, ``rate``, ``pid``;
    it is upscaled with nearest-neighbour so a low-resolution query looks low-resolution.
    ``galleries[i]``: the top-k gallery entries of query i, each with ``image``, ``pid`` and
    ``match`` (green border when True, red otherwise). Returns the written path.
    """
    if len(queries) != len(galleries):
        raise ValueError(
            f"draw_rank_list: {len(queries)} queries but {len(galleries)} gallery lists"
        )
    if not queries:
        raise ValueError("draw_rank_list: no query to draw")
    lay = layout or RankListLayout()
    topk = max(len(g) for g in galleries)
    height, width = lay.size(len(queries), max(topk, 1))
    canvas = np.full((height, width, 3), BACKGROUND, dtype=np.uint8)
    scale = max(0.3, lay.label_height / 50)
    for row, (query, gallery) in enumerate(zip(queries, galleries, strict=True)):
        y0, x0, _, _ = lay.cell(row, 0)
        image = _check_image(query["image"], f"queries[{row}]['image']")
        _put_cell(canvas, lay.cell(row, 0), image, QUERY_COLOR, lay.border, cv2.INTER_NEAREST)
        text = f"level {int(query['level'])} (r={_fmt_rate(float(query['rate']))})"
        _label(canvas, text, x0, y0, scale)
        for col, entry in enumerate(gallery, start=1):
            g_image = _check_image(entry["image"], f"galleries[{row}][{col - 1}]['image']")
            color = MATCH_COLOR if bool(entry["match"]) else NON_MATCH_COLOR
            _put_cell(canvas, lay.cell(row, col), g_image, color, lay.border, cv2.INTER_AREA)
            _label(canvas, str(col), lay.cell(row, col)[1], y0, scale)
    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(out), cv2.cvtColor(canvas, cv2.COLOR_RGB2BGR)):
        raise OSError(f"draw_rank_list: could not write {out} (is it a .png path?)")
    return out


def _tsne_samples(
    embeddings: Any, pids: Any, levels: Any, seed: int, max_ids: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The samples of up to ``max_ids`` identities (pid > 0) drawn with ``seed``, and those ids."""
    emb = np.asarray(embeddings, dtype=np.float32)
    pid = np.asarray(pids).reshape(-1)
    lvl = np.asarray(levels).reshape(-1)
    if emb.ndim != 2 or not len(emb) == len(pid) == len(lvl):
        raise ValueError(
            f"plot_tsne: embeddings {emb.shape}, pids {pid.shape} and levels {lvl.shape} must "
            "describe the same N samples"
        )
    ids = np.unique(pid[pid > 0])
    rng = np.random.default_rng(seed)
    if len(ids) > max_ids:
        ids = np.sort(rng.choice(ids, max_ids, replace=False))
    keep = np.isin(pid, ids)
    emb, pid, lvl = emb[keep], pid[keep], lvl[keep]
    if len(emb) < 4:
        raise ValueError(f"plot_tsne: need at least 4 samples of identities > 0, got {len(emb)}")
    return emb, pid, lvl, ids


def plot_tsne(
    embeddings: Any,
    pids: Any,
    levels: Any,
    out_path: str | Path,
    seed: int = 0,
    max_ids: int = 15,
    rates: Sequence[float] | None = None,
    max_iter: int = 1000,
) -> Path:
    """t-SNE of embeddings in two panels: (a) coloured by identity, (b) by level (Fig. 5).

    Up to ``max_ids`` identities (pid > 0; 0 and -1 are distractors/junk) are picked with
    ``seed``; t-SNE uses ``random_state=seed``. ``rates`` (optional) labels levels with rates.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from sklearn.manifold import TSNE

    emb, pid, lvl, ids = _tsne_samples(embeddings, pids, levels, seed, max_ids)
    perplexity = float(min(30.0, (len(emb) - 1) / 3))
    points = TSNE(
        n_components=2,
        perplexity=perplexity,
        init="pca",
        random_state=seed,
        max_iter=max(250, max_iter),
    ).fit_transform(emb)

    fig = Figure(figsize=(12, 5.5), dpi=100)
    FigureCanvasAgg(fig)
    ax_id, ax_lv = fig.subplots(1, 2)
    id_colors = {identity: color for color, identity in enumerate(ids)}
    cmap = "tab20" if len(ids) <= 20 else "hsv"
    ax_id.scatter(
        points[:, 0],
        points[:, 1],
        c=[id_colors[identity] for identity in pid],
        cmap=cmap,
        vmin=0,
        vmax=max(len(ids) - 1, 1),
        s=14,
    )
    ax_id.set_title(f"(a) identities ({len(ids)})")
    top_level = int(lvl.max())
    palette = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2"]
    for level in sorted(np.unique(lvl).tolist()):
        sel = lvl == level
        label = f"level {level}"
        if rates is not None and 1 <= level <= len(rates):
            ordered = sorted(float(r) for r in rates)
            label += f" (r={_fmt_rate(ordered[len(ordered) - level])})"
        ax_lv.scatter(
            points[sel, 0],
            points[sel, 1],
            s=14,
            color=palette[(top_level - level) % len(palette)],
            label=label,
        )
    ax_lv.set_title("(b) resolution levels")
    ax_lv.legend(loc="best", fontsize=8)
    for ax in (ax_id, ax_lv):
        ax.set_xticks([])
        ax.set_yticks([])
    fig.tight_layout()
    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, format="png")
    return out


def log_images_to_loggers(loggers: Iterable[Any] | Any, images: Mapping[str, str | Path]) -> None:
    """Log PNG files to the Lightning loggers that can show images (wandb, TensorBoard).

    Other logger types are skipped; a failing logger only warns (the files are on disk).
    """
    if loggers is None:
        return
    if not isinstance(loggers, Iterable):
        loggers = [loggers]
    try:
        from lightning.pytorch.loggers import TensorBoardLogger, WandbLogger
    except ImportError:  # pragma: no cover - lightning is a dependency
        return
    for logger in loggers:
        for key, path in images.items():
            try:
                if isinstance(logger, WandbLogger):
                    logger.log_image(key=key, images=[str(path)])
                elif isinstance(logger, TensorBoardLogger):
                    rgb = cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)
                    logger.experiment.add_image(key, rgb, dataformats="HWC")
            except Exception as err:  # a logging hiccup must not lose the test results
                log.warning("could not log image %s to %s: %s", path, type(logger).__name__, err)

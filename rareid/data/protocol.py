"""The MLR evaluation set (paper §V-B) and the validation hold-out, as flat row tables.

An evaluation set is one flat table per stage whose rows are:

* :attr:`Role.GALLERY` -- every HR gallery image, embedded once. ``gallery_trials`` bit
  ``t`` says whether it belongs to trial ``t``'s gallery. Single-shot (default): one random
  image per gallery identity per trial (seeded by ``(seed, t)``); distractors (pid 0, and
  any pid <= 0) are kept in every trial's gallery, as in Market-1501's evaluation.
  Multi-shot: every image in every trial.
* :attr:`Role.QUERY` -- MLR queries: for each trial ``t``, every query image degraded to a
  rate drawn uniformly from ``eval_rates`` with a Generator seeded by ``(seed, t)`` (same
  seed -> same rates and pixels). Its level is the rate's level, or the level it is
  assigned to (``level_policy``) when the rate is not one of ``rates`` (unseen rates,
  paper §V-F). For a dataset with real LR queries (CAVIAR) the image is used as it is, its
  rate estimated from its native height (``reference_height``, default the median native
  gallery height) and assigned to a level; it appears once per trial.
* :attr:`Role.HR_QUERY` -- HR reference queries (``hr_reference``): every query image
  undegraded, level m, ``trial = -1``. Not built for real-LR-query datasets (there is no
  HR version of them).

``index`` is the row number, so the metric can drop the duplicates that a
DistributedSampler adds to even out ranks. Validation runs the same builder on identities
held out from the training split (:func:`hold_out_validation`), never on test identities.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np

from rareid.data.readers.base import ImageRecord, ReIDSplits, image_height, list_images
from rareid.levels import (
    MAX_TRIALS,
    LevelPolicy,
    Role,
    assign_level,
    estimate_rate,
    normalize_rates,
)

__all__ = [
    "MAX_TRIALS",
    "EvalTable",
    "FitSplit",
    "GalleryMode",
    "Role",
    "build_eval_table",
    "hold_out_validation",
    "resolve_val_count",
    "single_shot_bits",
]


#: "single": one random HR image per gallery identity per trial; "multi": all of them.
GalleryMode = Literal["single", "multi"]


@dataclass
class EvalTable:
    """The rows of an evaluation dataset as parallel arrays (cheap to pickle to workers)."""

    paths: list[str]  # unique image paths
    path_index: np.ndarray  # row -> index into paths
    pid: np.ndarray
    camid: np.ndarray
    role: np.ndarray
    trial: np.ndarray
    rate: np.ndarray  # float64: synthesis rate (role 1), estimated rate (real LR), else 1
    level: np.ndarray
    gallery_trials: np.ndarray
    synthesize: np.ndarray  # bool: degrade the image by `rate` before use

    def __len__(self) -> int:
        return int(self.role.size)


def single_shot_bits(pids: np.ndarray, trials: int, seed: int) -> np.ndarray:
    """Per gallery image, the bitmask of the trials whose single-shot gallery contains it.

    Each trial ``t`` draws one image per identity with ``default_rng([seed, t, 0])``;
    pids <= 0 (distractors) are in every trial.
    """
    bits = np.zeros(pids.size, dtype=np.int64)
    distractor = pids <= 0
    bits[distractor] = (1 << trials) - 1
    identities = np.unique(pids[~distractor])
    groups = [np.flatnonzero(pids == pid) for pid in identities]
    for t in range(trials):
        rng = np.random.default_rng([seed, t, 0])
        picks = rng.integers(0, [g.size for g in groups]) if groups else []
        for group, pick in zip(groups, picks, strict=True):
            bits[group[int(pick)]] |= np.int64(1) << np.int64(t)
    return bits


def _query_levels_per_trial(
    dataset: ReIDSplits,
    rates: list[float],
    eval_rates: Sequence[float],
    trials: int,
    seed: int,
    level_policy: LevelPolicy,
    reference_height: float | None,
) -> list[tuple[np.ndarray, np.ndarray, bool]]:
    """Per trial, each query's rate and level and whether its LR view is synthesised: the real
    LR queries' estimated rates (every trial), or a draw from ``eval_rates`` per trial."""
    gallery, query = dataset.gallery, dataset.query
    nq = len(query)
    if dataset.query_is_lowres:
        if reference_height is None:
            reference_height = float(np.median([image_height(r.path) for r in gallery]))
        q_rate = np.asarray(
            [estimate_rate(image_height(r.path), reference_height) for r in query], dtype=np.float64
        )
        q_level = np.asarray([assign_level(r, rates, level_policy) for r in q_rate])
        return [(q_rate, q_level, False)] * trials
    choices = np.asarray([float(r) for r in eval_rates], dtype=np.float64)
    level_of = {r: assign_level(r, rates, level_policy) for r in choices.tolist()}
    per_trial = []
    for t in range(trials):
        rng = np.random.default_rng([seed, t, 1])
        t_rate = choices[rng.integers(0, choices.size, size=nq)]
        t_level = np.asarray([level_of[r] for r in t_rate.tolist()])
        per_trial.append((t_rate, t_level, True))
    return per_trial


def _table(paths: list[str], parts: list[dict[str, np.ndarray]]) -> EvalTable:
    """The :class:`EvalTable` of row blocks (gallery, query trials, HR queries) stacked."""

    def cat(key: str, dtype: Any) -> np.ndarray:
        return np.concatenate([np.asarray(p[key]) for p in parts]).astype(dtype)

    return EvalTable(
        paths=paths,
        path_index=cat("path_index", np.int64),
        pid=cat("pid", np.int64),
        camid=cat("camid", np.int64),
        role=cat("role", np.int64),
        trial=cat("trial", np.int64),
        rate=cat("rate", np.float64),
        level=cat("level", np.int64),
        gallery_trials=cat("gallery_trials", np.int64),
        synthesize=cat("synthesize", bool),
    )


def build_eval_table(
    dataset: ReIDSplits,
    rates: Sequence[float],
    eval_rates: Sequence[float],
    trials: int,
    gallery_mode: GalleryMode = "single",
    seed: int = 0,
    level_policy: LevelPolicy = "nearest",
    reference_height: float | None = None,
    hr_reference: bool = True,
    gallery_rate: float = 1.0,
) -> EvalTable:
    """Rows of the MLR evaluation set (see the module docstring for the protocol)."""
    rates = normalize_rates(rates)
    m = len(rates)
    gallery, query = dataset.gallery, dataset.query
    if not gallery or not query:
        raise ValueError(f"dataset {dataset.name}: the query and gallery splits must be non-empty")
    paths = [r.path for r in gallery] + [r.path for r in query]
    g_idx = np.arange(len(gallery))
    q_idx = np.arange(len(query)) + len(gallery)
    g_pid = np.asarray([r.pid for r in gallery], dtype=np.int64)
    g_cam = np.asarray([r.camid for r in gallery], dtype=np.int64)
    q_pid = np.asarray([r.pid for r in query], dtype=np.int64)
    q_cam = np.asarray([r.camid for r in query], dtype=np.int64)
    nq = len(query)

    if gallery_mode == "single":
        bits = single_shot_bits(g_pid, trials, seed)
    else:
        bits = np.full(len(gallery), (1 << trials) - 1, dtype=np.int64)

    parts: list[dict[str, np.ndarray]] = [
        dict(
            path_index=g_idx,
            pid=g_pid,
            camid=g_cam,
            role=np.full(len(gallery), Role.GALLERY),
            trial=np.full(len(gallery), -1),
            rate=np.full(len(gallery), float(gallery_rate)),
            level=np.full(len(gallery), m),
            gallery_trials=bits,
            synthesize=np.full(len(gallery), gallery_rate != 1),
        )
    ]

    per_trial = _query_levels_per_trial(
        dataset, rates, eval_rates, trials, seed, level_policy, reference_height
    )
    for t, (t_rate, t_level, synth) in enumerate(per_trial):
        parts.append(
            dict(
                path_index=q_idx,
                pid=q_pid,
                camid=q_cam,
                role=np.full(nq, Role.QUERY),
                trial=np.full(nq, t),
                rate=t_rate,
                level=t_level,
                gallery_trials=np.zeros(nq, dtype=np.int64),
                synthesize=np.full(nq, synth),
            )
        )

    if hr_reference and not dataset.query_is_lowres:
        parts.append(
            dict(
                path_index=q_idx,
                pid=q_pid,
                camid=q_cam,
                role=np.full(nq, Role.HR_QUERY),
                trial=np.full(nq, -1),
                rate=np.ones(nq),
                level=np.full(nq, m),
                gallery_trials=np.zeros(nq, dtype=np.int64),
                synthesize=np.zeros(nq, dtype=bool),
            )
        )

    return _table(paths, parts)


@dataclass(frozen=True)
class FitSplit:
    """What ``fit`` uses: the training records (relabelled ``0..C-1``) and the validation set.

    The validation identities are held out from the dataset's training split, so a model is
    never selected on the test identities.
    """

    train: list[ImageRecord]
    num_classes: int
    #: Original identity of each training label.
    train_ids: tuple[int, ...]
    #: Held-out identities (original ids), sorted; empty when there is no validation.
    val_ids: tuple[int, ...]
    #: Query/gallery records of the validation MLR set, or None (no validation).
    val: ReIDSplits | None


def resolve_val_count(
    val_identities: int | float, eligible: int, total: int, lowres: bool = False
) -> int:
    """Number of identities to hold out: a count, or a fraction of the ``total`` ids."""
    if isinstance(val_identities, bool) or not isinstance(
        val_identities, (int, float, np.integer, np.floating)
    ):
        raise ValueError(
            f"val_identities: expected a count (int >= 0) or a fraction in [0, 1), "
            f"got {val_identities!r}"
        )
    if isinstance(val_identities, (float, np.floating)):
        fraction = float(val_identities)
        if not 0 <= fraction < 1:
            raise ValueError(
                f"val_identities: a fraction must be in [0, 1), got {fraction}; "
                "pass an integer for a count of identities"
            )
        count = 0 if fraction == 0 else max(1, int(fraction * total + 0.5))
    else:
        count = int(val_identities)
        if count < 0:
            raise ValueError(f"val_identities: expected a count >= 0, got {count}")
    if count == 0:
        return 0
    if count >= total:
        raise ValueError(
            f"val_identities: holding out {count} of the {total} training identities leaves "
            "none to train on; lower val_identities (0 = no validation)"
        )
    if count > eligible and lowres:
        raise ValueError(
            f"val_identities: {count} validation identities requested but only {eligible} of "
            f"the {total} training identities have real low-resolution images (the "
            "validation queries); lower val_identities or set it to 0 for no validation"
        )
    if count > eligible:
        raise ValueError(
            f"val_identities: {count} validation identities requested but only {eligible} of "
            f"the {total} training identities are seen by two or more cameras (the validation "
            "queries come from one camera, the gallery from the others); lower "
            "val_identities or set it to 0 for no validation"
        )
    return count


def hold_out_validation(
    dataset: ReIDSplits,
    val_identities: int | float,
    seed: int,
    held_ids: Sequence[int] | None = None,
    train_ids: Sequence[int] | None = None,
) -> FitSplit:
    """Hold out validation identities from ``dataset.train``, drawn by ``seed``.

    Only identities seen by two or more cameras can be held out. For each of them the seed
    picks one camera: its images are the validation queries (degraded like test queries),
    the other cameras' images the HR gallery, so every query has a valid match in every
    single-shot draw. A dataset with real LR queries (CAVIAR) validates like its test
    split: the held-out ids' real LR images (``train_lowres``) are the queries, their HR
    training images the gallery. The remaining training identities are relabelled
    ``0..C-1``. ``held_ids`` and ``train_ids`` (original ids, from a split file) fix the
    hold-out instead of drawing it; they must cover the training split exactly.
    """
    by_label = _group_by_pid(dataset.train)
    labels = sorted(by_label)
    if not labels:
        raise ValueError(
            f"dataset {dataset.name} has no training images: it can be tested, not trained "
            "on (fit needs a training split)"
        )
    if dataset.train_ids:
        original_id = dict(zip(labels, dataset.train_ids, strict=True))
    else:
        original_id = {label: label for label in labels}
    # Validation pids must be > 0 (pid <= 0 marks a gallery distractor).
    shift = max(0, 1 - min(original_id.values()))
    lowres = _group_by_pid(dataset.train_lowres)
    if dataset.query_is_lowres:  # real LR queries (CAVIAR): validate like the test split
        eligible = [label for label in labels if label in lowres]
    else:
        eligible = [label for label in labels if len({rec.camid for rec in by_label[label]}) > 1]
    rng = np.random.default_rng([seed, 0x5A1])
    if held_ids is not None:
        label_of = {pid: label for label, pid in original_id.items()}
        fixed = set(held_ids) | set(train_ids or ())
        if fixed != set(label_of):
            raise ValueError(
                f"split_file: its {len(fixed)} train/validation identities differ from the "
                f"{len(label_of)} training identities of dataset {dataset.name} (other "
                "dataset, split_seed or version?); write the split file again"
            )
        held = sorted(label_of[pid] for pid in held_ids)
    else:
        count = resolve_val_count(
            val_identities, len(eligible), len(labels), lowres=dataset.query_is_lowres
        )
        chosen = rng.choice(len(eligible), size=count, replace=False) if count else []
        held = sorted(eligible[int(position)] for position in chosen)
    held_set = set(held)
    kept = [label for label in labels if label not in held_set]
    relabel = {label: new for new, label in enumerate(kept)}
    train = [
        ImageRecord(rec.path, relabel[rec.pid], rec.camid)
        for rec in dataset.train
        if rec.pid in relabel
    ]
    val = None
    if held:
        pids = {label: original_id[label] + shift for label in held}
        val = _validation_split(dataset, pids, by_label, lowres, rng)
    return FitSplit(
        train=train,
        num_classes=len(kept),
        train_ids=tuple(original_id[label] for label in kept),
        val_ids=tuple(original_id[label] for label in held),
        val=val,
    )


def _validation_split(
    dataset: ReIDSplits,
    pids: dict[int, int],
    by_label: dict[int, list[ImageRecord]],
    lowres: dict[int, list[ImageRecord]],
    rng: np.random.Generator,
) -> ReIDSplits:
    """Queries and gallery of the held-out identities (label -> validation pid, in order): one
    camera's images as queries, the others' as gallery (or the real LR images as queries)."""
    query: list[ImageRecord] = []
    gallery: list[ImageRecord] = []
    for label, pid in pids.items():
        if dataset.query_is_lowres:
            query_records = lowres.get(label, [])
            gallery_records = by_label[label]
        else:
            cameras = sorted({rec.camid for rec in by_label[label]})
            query_camera = cameras[int(rng.integers(len(cameras)))]
            query_records = [rec for rec in by_label[label] if rec.camid == query_camera]
            gallery_records = [rec for rec in by_label[label] if rec.camid != query_camera]
        query.extend(ImageRecord(rec.path, pid, rec.camid) for rec in query_records)
        gallery.extend(ImageRecord(rec.path, pid, rec.camid) for rec in gallery_records)
    return ReIDSplits(
        name=f"{dataset.name} (validation)",
        train=[],
        query=query,
        gallery=gallery,
        num_classes=0,
        query_is_lowres=dataset.query_is_lowres,
    )


def _group_by_pid(records: Sequence[ImageRecord]) -> dict[int, list[ImageRecord]]:
    groups: dict[int, list[ImageRecord]] = {}
    for record in records:
        groups.setdefault(record.pid, []).append(record)
    return groups


def with_val_distractors(split: FitSplit, folder: str | None) -> FitSplit:
    """``folder``'s images join the validation gallery as distractors (pid 0, every trial).

    A handful of held-out identities makes a gallery a model soon ranks almost perfectly;
    crops of people no run trains on keep validation discriminating, as the test gallery is.
    """
    if folder is None or split.val is None:
        return split
    path = Path(os.path.expanduser(folder))
    if not path.is_dir():
        raise FileNotFoundError(
            f"val_distractors: {folder} is not a folder; give a folder of person crops the "
            "model does not train on (e.g. data/pretrain/bounding_box_test)"
        )
    images = list_images(path)
    if not images:
        raise ValueError(f"val_distractors: no .jpg/.png images in {folder}")
    distractors = [ImageRecord(str(image), 0, 0) for image in images]
    return replace(split, val=replace(split.val, gallery=[*split.val.gallery, *distractors]))

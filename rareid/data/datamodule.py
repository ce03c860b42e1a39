"""Lightning DataModule: P x K training batches of HR/LR view pairs, MLR evaluation sets.

Training (paper §IV): every sampled image yields its HR view and one LR view synthesised at a
rate drawn uniformly from ``rates`` (``r = 1`` included), see :mod:`rareid.data.transforms`.
Batches are identity balanced (:class:`~rareid.data.samplers.PKSampler`).

Evaluation (MLR protocol, paper §V-B, SPEC §6) is one flat dataset per stage whose rows are:

* role 0 -- every HR gallery image, embedded once. ``gallery_trials`` bit ``t`` says whether
  it belongs to trial ``t``'s gallery. Single-shot (default): one random image per gallery
  identity per trial (seeded by ``(seed, t)``); distractors (pid 0, and any pid <= 0) are kept
  in every trial's gallery, as in Market-1501's evaluation. Multi-shot: every image in every
  trial.
* role 1 -- MLR queries: for each trial ``t``, every query image degraded to a rate drawn
  uniformly from ``eval_rates`` with a Generator seeded by ``(seed, t)`` (same seed -> same
  rates and pixels). Its level is the rate's level, or the level it is assigned to
  (``level_policy``) when the rate is not one of ``rates`` (unseen rates, paper §V-F). For a
  dataset with real LR queries (CAVIAR) the image is used as it is, its rate estimated from
  its native height (``reference_height``, default the median native gallery height) and
  assigned to a level; it appears once per trial.
* role 2 -- HR reference queries (``hr_reference``): every query image undegraded, level m,
  ``trial = -1``. Not built for real-LR-query datasets (there is no HR version of them).

``index`` is the row number, so the metric can drop the duplicates that a DistributedSampler
adds to even out ranks. Validation uses ``val_trials`` trials, test and predict use ``trials``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import cv2
import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, get_worker_info

from rareid.data.datasets import (
    ImageRecord,
    ReIDDataset,
    build_dataset,
    resolve_dataset_name,
)
from rareid.data.lowres import (
    LEVEL_POLICIES,
    assign_level,
    degrade,
    estimate_rate,
    interpolation_flag,
)
from rareid.data.samplers import PKSampler
from rareid.data.transforms import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    EvalTransform,
    TrainTransform,
    check_input_size,
    read_image,
)
from rareid.levels import normalize_rates, rate_to_level

ROLE_GALLERY, ROLE_QUERY, ROLE_HR_QUERY = 0, 1, 2
MAX_TRIALS = 62  # gallery_trials is an int64 bitmask
GALLERY_MODES = ("single", "multi")


def _limit_worker_threads() -> None:
    """Inside a DataLoader worker keep OpenCV single-threaded (workers are the parallelism)."""
    if get_worker_info() is not None:
        cv2.setNumThreads(0)


class TrainDataset(Dataset):
    """Training records -> dicts ``hr``, ``lr``, ``lr_level``, ``pid``, ``camid``.

    Randomness: one numpy Generator per process, seeded from (``seed``, ``rank``, the worker's
    torch seed) on first use in that process. DataLoader gives each worker a different torch
    seed every epoch (from the main process' torch RNG, which ``seed_everything`` fixes), so
    workers do not repeat each other or the previous epoch; with ``num_workers=0`` the stream
    depends on ``seed`` and ``rank`` alone.
    """

    def __init__(
        self,
        records: Sequence[ImageRecord],
        transform: TrainTransform,
        seed: int = 0,
        level_rates: Sequence[float] | None = None,
    ) -> None:
        self.paths = [r.path for r in records]
        self.pids = np.asarray([r.pid for r in records], dtype=np.int64)
        self.camids = np.asarray([r.camid for r in records], dtype=np.int64)
        self.transform = transform
        # Levels are relative to the model's rates (``level_rates``, default the drawn ones).
        level_rates = transform.rates if level_rates is None else level_rates
        self.levels = {rate: rate_to_level(rate, level_rates) for rate in transform.rates}
        self.seed = int(seed)
        self.rank = 0
        self._rng_key: tuple[int, int] | None = None

    def __len__(self) -> int:
        return len(self.paths)

    def _ensure_rng(self) -> None:
        key = (os.getpid(), self.rank)
        if self._rng_key == key:
            return
        worker = get_worker_info()
        worker_seed = torch.initial_seed() if worker is not None else 0
        self.transform.set_rng(np.random.default_rng([self.seed, self.rank, worker_seed]))
        _limit_worker_threads()
        self._rng_key = key

    def __getitem__(self, index: int) -> dict[str, Any]:
        self._ensure_rng()
        image = read_image(self.paths[index])
        hr, lr, rate = self.transform(image)
        return {
            "hr": hr,
            "lr": lr,
            "lr_level": self.levels[rate],
            "pid": int(self.pids[index]),
            "camid": int(self.camids[index]),
        }


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


def image_height(path: str) -> int:
    """Native height of an image file, read from its header (no full decode)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            return int(image.size[1])
    except (OSError, UnidentifiedImageError) as err:
        raise OSError(f"could not read the size of image {path!r}: {err}") from None


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


def build_eval_table(
    dataset: ReIDDataset,
    rates: Sequence[float],
    eval_rates: Sequence[float],
    trials: int,
    gallery_mode: str = "single",
    seed: int = 0,
    level_policy: str = "nearest",
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
            role=np.full(len(gallery), ROLE_GALLERY),
            trial=np.full(len(gallery), -1),
            rate=np.full(len(gallery), float(gallery_rate)),
            level=np.full(len(gallery), m),
            gallery_trials=bits,
            synthesize=np.full(len(gallery), gallery_rate != 1),
        )
    ]

    if dataset.query_is_lowres:
        if reference_height is None:
            reference_height = float(np.median([image_height(r.path) for r in gallery]))
        q_rate = np.asarray(
            [estimate_rate(image_height(r.path), reference_height) for r in query], dtype=np.float64
        )
        q_level = np.asarray([assign_level(r, rates, level_policy) for r in q_rate])
        per_trial = [(q_rate, q_level, False)] * trials
    else:
        choices = np.asarray([float(r) for r in eval_rates], dtype=np.float64)
        level_of = {r: assign_level(r, rates, level_policy) for r in choices.tolist()}
        per_trial = []
        for t in range(trials):
            rng = np.random.default_rng([seed, t, 1])
            t_rate = choices[rng.integers(0, choices.size, size=nq)]
            t_level = np.asarray([level_of[r] for r in t_rate.tolist()])
            per_trial.append((t_rate, t_level, True))
    for t, (t_rate, t_level, synth) in enumerate(per_trial):
        parts.append(
            dict(
                path_index=q_idx,
                pid=q_pid,
                camid=q_cam,
                role=np.full(nq, ROLE_QUERY),
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
                role=np.full(nq, ROLE_HR_QUERY),
                trial=np.full(nq, -1),
                rate=np.ones(nq),
                level=np.full(nq, m),
                gallery_trials=np.zeros(nq, dtype=np.int64),
                synthesize=np.zeros(nq, dtype=bool),
            )
        )

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
    val: ReIDDataset | None


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


def hold_out_validation(dataset: ReIDDataset, val_identities: int | float, seed: int) -> FitSplit:
    """Hold out validation identities from ``dataset.train``, drawn by ``seed``.

    Only identities seen by two or more cameras can be held out. For each of them the seed
    picks one camera: its images are the validation queries (degraded like test queries),
    the other cameras' images the HR gallery, so every query has a valid match in every
    single-shot draw. A dataset with real LR queries (CAVIAR) validates like its test
    split: the held-out ids' real LR images (``train_lowres``) are the queries, their HR
    training images the gallery. The remaining training identities are relabelled
    ``0..C-1``.
    """
    by_label: dict[int, list[ImageRecord]] = {}
    for record in dataset.train:
        by_label.setdefault(record.pid, []).append(record)
    labels = sorted(by_label)
    original = dict(zip(labels, dataset.train_ids, strict=True)) if dataset.train_ids else {}
    # Validation pids must be > 0 (pid <= 0 marks a gallery distractor).
    ids = [original.get(label, label) for label in labels]
    shift = 1 - min(ids) if ids and min(ids) <= 0 else 0
    identity = {label: original.get(label, label) + shift for label in labels}
    lowres: dict[int, list[ImageRecord]] = {}
    for record in dataset.train_lowres:
        lowres.setdefault(record.pid, []).append(record)
    if dataset.query_is_lowres:  # real LR queries (CAVIAR): validate like the test split
        eligible = [label for label in labels if label in lowres]
    else:
        eligible = [label for label in labels if len({r.camid for r in by_label[label]}) > 1]
    count = resolve_val_count(
        val_identities, len(eligible), len(labels), lowres=dataset.query_is_lowres
    )
    rng = np.random.default_rng([seed, 0x5A1])
    held = (
        sorted(eligible[int(i)] for i in rng.choice(len(eligible), size=count, replace=False))
        if count
        else []
    )
    held_set = set(held)
    kept = [label for label in labels if label not in held_set]
    relabel = {label: new for new, label in enumerate(kept)}
    train = [
        ImageRecord(r.path, relabel[r.pid], r.camid) for r in dataset.train if r.pid in relabel
    ]
    val = None
    if held:
        query: list[ImageRecord] = []
        gallery: list[ImageRecord] = []
        for label in held:
            if dataset.query_is_lowres:
                query.extend(ImageRecord(r.path, identity[label], r.camid) for r in lowres[label])
                gallery.extend(
                    ImageRecord(r.path, identity[label], r.camid) for r in by_label[label]
                )
                continue
            records = by_label[label]
            cameras = sorted({r.camid for r in records})
            query_camera = cameras[int(rng.integers(len(cameras)))]
            for r in records:
                side = query if r.camid == query_camera else gallery
                side.append(ImageRecord(r.path, identity[label], r.camid))
        val = ReIDDataset(
            name=f"{dataset.name} (validation)",
            train=[],
            query=query,
            gallery=gallery,
            num_classes=0,
            query_is_lowres=dataset.query_is_lowres,
        )
    return FitSplit(
        train=train,
        num_classes=len(kept),
        train_ids=tuple(identity[label] - shift for label in kept),
        val_ids=tuple(identity[label] - shift for label in held),
        val=val,
    )


class EvalDataset(Dataset):
    """Evaluation rows -> dicts ``image``, ``level``, ``pid``, ``camid``, ``role``, ``trial``,
    ``gallery_trials``, ``index`` (CONTRACTS "Evaluation batch")."""

    def __init__(self, table: EvalTable, transform: EvalTransform) -> None:
        self.table = table
        self.transform = transform
        self._threads_pid: int | None = None

    def __len__(self) -> int:
        return len(self.table)

    def _check_index(self, index: int) -> int:
        index = int(index)
        if not 0 <= index < len(self.table):
            raise IndexError(f"index {index} is outside 0..{len(self.table) - 1}")
        return index

    def path(self, index: int) -> str:
        return self.table.paths[int(self.table.path_index[self._check_index(index)])]

    def info(self, index: int) -> dict[str, Any]:
        """Everything known about row ``index`` (for rank-list pictures and debugging)."""
        t = self.table
        i = self._check_index(index)
        return {
            "index": i,
            "path": self.path(i),
            "role": int(t.role[i]),
            "trial": int(t.trial[i]),
            "rate": float(t.rate[i]),
            "level": int(t.level[i]),
            "pid": int(t.pid[i]),
            "camid": int(t.camid[i]),
            "gallery_trials": int(t.gallery_trials[i]),
            "synthesized": bool(t.synthesize[i]),
        }

    def load_image(self, index: int) -> np.ndarray:
        """The image as the model sees it before resizing: degraded queries at their LR size."""
        i = self._check_index(index)
        image = read_image(self.path(i))
        if self.table.synthesize[i]:
            image = degrade(image, float(self.table.rate[i]), self.transform.interpolation)
        return np.ascontiguousarray(image)

    def __getitem__(self, index: int) -> dict[str, Any]:
        if self._threads_pid != os.getpid():
            _limit_worker_threads()
            self._threads_pid = os.getpid()
        t = self.table
        i = int(index)
        image = read_image(self.path(i))
        rate = float(t.rate[i]) if t.synthesize[i] else 1.0
        return {
            "image": self.transform(image, rate),
            "level": int(t.level[i]),
            "pid": int(t.pid[i]),
            "camid": int(t.camid[i]),
            "role": int(t.role[i]),
            "trial": int(t.trial[i]),
            "gallery_trials": int(t.gallery_trials[i]),
            "index": i,
        }


def _check_positive_int(name: str, value: Any, minimum: int = 1, maximum: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"{name}: expected an integer, got {value!r}")
    if value < minimum or (maximum is not None and value > maximum):
        bound = f"between {minimum} and {maximum}" if maximum is not None else f">= {minimum}"
        raise ValueError(f"{name}: expected an integer {bound}, got {value}")
    return int(value)


class ReIDDataModule(L.LightningDataModule):
    """Cross-resolution re-ID data: PK-sampled HR/LR training pairs and MLR evaluation sets.

    Args:
        dataset: dataset name for :func:`~rareid.data.datasets.build_dataset`.
        root: folder that holds the dataset.
        dataset_options: extra options for ``build_dataset`` (e.g. ``split_seed``).
        input_size: network input (H, W).
        rates: rates the model knows (training LR views are drawn from them, r = 1 included).
        eval_rates: rates of the MLR queries; default ``rates`` without 1. May hold unseen
            rates; those queries get the level chosen by ``level_policy``.
        p, k: identities per batch and images per identity (batch size p * k).
        num_workers: DataLoader worker processes.
        eval_batch_size: batch size of validation / test / predict loaders.
        trials: number of evaluation trials of test / predict (at most 62).
        val_identities: identities held out from the training split for validation (the
            checkpoint is selected on them): a count, or a fraction of the training ids;
            ``0`` = no validation. Drawn by ``seed``; see :func:`hold_out_validation`.
        val_trials: number of trials of validation.
        gallery_mode: "single" (one random HR image per identity per trial) or "multi".
        interpolation: downsampling interpolation of LR synthesis ("area", "linear", ...).
        level_policy: how an unseen / estimated rate gets a level ("nearest", "lower", "higher").
        reference_height: HR reference height for real LR queries (default: median native
            height of the gallery images).
        hr_reference: also evaluate the undegraded queries (role 2) as an HR reference.
        seed: seed of the PK plan, the LR views and the evaluation draws.
        mean, std: normalisation (link them from the backbone's timm data config).
        pin_memory: pin batches (only when CUDA is available).
        persistent_workers: keep workers between epochs; default: when num_workers > 0.
        naive_rate: the naive per-level baseline (paper Table III): train with both views at
            this rate (one of ``rates``), and evaluate queries at this rate only against a
            gallery downsampled to it. ``None`` (default) is the normal MLR setting.
        padding: zero padding before the random crop of training views, in input pixels
            (paper: 10 at 256x128; scale it down with the input size).
    """

    def __init__(
        self,
        dataset: str = "synthetic",
        root: str = "data",
        dataset_options: dict[str, Any] | None = None,
        input_size: tuple[int, int] = (256, 128),
        rates: list[float] = [1, 2, 3, 4],  # noqa: B006 -- shown as is in the CLI help
        eval_rates: list[float] | None = None,
        p: int = 8,
        k: int = 4,
        num_workers: int = 4,
        eval_batch_size: int = 64,
        trials: int = 10,
        val_identities: int | float = 0.1,
        val_trials: int = 1,
        gallery_mode: str = "single",
        interpolation: str = "area",
        level_policy: str = "nearest",
        reference_height: float | None = None,
        hr_reference: bool = True,
        seed: int = 0,
        mean: tuple[float, float, float] = IMAGENET_MEAN,
        std: tuple[float, float, float] = IMAGENET_STD,
        pin_memory: bool = True,
        persistent_workers: bool | None = None,
        naive_rate: float | None = None,
        padding: int = 10,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        # --- validate every option up front, naming it
        try:
            resolve_dataset_name(dataset)
        except (TypeError, ValueError) as err:
            raise ValueError(f"dataset: {err}") from None
        self.input_size = check_input_size(input_size)
        self.rates = normalize_rates(rates)
        if eval_rates is None:
            eval_rates = [r for r in self.rates if r != 1]
            if not eval_rates:
                raise ValueError(
                    f"eval_rates: rates={list(rates)} has no rate other than 1; "
                    "set eval_rates explicitly (e.g. [2, 3, 4])"
                )
        if len(eval_rates) == 0:
            raise ValueError("eval_rates: expected at least one rate, e.g. [2, 3, 4]")
        for r in eval_rates:
            if not np.isfinite(float(r)) or float(r) < 1:
                raise ValueError(f"eval_rates: every rate must be >= 1, got {list(eval_rates)}")
        self.eval_rates = tuple(float(r) for r in eval_rates)
        self.naive_rate = None if naive_rate is None else float(naive_rate)
        if self.naive_rate is not None:
            if self.naive_rate not in self.rates:
                raise ValueError(
                    f"naive_rate: {naive_rate} must be one of rates={list(self.rates)}"
                )
            self.eval_rates = (self.naive_rate,)
        self.p = _check_positive_int("p", p)
        self.k = _check_positive_int("k", k)
        self.num_workers = _check_positive_int("num_workers", num_workers, minimum=0)
        self.eval_batch_size = _check_positive_int("eval_batch_size", eval_batch_size)
        self.trials = _check_positive_int("trials", trials, maximum=MAX_TRIALS)
        self.val_trials = _check_positive_int("val_trials", val_trials, maximum=MAX_TRIALS)
        if gallery_mode not in GALLERY_MODES:
            raise ValueError(
                f"gallery_mode: unknown value {gallery_mode!r}; choose one of {list(GALLERY_MODES)}"
            )
        interpolation_flag(interpolation)
        if level_policy not in LEVEL_POLICIES:
            raise ValueError(
                f"level_policy: unknown value {level_policy!r}; choose one of {list(LEVEL_POLICIES)}"
            )
        if reference_height is not None and not float(reference_height) > 0:
            raise ValueError(
                f"reference_height: expected a positive height, got {reference_height}"
            )
        if dataset_options is not None and not isinstance(dataset_options, dict):
            raise ValueError(f"dataset_options: expected a mapping, got {dataset_options!r}")
        self.seed = int(seed)
        resolve_val_count(val_identities, eligible=1 << 62, total=1 << 62)  # type and sign
        # Normalisation constants are validated by building the transforms once.
        EvalTransform(self.input_size, mean, std, interpolation)
        self._eval_datasets: dict[str, EvalDataset] = {}
        self._train_dataset: TrainDataset | None = None

    # ------------------------------------------------------------------ dataset index
    @cached_property
    def dataset(self) -> ReIDDataset:
        """The dataset's file lists (built on first access; reading the lists is cheap)."""
        hp = self.hparams
        return build_dataset(hp.dataset, hp.root, **(hp.dataset_options or {}))

    @cached_property
    def fit_split(self) -> FitSplit:
        """Training records and the validation set held out from them (never test ids)."""
        return hold_out_validation(self.dataset, self.hparams.val_identities, self.seed)

    @property
    def num_classes(self) -> int:
        """Number of training identities left after the hold-out (for the classifier)."""
        return self.fit_split.num_classes

    @property
    def has_validation(self) -> bool:
        """Whether ``fit`` runs a validation loop (``val_identities`` > 0)."""
        return self.fit_split.val is not None

    @property
    def num_levels(self) -> int:
        return len(self.rates)

    # ------------------------------------------------------------------ datasets
    def setup(self, stage: str | None = None) -> None:
        _ = self.dataset  # fail early on a missing / malformed dataset
        if stage in (None, "fit", "validate"):
            _ = self.fit_split
        trainer = getattr(self, "trainer", None)
        if stage == "fit" and trainer is not None and not self.has_validation:
            trainer.limit_val_batches = 0  # no held-out identities: no validation loop

    def train_dataset(self) -> TrainDataset:
        if self._train_dataset is None:
            hp = self.hparams
            naive = self.naive_rate
            transform = TrainTransform(
                self.input_size,
                self.rates if naive is None else (naive,),
                hp.mean,
                hp.std,
                padding=hp.padding,
                interpolation=hp.interpolation,
                seed=self.seed,
                hr_rate=1.0 if naive is None else naive,
            )
            self._train_dataset = TrainDataset(
                self.fit_split.train, transform, seed=self.seed, level_rates=self.rates
            )
        return self._train_dataset

    @staticmethod
    def _stage_key(stage: str) -> str:
        keys = {
            "fit": "val",
            "val": "val",
            "validate": "val",
            "validation": "val",
            "test": "test",
            "predict": "test",
        }
        if stage not in keys:
            raise ValueError(f"stage: unknown value {stage!r}; choose one of {sorted(keys)}")
        return keys[stage]

    def eval_dataset(self, stage: str) -> EvalDataset:
        """The evaluation dataset of ``stage`` ("val"/"validate", "test" or "predict")."""
        key = self._stage_key(stage)
        if key not in self._eval_datasets:
            hp = self.hparams
            if key == "val":
                source = self.fit_split.val
                if source is None:
                    raise ValueError(
                        "val_identities=0: there is no validation set (hold out training "
                        "identities with val_identities to validate)"
                    )
            else:
                source = self.dataset
            table = build_eval_table(
                source,
                self.rates,
                self.eval_rates,
                trials=self.val_trials if key == "val" else self.trials,
                gallery_mode=hp.gallery_mode,
                seed=self.seed,
                level_policy=hp.level_policy,
                reference_height=hp.reference_height,
                hr_reference=hp.hr_reference and self.naive_rate is None,
                gallery_rate=1.0 if self.naive_rate is None else self.naive_rate,
            )
            transform = EvalTransform(self.input_size, hp.mean, hp.std, hp.interpolation)
            self._eval_datasets[key] = EvalDataset(table, transform)
        return self._eval_datasets[key]

    def eval_sample_info(self, stage: str, index: int) -> dict[str, Any]:
        """path, role, trial, rate, level, pid, camid (and more) of evaluation row ``index``."""
        return self.eval_dataset(stage).info(index)

    def load_eval_image(self, stage: str, index: int) -> np.ndarray:
        """uint8 HxWx3 RGB image of row ``index`` as displayed (degraded queries at LR size)."""
        return self.eval_dataset(stage).load_image(index)

    # ------------------------------------------------------------------ loaders
    def _loader_kwargs(self) -> dict[str, Any]:
        hp = self.hparams
        persistent = hp.persistent_workers
        if persistent is None:
            persistent = self.num_workers > 0
        return {
            "num_workers": self.num_workers,
            "pin_memory": bool(hp.pin_memory and torch.cuda.is_available()),
            "persistent_workers": bool(persistent and self.num_workers > 0),
        }

    def _distributed(self) -> tuple[int | None, int | None]:
        trainer = getattr(self, "trainer", None)
        if trainer is None:
            return None, None
        return trainer.world_size, trainer.global_rank

    def train_dataloader(self) -> DataLoader:
        dataset = self.train_dataset()
        num_replicas, rank = self._distributed()
        sampler = PKSampler(
            dataset.pids.tolist(),
            self.p,
            self.k,
            seed=self.seed,
            num_replicas=num_replicas,
            rank=rank,
        )
        dataset.rank = sampler.rank
        return DataLoader(dataset, batch_sampler=sampler, **self._loader_kwargs())

    def _eval_loader(self, stage: str) -> DataLoader:
        return DataLoader(
            self.eval_dataset(stage),
            batch_size=self.eval_batch_size,
            shuffle=False,
            drop_last=False,
            **self._loader_kwargs(),
        )

    def val_dataloader(self) -> DataLoader | list:
        # No held-out identities: an empty list makes Lightning skip the validation loop.
        if not self.has_validation:
            return []
        return self._eval_loader("val")

    def test_dataloader(self) -> DataLoader:
        return self._eval_loader("test")

    def predict_dataloader(self) -> DataLoader:
        return self._eval_loader("predict")

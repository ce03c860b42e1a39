""" "Same person?" thresholds per query level, from labelled crops or the validation split.

A level-1 query (the blurriest) is compared on a short prefix, so its genuine and impostor
distances live on another scale than a level-m query's: one threshold for all levels would
accept far too many impostors at some levels and reject genuine pairs at others. For every query
level this module measures the genuine (same identity) and impostor distance distributions on
the validation evaluation set, the ROC curve, and the thresholds at the requested false-accept
rates (FAR) with the true-accept rate (TAR) there. ``rareid search`` turns a match distance into
a verdict with the threshold of the query's level. The command line is
:mod:`rareid.commands.calibrate`.

Never calibrate on the test split: the thresholds would be tuned on the numbers they report.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from rareid.levels import Role

if TYPE_CHECKING:
    import torch

    from rareid.data.datamodule import ReIDDataModule
    from rareid.models.module import RAReIDModule

DEFAULT_FARS: tuple[float, ...] = (1e-2, 1e-3)


#: A level is usable only when the lower end of its ROC AUC's 95 % interval is above this:
#: at 0.5 its distances do not tell the same person from another better than a coin.
AUC_FLOOR = 0.5
#: Default least true-accept rate at a FAR for its threshold to give verdicts: below it, almost
#: every "same" the threshold gives is a false alarm.
DEFAULT_MIN_TAR = 0.05
#: Two-sided 95 % normal quantile.
Z_95 = 1.959964

#: Impostor pairs a level needs at FAR ``f`` to resolve it: ``MIN_FALSE_ACCEPTS / f`` (below, the
#: threshold is set by fewer than that many impostors and the FAR it promises is not measured).
MIN_FALSE_ACCEPTS = 1


def roc_points(
    genuine: np.ndarray, impostor: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(FAR, TAR, distance threshold) at every distinct distance, FAR ascending, from
    scikit-learn's ``roc_curve`` on the negated distances (accept when distance <= threshold).

    Its first point (nothing accepted, an infinite score threshold) gets a distance just below
    the smallest one, so that every threshold is a finite number a JSON file can hold.
    """
    from sklearn.metrics import roc_curve as sklearn_roc_curve

    genuine = np.asarray(genuine, dtype=np.float64).reshape(-1)
    impostor = np.asarray(impostor, dtype=np.float64).reshape(-1)
    labels = np.concatenate([np.ones(genuine.size), np.zeros(impostor.size)])
    scores = -np.concatenate([genuine, impostor])
    far, tar, score_thresholds = sklearn_roc_curve(labels, scores, drop_intermediate=False)
    thresholds = -score_thresholds
    if thresholds.size and not np.isfinite(thresholds[0]):
        thresholds[0] = np.nextafter(float(-scores.max()), -np.inf)
    return far, tar, thresholds


def roc_curve(genuine: np.ndarray, impostor: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(FAR, TAR) at every distinct distance used as a threshold, FAR ascending."""
    far, tar, _ = roc_points(genuine, impostor)
    return far, tar


def threshold_at_far(genuine: np.ndarray, impostor: np.ndarray, far: float) -> float:
    """Largest distance threshold whose false-accept rate is at most ``far`` (accept when
    distance <= threshold; a tie at the boundary stays rejected)."""
    if np.asarray(impostor).size == 0:
        raise ValueError("no impostor pair: cannot set a threshold")
    rates, _, thresholds = roc_points(genuine, impostor)
    return float(thresholds[np.flatnonzero(rates <= far + 1e-12)[-1]])


def unresolved_reason(genuine_pairs: int, impostor_pairs: int, far: float) -> str | None:
    """Why a level's threshold at ``far`` cannot be trusted, or None when it can."""
    needed = math.ceil(MIN_FALSE_ACCEPTS / far - 1e-9)
    if genuine_pairs == 0:
        return "no genuine pair (each identity needs two images, from two cameras if known)"
    if impostor_pairs < needed:
        return (
            f"too few impostor pairs ({impostor_pairs}) for FAR {far:g}: needs at least {needed}"
            " (more identities)"
        )
    return None


def roc_auc(genuine: np.ndarray, impostor: np.ndarray) -> float:
    """ROC area under the curve: the chance that a genuine pair is closer than an impostor
    pair (ties count half); 0.5 is a model that cannot tell people apart."""
    from sklearn.metrics import roc_auc_score

    genuine = np.asarray(genuine, dtype=np.float64).reshape(-1)
    impostor = np.asarray(impostor, dtype=np.float64).reshape(-1)
    labels = np.concatenate([np.ones(genuine.size), np.zeros(impostor.size)])
    return float(roc_auc_score(labels, -np.concatenate([genuine, impostor])))


def auc_interval(
    auc: float, positives: int, negatives: int, z: float = Z_95
) -> tuple[float, float]:
    """Hanley and McNeil's (1982) normal interval of an AUC from ``positives`` genuine and
    ``negatives`` impostor pairs. It treats pairs as independent, while pairs share images,
    so the interval is if anything too narrow: the TAR floor backs it up."""
    q1, q2 = auc / (2 - auc), 2 * auc**2 / (1 + auc)
    variance = (
        auc * (1 - auc) + (positives - 1) * (q1 - auc**2) + (negatives - 1) * (q2 - auc**2)
    ) / max(positives * negatives, 1)
    spread = z * math.sqrt(max(variance, 0.0))
    return max(0.0, auc - spread), min(1.0, auc + spread)


def separability(good: np.ndarray, bad: np.ndarray) -> tuple[float | None, list[float], str | None]:
    """(AUC, its 95 % interval, why the level is unusable or None) of one level's pairs."""
    if good.size == 0 or bad.size == 0:
        which = "genuine" if good.size == 0 else "impostor"
        return None, [], f"no {which} pair: separability cannot be measured"
    auc = roc_auc(good, bad)
    low, high = auc_interval(auc, good.size, bad.size)
    if low <= AUC_FLOOR:
        return (
            auc,
            [low, high],
            (
                f"not separable: ROC AUC {auc:.3f} (95 % CI {low:.3f}-{high:.3f}) is not clearly "
                f"above {AUC_FLOOR:g}; same-person median distance "
                f"{float(np.median(good)):.4g} vs different-person {float(np.median(bad)):.4g}"
            ),
        )
    return auc, [low, high], None


def pair_far_for_search(far_per_search: float, gallery_size: int) -> float:
    """The per-pair FAR at which a search of ``gallery_size`` images expects at most
    ``far_per_search`` false "same" verdicts (the expected count is FAR times the size)."""
    return far_per_search / max(int(gallery_size), 1)


def calibrate_levels(
    genuine: dict[int, np.ndarray],
    impostor: dict[int, np.ndarray],
    fars: Sequence[float] = DEFAULT_FARS,
    min_tar: float = DEFAULT_MIN_TAR,
    gallery_size: int | None = None,
    far_per_search: float | None = None,
) -> dict[str, Any]:
    """Thresholds and TAR per level at each FAR (``levels[str(level)]``), as stored in an index.

    A FAR a level cannot resolve (fewer than ``1 / FAR`` impostor pairs, or no genuine pair)
    stores no threshold: its ``resolvable`` entry is False and ``unresolved`` says why, so that
    ``rareid search`` answers ``uncalibrated`` there instead of a verdict from a few pairs.
    A level whose ROC AUC is not clearly above 0.5 is ``usable: False`` and stores no
    threshold at all; a FAR whose TAR is below ``min_tar`` stores none either (with the
    reason), as nearly every "same" it gave would be wrong. With ``gallery_size`` the
    calibration also holds the expected false "same" verdicts per search at each FAR, and
    with ``far_per_search`` the per-pair FAR that keeps a search at that many (calibrated
    as one more FAR).

    Examples::

        >>> import numpy as np
        >>> genuine, impostor = {1: np.array([0.1, 0.2])}, {1: np.linspace(0.5, 1.5, 200)}
        >>> calibration = calibrate_levels(genuine, impostor, fars=[0.01, 0.001])
        >>> calibration["levels"]["1"]["resolvable"]  # 200 impostor pairs cannot measure 0.001
        {'0.01': True, '0.001': False}
    """
    fars = [float(far) for far in fars]
    search_target = None
    if far_per_search is not None:
        if gallery_size is None:
            raise ValueError("far_per_search needs the gallery size")
        pair_far = pair_far_for_search(far_per_search, gallery_size)
        search_target = {"target": float(far_per_search), "pair_far": pair_far}
        if not any(math.isclose(pair_far, far, rel_tol=1e-9) for far in fars):
            fars.append(pair_far)
    levels: dict[str, Any] = {}
    for level in sorted(set(genuine) | set(impostor)):
        good = np.asarray(genuine.get(level, []), dtype=np.float64)
        bad = np.asarray(impostor.get(level, []), dtype=np.float64)
        auc, interval, unusable = separability(good, bad)
        entry: dict[str, Any] = {
            "genuine_pairs": int(good.size),
            "impostor_pairs": int(bad.size),
            "genuine_median": float(np.median(good)) if good.size else None,
            "impostor_median": float(np.median(bad)) if bad.size else None,
            "auc": auc,
            "auc_ci": interval,
            "usable": unusable is None,
            "unusable": unusable,
            "thresholds": {},
            "refused_thresholds": {},
            "tar": {},
            "far": {},
            "resolvable": {},
            "unresolved": {},
        }
        for far in fars:
            key = repr(float(far))
            reason = unresolved_reason(good.size, bad.size, far)
            entry["resolvable"][key] = reason is None
            if reason is not None:
                entry["unresolved"][key] = reason
                continue
            threshold = threshold_at_far(good, bad, far)
            tar = float(np.mean(good <= threshold))
            entry["tar"][key] = tar
            entry["far"][key] = float(np.mean(bad <= threshold))
            if unusable is not None or tar < min_tar:
                entry["refused_thresholds"][key] = threshold  # drawn, never used
            if unusable is not None:
                entry["unresolved"][key] = unusable
            elif tar < min_tar:
                entry["unresolved"][key] = (
                    f"TAR {tar:.3f} at FAR {far:g} is below the floor {min_tar:g}: nearly "
                    "every 'same' would be a false alarm"
                )
            else:
                entry["thresholds"][key] = threshold
        levels[str(level)] = entry
    calibration: dict[str, Any] = {"fars": fars, "min_tar": float(min_tar), "levels": levels}
    if gallery_size is not None:
        calibration["gallery_size"] = int(gallery_size)
        calibration["false_same_per_search"] = {repr(far): far * int(gallery_size) for far in fars}
    if search_target is not None:
        calibration["far_per_search"] = search_target
    return calibration


def level_summary(calibration: dict[str, Any], level: str) -> str:
    """One line of a level: pairs, AUC with its interval, TAR at each FAR and the false
    "same" per search, or why the level gives no verdict."""
    entry = calibration["levels"][level]
    head = f"level {level}: {entry['genuine_pairs']} genuine / {entry['impostor_pairs']} impostor pairs"
    if entry.get("auc") is not None:
        low, high = entry["auc_ci"]
        head += f"; AUC {entry['auc']:.3f} (95 % CI {low:.3f}-{high:.3f})"
    per_search = calibration.get("false_same_per_search") or {}
    cells = []
    for far in calibration["fars"]:
        key = repr(float(far))
        cell = f"FAR {far:g}"
        if key in entry["thresholds"]:
            cell += f": d <= {entry['thresholds'][key]:.4g}"
        if key in entry["tar"]:
            cell += f" TAR {entry['tar'][key]:.3f}"
        if key in per_search:
            cell += f", {per_search[key]:.3g} false 'same' per search"
        if key in entry["unresolved"] and entry.get("usable", True):
            cell += f" - none stored, {entry['unresolved'][key]}"
        cells.append(cell)
    text = f"{head}; {'; '.join(cells)}"
    if entry.get("usable") is False:
        text += f" - UNUSABLE, verdicts 'uncalibrated': {entry['unusable']}"
    return text


def stored_thresholds(calibration: dict[str, Any]) -> int:
    """How many (level, FAR) thresholds a calibration holds."""
    return sum(len(entry["thresholds"]) for entry in calibration["levels"].values())


def collect_distances(
    model: RAReIDModule,
    datamodule: ReIDDataModule,
    stage: str = "val",
    batch_size: int = 64,
) -> tuple[dict[int, np.ndarray], dict[int, np.ndarray]]:
    """Genuine and impostor query-gallery distances per query level on an evaluation set.

    Every LR query of every trial against that trial's HR gallery, and the HR queries
    (level m) against the first trial's; genuine pairs share a real identity
    (distractors, pid <= 0, are only ever impostors).
    """
    import torch
    from torch.utils.data import DataLoader

    dataset = datamodule.eval_dataset(stage)
    parts: dict[str, list[torch.Tensor]] = {
        key: [] for key in ("embedding", "level", "pid", "role", "trial", "gallery_trials")
    }
    was_training = model.training
    model.eval()
    try:
        for batch in DataLoader(dataset, batch_size=batch_size, num_workers=0):
            parts["embedding"].append(model.embed(batch["image"], batch["level"]).cpu())
            for key in parts:
                if key != "embedding":
                    parts[key].append(batch[key])
    finally:
        model.train(was_training)
    table = {key: torch.cat(values) for key, values in parts.items()}
    genuine: dict[int, list[np.ndarray]] = {}
    impostor: dict[int, list[np.ndarray]] = {}
    trials = torch.unique(table["trial"][table["role"] == Role.QUERY]).tolist()
    for trial in trials:
        queries = (table["role"] == Role.QUERY) & (table["trial"] == trial)
        if trial == trials[0]:
            # undegraded queries (level m), once, against the first trial's gallery
            queries |= table["role"] == Role.HR_QUERY
        gallery = (table["role"] == Role.GALLERY) & ((table["gallery_trials"] >> trial) & 1).bool()
        if not gallery.any():
            continue
        dist = model.distance(
            table["embedding"][queries], table["level"][queries], table["embedding"][gallery]
        ).cpu()
        same = table["pid"][queries][:, None] == table["pid"][gallery][None, :]
        same &= table["pid"][gallery][None, :] > 0
        for level in torch.unique(table["level"][queries]).tolist():
            rows = table["level"][queries] == level
            genuine.setdefault(level, []).append(dist[rows][same[rows]].numpy())
            impostor.setdefault(level, []).append(dist[rows][~same[rows]].numpy())
    return (
        {level: np.concatenate(values) for level, values in genuine.items()},
        {level: np.concatenate(values) for level, values in impostor.items()},
    )


def datamodule_from_config(
    config_path: str | Path, hparams: dict[str, Any], preprocess: Any, root: str | None = None
) -> ReIDDataModule:
    """The config's datamodule, with the model's own rates, input size and normalisation.

    A config whose rates or input size differ from the checkpoint's is refused (the checkpoint
    defines the model; silently evaluating it at other rates would mislabel the results).
    """
    import yaml

    from rareid.data.datamodule import ReIDDataModule

    config = yaml.safe_load(Path(config_path).read_text()) or {}
    data = dict(config.get("data") or {})
    data = dict(data.get("init_args", data)) if "class_path" in data else data
    rates = [float(r) for r in hparams["rates"]]
    for name, value in (("rates", rates), ("input_size", list(preprocess.img_size))):
        given = data.get(name)
        if given is not None and [float(v) for v in given] != [float(v) for v in value]:
            raise ValueError(
                f"data.{name} is {list(given)} in {str(config_path)!r} but the checkpoint's model "
                f"has {value}: remove it from the config or use the matching checkpoint"
            )
    data.update(
        rates=rates,
        input_size=tuple(preprocess.img_size),
        mean=tuple(preprocess.mean),
        std=tuple(preprocess.std),
    )
    if root is not None:
        data["root"] = root
    return ReIDDataModule(**data)

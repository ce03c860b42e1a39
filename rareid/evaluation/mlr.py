"""The multi-trial MLR evaluation (paper §V-B) as a DDP-safe torchmetrics Metric."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any, get_args

import numpy as np
import torch
from torch import Tensor
from torchmetrics import Metric

from rareid.evaluation.distances import Distance, level_distances
from rareid.evaluation.rank import query_ranks, summarize_ranks
from rareid.levels import MAX_TRIALS, Role, normalize_rates

__all__ = ["REPORTED_RANKS", "RUN_BY_CALLBACK", "MLRMetric"]

#: Key of the one test batch of a protocol that a callback runs whole (``mlr-video``): the
#: model embeds nothing for it and leaves the scores to that callback.
RUN_BY_CALLBACK = "run_by_callback"

#: CMC ranks reported by :class:`MLRMetric` (those ``<= max_rank``).
REPORTED_RANKS = (1, 5, 10, 20)


def _stats(values: list[float]) -> tuple[float, float]:
    """Mean and population standard deviation (ddof=0) over trials; std = 0 for one trial."""
    array = np.asarray(values, dtype=np.float64)
    return float(array.mean()), float(array.std(ddof=0))


class MLRMetric(Metric):
    """Multi-trial MLR re-ID evaluation, DDP-safe.

    Accumulates zero-padded embeddings with their level, pid, camid, role (``Role.GALLERY``,
    ``Role.QUERY`` or ``Role.HR_QUERY``), trial (MLR queries), gallery_trials bitmask (gallery) and a
    unique sample ``index``. ``compute()`` drops duplicated indices (distributed padding), sorts
    by index so 1 and N devices see the same order, and for every trial t scores the MLR queries
    of trial t (and the HR queries) against the gallery images with bit t set.

    Results are fractions: mean over trials and population std (ddof=0, 0 for a single trial) of
    rank-1/5/10/20 (those <= ``max_rank``) and mAP, overall, per query level (``level{k}/...``,
    over the trials that hold level-k queries) and for HR queries (``hr/...``). Queries without
    a valid match in their trial's gallery are not scored; ``{prefix}queries`` and
    ``{prefix}skipped`` count them over all trials, and :attr:`query_counts` per trial.

    Levels above ``len(split_sizes)`` use the whole vector for distances (a model without varying
    length passes one block) but keep their own ``level{k}`` key.

    ``rerank=True`` also scores every trial on k-reciprocal re-ranked distances
    (:func:`rareid.evaluation.rerank.k_reciprocal_distances`, started from the same level-aware distances)
    and reports them under ``rerank/`` (``rerank/rank1``, ``rerank/level{k}/mAP``, ...).
    """

    is_differentiable = False
    higher_is_better = True
    full_state_update = False

    STATES = (
        "embeddings",
        "levels",
        "pids",
        "camids",
        "roles",
        "trials",
        "gallery_trials",
        "indices",
    )

    def __init__(
        self,
        split_sizes: Sequence[int],
        rates: Sequence[float],
        max_rank: int = 20,
        distance: Distance = "euclidean",
        rerank: bool = False,
        rerank_k1: int = 20,
        rerank_k2: int = 6,
        rerank_lambda: float = 0.3,
        query_subvectors: int | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if query_subvectors is not None and not 1 <= query_subvectors <= len(split_sizes):
            raise ValueError(
                f"query_subvectors: expected 1..{len(split_sizes)}, got {query_subvectors}"
            )
        self.query_subvectors = query_subvectors
        self.rerank = bool(rerank)
        self.rerank_options = {"k1": rerank_k1, "k2": rerank_k2, "lambda_value": rerank_lambda}
        self.split_sizes = [int(size) for size in split_sizes]
        if not self.split_sizes or any(size <= 0 for size in self.split_sizes):
            raise ValueError(f"split_sizes: expected positive sizes, got {list(split_sizes)}")
        self.rates = normalize_rates(rates)
        self.num_levels = len(self.rates)
        if max_rank < 1:
            raise ValueError(f"max_rank: expected >= 1, got {max_rank}")
        self.max_rank = int(max_rank)
        if distance not in get_args(Distance):
            raise ValueError(f"distance: expected one of {get_args(Distance)}, got {distance!r}")
        self.distance = distance
        #: Per-trial query counts of the last ``compute()``: ``{"trials": [t, ...], group:
        #: {"queries": [...], "skipped": [...]}}`` for the groups ``all``, ``level{k}``, ``hr``.
        self.query_counts: dict[str, Any] = {}
        for name in self.STATES:
            self.add_state(name, default=[], dist_reduce_fx="cat")

    # -- accumulation
    def update(
        self,
        embeddings: Tensor,
        levels: Tensor,
        pids: Tensor,
        camids: Tensor,
        roles: Tensor,
        trials: Tensor,
        gallery_trials: Tensor,
        indices: Tensor,
    ) -> None:
        """Add one evaluation batch: one value per embedding row in every other argument."""
        if embeddings.dim() != 2 or embeddings.shape[1] != sum(self.split_sizes):
            raise ValueError(
                f"embeddings: expected (N, {sum(self.split_sizes)}) (split_sizes "
                f"{self.split_sizes}), got {tuple(embeddings.shape)}"
            )
        count = embeddings.shape[0]
        columns = {
            "levels": levels,
            "pids": pids,
            "camids": camids,
            "roles": roles,
            "trials": trials,
            "gallery_trials": gallery_trials,
            "indices": indices,
        }
        for name, value in columns.items():
            column = torch.as_tensor(value, device=embeddings.device).reshape(-1).long()
            if column.numel() != count:
                raise ValueError(
                    f"{name}: expected {count} values (one per embedding), got {column.numel()}"
                )
            columns[name] = column
        levels_t, roles_t = columns["levels"], columns["roles"]
        if count and (int(levels_t.min()) < 1 or int(levels_t.max()) > self.num_levels):
            raise ValueError(
                f"levels must be in 1..{self.num_levels} (rates {list(self.rates)}), got "
                f"{int(levels_t.min())}..{int(levels_t.max())}"
            )
        if count and not bool(((roles_t >= Role.GALLERY) & (roles_t <= Role.HR_QUERY)).all()):
            raise ValueError(
                f"roles must be {Role.GALLERY} (gallery), {Role.QUERY} (MLR query) or {Role.HR_QUERY} "
                "(HR query)"
            )
        q_trials = columns["trials"][roles_t == Role.QUERY]
        if q_trials.numel() and (int(q_trials.min()) < 0 or int(q_trials.max()) >= MAX_TRIALS):
            raise ValueError(f"trial of an MLR query must be in 0..{MAX_TRIALS - 1}")
        self.embeddings.append(embeddings.detach().float())
        for name, column in columns.items():
            getattr(self, name).append(column)

    # -- accumulated samples
    def samples(self) -> dict[str, Tensor]:
        """Accumulated samples, duplicates (DDP padding) dropped, sorted by sample index.

        The embeddings are not reordered (a copy of the largest state): ``rows`` maps the
        sorted samples to their embedding rows, see :meth:`embeddings_of`.
        """
        raw: dict[str, Tensor] = {}
        for name in self.STATES:
            value = getattr(self, name)
            if isinstance(value, list):
                value = torch.cat(value) if value else torch.zeros(0, device=self.device)
            raw[name] = value
        if raw["embeddings"].numel() == 0:
            empty = torch.zeros(0, dtype=torch.long, device=self.device)
            raw = {name: empty for name in self.STATES}
            raw["embeddings"] = torch.zeros(0, sum(self.split_sizes), device=self.device)
            raw["rows"] = empty
            return raw
        for name in self.STATES[1:]:
            raw[name] = raw[name].long()
        order = torch.argsort(raw["indices"], stable=True)
        index = raw["indices"][order]
        keep = torch.ones_like(index, dtype=torch.bool)
        keep[1:] = index[1:] != index[:-1]
        if not bool(keep.all()):
            repeat = ~keep
            for name in ("pids", "roles", "trials", "levels"):
                value = raw[name][order]
                if not bool((value[1:][repeat[1:]] == value[:-1][repeat[1:]]).all()):
                    raise ValueError(
                        f"two samples share an index but differ in {name}: the evaluation "
                        "dataset's 'index' must be unique per sample"
                    )
        selected = order[keep]
        samples = {name: raw[name][selected] for name in self.STATES[1:]}
        samples["embeddings"] = raw["embeddings"]
        samples["rows"] = selected
        return samples

    @staticmethod
    def embeddings_of(samples: dict[str, Tensor], mask: Tensor) -> Tensor:
        """Embeddings of the (sorted) samples selected by ``mask``."""
        return samples["embeddings"][samples["rows"][mask]]

    @staticmethod
    def gallery_mask(samples: dict[str, Tensor], trial: int) -> Tensor:
        """The gallery images of ``trial``."""
        in_trial = ((samples["gallery_trials"] >> trial) & 1) == 1
        return (samples["roles"] == Role.GALLERY) & in_trial

    @staticmethod
    def query_mask(samples: dict[str, Tensor], trial: int, roles: Sequence[int]) -> Tensor:
        """The queries of ``trial`` with one of ``roles``: MLR queries of that trial, and all
        HR queries."""
        mask = torch.zeros_like(samples["roles"], dtype=torch.bool)
        for role in roles:
            if role not in (Role.QUERY, Role.HR_QUERY):
                raise ValueError(
                    f"roles: expected query roles {Role.QUERY} and/or {Role.HR_QUERY}, got {list(roles)}"
                )
            picked = samples["roles"] == role
            if role == Role.QUERY:
                picked &= samples["trials"] == trial
            mask |= picked
        return mask

    def distance_levels(self, samples: dict[str, Tensor], mask: Tensor) -> Tensor:
        """Sub-vectors each selected sample is compared with: its level, or
        ``query_subvectors`` for MLR queries when that is set (Table II)."""
        levels = samples["levels"][mask].clamp(max=len(self.split_sizes))
        if self.query_subvectors is None:
            return levels
        forced = torch.full_like(levels, self.query_subvectors)
        return torch.where(samples["roles"][mask] == Role.QUERY, forced, levels)

    def distances(self, samples: dict[str, Tensor], q_mask: Tensor, g_mask: Tensor) -> Tensor:
        """Level-aware distances between the selected queries and gallery images."""
        full = len(self.split_sizes)
        g_levels = self.distance_levels(samples, g_mask)
        return level_distances(
            self.embeddings_of(samples, q_mask),
            self.distance_levels(samples, q_mask),
            self.embeddings_of(samples, g_mask),
            None if bool((g_levels == full).all()) else g_levels,
            self.split_sizes,
            metric=self.distance,
        )

    def reranked_distances(
        self, samples: dict[str, Tensor], q_mask: Tensor, g_mask: Tensor
    ) -> Tensor:
        """k-reciprocal re-ranked distances between the selected queries and gallery images.

        The queries of one trial are re-ranked together: their mutual neighbourhoods are part
        of the method.
        """
        from rareid.evaluation.rerank import k_reciprocal_distances

        return k_reciprocal_distances(
            self.embeddings_of(samples, q_mask),
            self.distance_levels(samples, q_mask),
            self.embeddings_of(samples, g_mask),
            self.distance_levels(samples, g_mask),
            self.split_sizes,
            metric=self.distance,
            **self.rerank_options,
        ).to(self.device)

    def _trials(self, samples: dict[str, Tensor]) -> list[int]:
        q_trials = set(samples["trials"][samples["roles"] == Role.QUERY].tolist())
        bits = 0
        for value in torch.unique(
            samples["gallery_trials"][samples["roles"] == Role.GALLERY]
        ).tolist():
            bits |= int(value)
        g_trials = {trial for trial in range(MAX_TRIALS) if (bits >> trial) & 1}
        missing = sorted(q_trials - g_trials)
        if missing and g_trials:
            warnings.warn(
                f"MLRMetric: trials {missing} have queries but no gallery image; they are not "
                "evaluated (check the gallery_trials bitmasks)",
                stacklevel=3,
            )
        if q_trials:
            return sorted(q_trials & g_trials)
        return sorted(g_trials)  # HR queries only

    # -- results
    def compute(self) -> dict[str, Tensor]:
        samples = self.samples()
        trials = self._trials(samples)
        ranks = [rank for rank in REPORTED_RANKS if rank <= self.max_rank]
        per_trial: dict[str, list[float]] = {}
        counts: dict[str, dict[str, list[int]]] = {}

        def add(group: str, first: Tensor, ap: Tensor, trial_no: int, prefix: str = "") -> None:
            cmc, mean_ap, num_scored = summarize_ranks(first, ap, self.max_rank)
            if not prefix:  # re-ranked rows score the same queries: counted once
                count = counts.setdefault(
                    group, {"queries": [0] * len(trials), "skipped": [0] * len(trials)}
                )
                count["queries"][trial_no] = first.numel()
                count["skipped"][trial_no] = first.numel() - num_scored
            if num_scored == 0:
                return
            prefix = prefix if group == "all" else f"{prefix}{group}/"
            for rank in ranks:
                per_trial.setdefault(f"{prefix}rank{rank}", []).append(float(cmc[rank - 1]))
            per_trial.setdefault(f"{prefix}mAP", []).append(mean_ap)

        for trial_no, trial in enumerate(trials):
            g_mask = self.gallery_mask(samples, trial)
            q_mask = self.query_mask(samples, trial, (Role.QUERY, Role.HR_QUERY))
            if not bool(g_mask.any()) or not bool(q_mask.any()):
                continue
            role = samples["roles"][q_mask]
            level = samples["levels"][q_mask]
            mlr = role == Role.QUERY
            hr = role == Role.HR_QUERY
            scored = [("", self.distances(samples, q_mask, g_mask))]
            if self.rerank:
                scored.append(("rerank/", self.reranked_distances(samples, q_mask, g_mask)))
            for prefix, dist in scored:
                first, ap = query_ranks(
                    dist,
                    samples["pids"][q_mask],
                    samples["pids"][g_mask],
                    samples["camids"][q_mask],
                    samples["camids"][g_mask],
                )
                if bool(mlr.any()):
                    add("all", first[mlr], ap[mlr], trial_no, prefix)
                    for value in torch.unique(level[mlr]).tolist():
                        chosen = mlr & (level == value)
                        add(f"level{value}", first[chosen], ap[chosen], trial_no, prefix)
                if bool(hr.any()):
                    add("hr", first[hr], ap[hr], trial_no, prefix)

        if not per_trial:
            warnings.warn(
                "MLRMetric: nothing to evaluate (no query with a valid match in any trial's "
                "gallery); returning NaN",
                stacklevel=2,
            )
            per_trial = {f"rank{rank}": [float("nan")] for rank in ranks}
            per_trial["mAP"] = [float("nan")]
        results: dict[str, Tensor] = {}
        for key in sorted(per_trial, key=lambda name: (name.count("/"), name)):
            mean, std = _stats(per_trial[key])
            results[key] = torch.tensor(mean, dtype=torch.float32, device=self.device)
            results[f"{key}_std"] = torch.tensor(std, dtype=torch.float32, device=self.device)
        for group, count in counts.items():
            prefix = "" if group == "all" else f"{group}/"
            for name, values in count.items():
                results[f"{prefix}{name}"] = torch.tensor(sum(values), device=self.device)
        self.query_counts = {"trials": trials, **counts}
        return results

"""Per-level fit statistics of the training views: does each prefix objective fit?

Why: a level-``k`` image trains only its first ``k`` sub-vectors. When those short prefixes are
underfit, the varying-length embedding loses to a full-length baseline, whatever the method
is worth. Two figures per level, summed over an epoch, show whether the budget is enough:

* ``acc``: identity classification accuracy of the level's training views on their own
  (zero-padded) prefix;
* ``align``: how often an LR training view is closer to its own HR view than to every HR view
  of another identity in the batch (over the distance a query of that level uses).
"""

from __future__ import annotations

import torch
import torch.distributed as dist


class FitStatistics:
    """Counts, per level 1..m, of correct identity predictions and aligned LR-HR pairs."""

    def __init__(self, num_levels: int) -> None:
        self.num_levels = num_levels
        self.reset()

    def reset(self) -> None:
        # Rows: level 1..m; columns: correct, seen, aligned, LR pairs.
        self.counts = torch.zeros(self.num_levels, 4, dtype=torch.long)

    def _add(self, column: int, levels: torch.Tensor, values: torch.Tensor) -> None:
        # The counts follow the training views' device, so a GPU step never waits on a copy to
        # the host; they are read once an epoch, in ``compute``.
        if self.counts.device != values.device:
            self.counts = self.counts.to(values.device)
        self.counts[:, column].index_add_(0, levels.long() - 1, values.long())

    @torch.no_grad()
    def update_accuracy(
        self, logits: torch.Tensor, pids: torch.Tensor, levels: torch.Tensor
    ) -> None:
        """``logits`` (N, C) of training views at ``levels`` (1..m) with identities ``pids``."""
        correct = logits.argmax(dim=1) == pids
        self._add(0, levels, correct)
        self._add(1, levels, torch.ones_like(correct))

    @torch.no_grad()
    def update_alignment(
        self,
        distances: torch.Tensor,
        lr_levels: torch.Tensor,
        lr_pids: torch.Tensor,
        hr_pids: torch.Tensor,
    ) -> None:
        """``distances`` (N, N): LR view ``i`` to HR view ``j``; view ``i``'s own HR view is ``j = i``."""
        own = distances.diagonal()
        other = distances.masked_fill(lr_pids[:, None] == hr_pids[None, :], float("inf"))
        aligned = own < other.min(dim=1).values
        self._add(2, lr_levels, aligned)
        self._add(3, lr_levels, torch.ones_like(aligned))

    def compute(self, device: torch.device | str = "cpu") -> dict[str, float]:
        """``acc_level{k}`` and ``align_level{k}`` in [0, 1] for every level that was seen,
        summed over all ranks (``device``: where the process group reduces, e.g. CUDA)."""
        counts = self.counts
        if dist.is_available() and dist.is_initialized():
            counts = counts.to(device)
            dist.all_reduce(counts)
        results = {}
        for level in range(1, self.num_levels + 1):
            correct, seen, aligned, pairs = counts[level - 1].tolist()
            if seen:
                results[f"acc_level{level}"] = correct / seen
            if pairs:
                results[f"align_level{level}"] = aligned / pairs
        return results

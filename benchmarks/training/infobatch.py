"""An InfoBatch-style loss-based pruning arm, written from the paper's description.

InfoBatch (Qin et al., "InfoBatch: Lossless Training Speed Up by Unbiased Dynamic Data Pruning",
ICLR 2024) keeps the last observed loss of every sample. At the start of each epoch, every sample
whose last loss is below the mean of those losses ("well learned") is pruned with probability
``prune``; the well-learned samples that are kept have their loss (so their gradient) multiplied
by ``1 / (1 - prune)``, so that the expected gradient of the epoch is that of the full data. In
the epochs from ``(1 - anneal) * epochs`` on nothing is pruned and no loss is rescaled. Samples not yet
observed (the whole first epoch) are always kept at weight 1: the method knows nothing before it
has seen a loss, which is the opening a quality prior has.

This is a re-implementation for the benchmark, not the authors' code: no DataLoader patching, a
plain object that plans each epoch and receives the per-sample losses of each step.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

__all__ = ["InfoBatchPlan"]


class InfoBatchPlan:
    """Plans the epochs of an InfoBatch-style run over ``num_samples`` samples.

    Args:
        num_samples: dataset size ``N``.
        prune: probability ``r`` in [0, 1) of pruning a well-learned sample.
        epochs: number of epochs of the run (the annealing needs the end).
        anneal: share of the last epochs trained on the full data (the paper's ``1 - delta``, 0.125).
        seed: seeds the pruning and the order of every epoch.

    Example:
        >>> plan = InfoBatchPlan(4, prune=0.5, epochs=8, seed=0)
        >>> order, weights = plan.epoch(0)       # nothing observed yet: every sample, weight 1
        >>> sorted(order.tolist()), weights.tolist()
        ([0, 1, 2, 3], [1.0, 1.0, 1.0, 1.0])
    """

    def __init__(self, num_samples: int, *, prune: float, epochs: int, anneal: float = 0.125, seed: int = 0) -> None:
        if not isinstance(num_samples, int) or isinstance(num_samples, bool) or num_samples <= 0:
            raise ValueError(f"num_samples should be a positive int, but got num_samples={num_samples!r}")
        if not 0.0 <= prune < 1.0:
            raise ValueError(f"prune should be in [0, 1), but got prune={prune!r}")
        if not isinstance(epochs, int) or isinstance(epochs, bool) or epochs <= 0:
            raise ValueError(f"epochs should be a positive int, but got epochs={epochs!r}")
        if not 0.0 <= anneal <= 1.0:
            raise ValueError(f"anneal should be in [0, 1], but got anneal={anneal!r}")
        self.prune = float(prune)
        self.epochs = epochs
        #: First epoch trained on the full data: epoch ``e`` is annealed when ``e >= (1 - anneal) * epochs``, the paper's
        #: ``delta * C`` rule (so 8 epochs anneal the last one, and 2 to 7 epochs none).
        self.full_from = math.ceil((1.0 - anneal) * epochs - 1e-9)
        self.seed = seed
        #: Last observed loss of every sample, float64 (N,); NaN until the sample is first seen.
        self.losses = torch.full((num_samples,), math.nan, dtype=torch.float64)

    def well_learned(self) -> Tensor:
        """Bool :math:`(N,)`: observed samples whose last loss is below the mean of the observed losses."""
        seen = ~self.losses.isnan()
        if not bool(seen.any()):
            return seen
        return seen & (self.losses < self.losses[seen].mean())

    def epoch(self, epoch: int) -> tuple[Tensor, Tensor]:
        """The samples of ``epoch`` in training order, int64 :math:`(M,)`, and their loss weights, float32 :math:`(M,)`."""
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
        num = self.losses.numel()
        weights = torch.ones(num, dtype=torch.float32)
        keep = torch.ones(num, dtype=torch.bool)
        if epoch < self.full_from and self.prune > 0:
            candidates = self.well_learned()
            pruned = candidates & (torch.rand(num, generator=generator, dtype=torch.float64) < self.prune)
            keep &= ~pruned
            # The kept well-learned samples stand in for the pruned ones: 1/(1-r) keeps the expected gradient unbiased.
            weights[candidates & keep] = 1.0 / (1.0 - self.prune)
        kept = keep.nonzero().flatten()
        order = kept[torch.randperm(kept.numel(), generator=generator)]
        return order, weights[order]

    def update(self, indices: Tensor, losses: Tensor) -> None:
        """Record the per-sample losses :math:`(B,)` (unweighted) of the samples ``indices`` :math:`(B,)` just trained on."""
        self.losses[indices] = losses.detach().to(torch.float64)

"""Online difficulty: blend a stored quality prior with the per-sample loss seen during training.

A sampler built with ``online=OnlineDifficulty(...)`` accepts ``sampler.update(indices, losses)``
from the training loop. Each sample keeps its number of observations ``n`` and its observed loss
``l`` (the last one, or an exponential moving average with ``momentum``). Losses are put on the
prior's scale by rank: among the observed samples, the one at loss quantile ``q`` is given the
prior score found at hardness quantile ``q`` of the whole dataset, so a loss and a prior score
are comparable whatever the metric's unit or direction. The score the sampler uses is then

    ``(1 - w) * prior + w * mapped_loss``,  ``w = n / (n + prior_strength)``,

and ``prior`` unchanged for a sample never observed (``w = 0``). Observations made during an
epoch are used from the next epoch on (the current epoch's draw is fixed, so it can be resumed
and split between ranks), hence the prior alone leads the first epoch and the loss takes over
as it is observed.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor

from qualoader._validation import check_type
from qualoader.policies import OnlineDifficulty

__all__ = ["LossFeedback", "check_feedback", "mean_ranks", "record_losses"]


def mean_ranks(values: Tensor) -> Tensor:
    """0-based ranks float64 :math:`(N,)` of ``values`` :math:`(N,)`, ties sharing their mean rank."""
    _, inverse, counts = torch.unique(values, sorted=True, return_inverse=True, return_counts=True)
    first = counts.cumsum(0) - counts
    return (first.double() + (counts.double() - 1) / 2)[inverse]


def _as_1d(values: Any, name: str) -> np.ndarray:
    if isinstance(values, Tensor):
        tensor = values.detach().cpu()
        # numpy has no bfloat16 (mixed-precision losses); float64 holds every float dtype exactly.
        array = (tensor.double() if tensor.is_floating_point() else tensor).numpy()
    elif isinstance(values, (np.ndarray, list, tuple)):
        array = np.asarray(values)
    else:
        raise TypeError(f"{name} should be a 1-D tensor, array or sequence, but got {name} of type {type(values).__name__}")
    if array.ndim != 1:
        raise ValueError(f"{name} should be 1-D of shape (B,), but got {name}.shape={tuple(array.shape)}")
    return array


def check_feedback(indices: Any, losses: Any, length: int) -> tuple[Tensor, Tensor]:
    """Validate one ``update``: indices int64 :math:`(B,)` in ``[0, length)`` and finite losses float64 :math:`(B,)`.

    Raises:
        TypeError: not a tensor, array or sequence; indices that are not integers; losses that are not real.
        ValueError: not 1-D; lengths that differ; indices out of range; NaN or infinite losses.
    """
    index_array = _as_1d(indices, "indices")
    loss_array = _as_1d(losses, "losses")
    if index_array.size and (index_array.dtype == np.bool_ or not np.issubdtype(index_array.dtype, np.integer)):
        raise TypeError(f"indices should hold integers, but got indices with dtype {index_array.dtype}")
    real = np.issubdtype(loss_array.dtype, np.floating) or np.issubdtype(loss_array.dtype, np.integer)
    if loss_array.size and (loss_array.dtype == np.bool_ or not real):
        raise TypeError(f"losses should hold real numbers, but got losses with dtype {loss_array.dtype}")
    if loss_array.shape != index_array.shape:
        raise ValueError(
            f"losses should have one entry per index ({index_array.size}), but got losses.shape={tuple(loss_array.shape)}"
        )
    index = torch.from_numpy(np.ascontiguousarray(index_array, dtype=np.int64))
    loss = torch.from_numpy(np.ascontiguousarray(loss_array, dtype=np.float64))
    outside = (index < 0) | (index >= length)
    if bool(outside.any()):
        first = int(outside.nonzero()[0, 0])
        raise ValueError(f"indices should be in [0, {length - 1}], but got indices[{first}]={int(index[first])}")
    bad = ~torch.isfinite(loss)
    if bool(bad.any()):
        first = int(bad.nonzero()[0, 0])
        raise ValueError(f"losses should be finite, but got losses[{first}]={float(loss[first])}")
    return index, loss


def record_losses(counts: Tensor, record: Tensor, indices: Tensor, losses: Tensor, momentum: float) -> None:
    """Add observations in place: ``counts`` int64 :math:`(S,)` and ``record`` float64 :math:`(S,)` at ``indices`` :math:`(B,)`.

    A first observation is stored as it is, later ones as ``momentum * old + (1 - momentum) * new``;
    an index repeated in one call counts once per repeat, with the mean of its losses :math:`(B,)`.
    """
    if indices.numel() == 0:
        return
    unique, inverse, repeats = torch.unique(indices, return_inverse=True, return_counts=True)
    sums = torch.zeros(unique.numel(), dtype=torch.float64).index_add_(0, inverse, losses)
    means = sums / repeats.double()
    seen = counts[unique] > 0
    # A first observation is taken as it is: averaging it with the 0 placeholder would bias it low.
    record[unique] = torch.where(seen, momentum * record[unique] + (1 - momentum) * means, means)
    counts[unique] += repeats


class LossFeedback:
    """The per-sample loss record of one sampler and its blend with the prior (see the module docstring).

    Args:
        prior: the stored scores :math:`(N,)`, float64, in the metric's own unit.
        higher_is_better: the prior's direction (where the hard end lies).
        policy: the blend's settings.
    """

    def __init__(self, prior: Tensor, higher_is_better: bool, policy: OnlineDifficulty) -> None:
        check_type(policy, "online", OnlineDifficulty, "an OnlineDifficulty or None")
        self.prior = prior
        self.higher_is_better = higher_is_better
        self.policy = policy
        #: Observations per sample, int64 (N,).
        self.counts = torch.zeros(prior.numel(), dtype=torch.int64)
        #: Observed loss per sample (0 where never observed), float64 (N,).
        self.losses = torch.zeros(prior.numel(), dtype=torch.float64)
        # The prior's values from easiest to hardest: the ladder a loss quantile is read off.
        self._ladder = torch.sort(prior, descending=higher_is_better, stable=True).values

    def record(self, indices: Tensor, losses: Tensor) -> None:
        """Add checked observations (from :func:`check_feedback`); an index repeated in one call counts its mean loss."""
        record_losses(self.counts, self.losses, indices, losses, self.policy.momentum)

    def blend_weight(self) -> Tensor:
        """Weight ``n / (n + prior_strength)`` :math:`(N,)` of the observed loss in each sample's score."""
        counts = self.counts.double()
        return counts / (counts + self.policy.prior_strength)

    def scores(self) -> Tensor:
        """Scores :math:`(N,)` on the prior's scale: the prior blended with the rank-mapped loss where observed."""
        observed = (self.counts > 0).nonzero().flatten()
        if observed.numel() == 0:
            return self.prior
        # Loss quantiles (mid-ranks) among the observed samples, read off the prior's easy-to-hard ladder:
        # the hardest observed loss lands near the prior's hardest score, the median loss at its median.
        quantiles = (mean_ranks(self.losses[observed]) + 0.5) / observed.numel()
        positions = (quantiles * self.prior.numel()).long().clamp_(0, self.prior.numel() - 1)
        weight = self.blend_weight()[observed]
        blended = self.prior.clone()
        blended[observed] = (1 - weight) * self.prior[observed] + weight * self._ladder[positions]
        return blended

    def on_prior_marginal(self, scores: Tensor) -> Tensor:
        """The prior's own values :math:`(N,)` re-dealt in the order of ``scores`` :math:`(N,)` (ties by index).

        The result ranks samples as ``scores`` do and holds exactly the prior's values, so fixed
        score edges keep the number of samples between them. The prior itself comes back unchanged.
        """
        order = torch.argsort(scores, stable=True)
        dealt = torch.empty_like(self.prior)
        dealt[order] = torch.sort(self.prior, stable=True).values
        return dealt

    def state_dict(self) -> dict[str, Tensor]:
        """``{"counts", "losses"}``: copies of the record."""
        return {"counts": self.counts.clone(), "losses": self.losses.clone()}

    def check_state(self, state: Any, name: str = "state['online']") -> tuple[Tensor, Tensor]:
        """Validate a :meth:`state_dict` without changing anything; returns ``(counts, losses)``."""
        check_type(state, name, dict, "a dict from state_dict()")
        if set(state) != {"counts", "losses"}:
            raise ValueError(f"{name} should have keys ['counts', 'losses'], but got keys {sorted(state)}")
        counts, losses = state["counts"], state["losses"]
        length = self.prior.numel()
        for key, value, dtype in (("counts", counts, torch.int64), ("losses", losses, torch.float64)):
            if not isinstance(value, Tensor) or value.dtype != dtype or value.shape != (length,):
                shown = f"{value.dtype} {tuple(value.shape)}" if isinstance(value, Tensor) else type(value).__name__
                raise ValueError(f"{name}[{key!r}] should be a {dtype} tensor of shape ({length},), but got {shown}")
        if bool((counts < 0).any()) or not bool(torch.isfinite(losses).all()):
            raise ValueError(f"{name} should hold counts >= 0 and finite losses, but got negative counts or NaN/Inf losses")
        return counts, losses

    def load_state_dict(self, state: dict[str, Tensor]) -> None:
        """Restore a :meth:`state_dict` (checked first, so a bad state changes nothing)."""
        counts, losses = self.check_state(state)
        self.counts, self.losses = counts.clone(), losses.clone()

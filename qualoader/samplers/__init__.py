"""Quality-aware samplers for ``torch.utils.data.DataLoader``, single-process and distributed.

- :class:`QualityStratifiedSampler` / :class:`QualityStratifiedBatchSampler`: a target mix of
  quality strata per epoch / per batch.
- :class:`QualityWeightedSampler`: draws weighted by quality (favour easy or hard samples), for
  any number of samples (no ``2**24`` limit).
- :class:`CurriculumSampler`: an easy-to-hard (or anti-) curriculum with a pacing function.

All take scores as an array, a tensor or a complete :class:`~qualoader.data.ScoreTable`; draw
from ``torch.Generator(seed + epoch)``; shard per rank like ``DistributedSampler``; and save and
restore their position mid-epoch with ``state_dict`` / ``load_state_dict``. With
``online=OnlineDifficulty()`` they take the training loop's per-sample losses through
``sampler.update(indices, losses)`` and blend them with the stored scores from the next epoch
on (see :mod:`qualoader.samplers.feedback`). Samplers that prefer
easy or hard samples (weighted, curriculum) need ``higher_is_better=`` with a plain array (a
``ScoreTable`` knows its metric's direction). Their arguments (``edges``, ``proportions``,
``pacing``, ``start_fraction``, ``temperature``, ``favour``, ...) are the vocabulary of
:mod:`qualoader.policies`, shared with the webdataset stream stages.
"""

from qualoader.policies import OnlineDifficulty
from qualoader.samplers._base import QualitySampler
from qualoader.samplers.curriculum import (
    ORDERS,
    PACE_BY,
    PACINGS,
    CurriculumSampler,
    pacing_fraction,
)
from qualoader.samplers.feedback import LossFeedback
from qualoader.samplers.stratified import (
    PROPORTIONS,
    QualityStratifiedBatchSampler,
    QualityStratifiedSampler,
    apportion,
    assign_strata,
)
from qualoader.samplers.weighted import (
    FAVOUR,
    QualityWeightedSampler,
    draw_weighted,
    softmax_weights,
)

__all__ = [
    "FAVOUR",
    "ORDERS",
    "PACE_BY",
    "PACINGS",
    "PROPORTIONS",
    "CurriculumSampler",
    "LossFeedback",
    "OnlineDifficulty",
    "QualitySampler",
    "QualityStratifiedBatchSampler",
    "QualityStratifiedSampler",
    "QualityWeightedSampler",
    "apportion",
    "assign_strata",
    "draw_weighted",
    "pacing_fraction",
    "softmax_weights",
]

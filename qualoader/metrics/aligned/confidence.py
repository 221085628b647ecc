"""``confidence``: how sure the reference network is about an image (no training, no reference image).

A degradation that confuses the reference network lowers its softmax confidence, whatever the
degradation is, so this score needs no corruption sweep to fit and carries over to degradation
types nobody planned for. On the leave-one-family-out benchmark (``benchmarks/generalisation.py``)
the max probability tracks held-out task models' accuracy on unseen degradation families as well as
the ``task-guided`` head (mean Spearman 0.887 vs 0.871; in-family 0.891 vs 0.892). Its blind spot:
images washed out towards white (strong brightness, snow) can make the reference *more* confident,
which the head, reading image statistics too, corrects.

Measures (:data:`MEASURES`; all oriented so that higher = more confident = better):
``"probability"`` (max softmax probability), ``"entropy"`` (negative predictive entropy, nats),
``"energy"`` (log-sum-exp of the logits) and ``"margin"`` (top-1 minus top-2 logit).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from qualoader._validation import check_choice, check_type
from qualoader.metrics.aligned._reference_metric import ReferenceMetric, ReferenceSource, WeightsPath
from qualoader.metrics.aligned.reference_features import logit_features
from qualoader.metrics.registry import register_metric
from qualoader.reference import ForwardTap, ReferenceNetwork

__all__ = ["MEASURES", "Confidence", "confidence", "confidence_tap"]

#: Column of :func:`~qualoader.metrics.aligned.reference_features.logit_features` and sign (higher = better) per measure.
_COLUMNS: dict[str, tuple[int, float]] = {"probability": (0, 1.0), "entropy": (1, -1.0), "energy": (2, 1.0), "margin": (3, 1.0)}
#: Confidence measures accepted by :func:`confidence`.
MEASURES = frozenset(_COLUMNS)


@torch.no_grad()
def confidence(network: ReferenceNetwork, images: Tensor, measure: str = "probability") -> Tensor:
    """The reference network's confidence in each image, higher = more confident.

    Args:
        network: the reference network.
        images: :math:`(B, C, H, W)` in [0, 1].
        measure: one of :data:`MEASURES`.

    Returns:
        Scores :math:`(B,)` in the dtype of ``images`` (``"probability"`` in [1/K, 1], ``"entropy"``
        in [-log K, 0]).

    Example:
        >>> from qualoader.reference import default_reference
        >>> confidence(default_reference(), torch.rand(2, 1, 28, 28)).shape
        torch.Size([2])
    """
    check_type(network, "network", ReferenceNetwork, "a ReferenceNetwork (see qualoader.reference.load_reference)")
    return network.run_taps(images, [confidence_tap(images.dtype, measure)])[0]


def confidence_tap(dtype: torch.dtype, measure: str = "probability") -> ForwardTap:
    """:func:`confidence` as a :class:`~qualoader.reference.ForwardTap` (no hooks: it reads the logits only)."""
    check_choice(measure, "measure", MEASURES)
    column, sign = _COLUMNS[measure]
    return ForwardTap((), lambda logits: (sign * logit_features(logits)[:, column]).to(dtype))


@register_metric
class Confidence(ReferenceMetric):
    """Reference confidence (NR, DNN-aligned, training-free): softmax confidence of the reference network; higher is better.

    Args:
        reference: the reference network (default: the embedded Fashion-MNIST CNN); anything
            :func:`~qualoader.reference.load_reference` accepts.
        weights: local weights file for ``reference``.
        measure: ``"probability"`` (default), ``"entropy"``, ``"energy"`` or ``"margin"`` (:data:`MEASURES`).
        check_values: validate that float input is finite and in [0, 1].
        **convention: input-convention overrides for ``load_reference`` (``input_size``, ...).

    With the embedded reference and ``measure="probability"``, the shipped Fashion-MNIST profile's
    calibration is attached (see :data:`qualoader.calibration.SHIPPED_DEFAULTS`); for another network,
    build a profile with ``qualoader calibrate --reference ... --metric confidence``.

    Example:
        >>> from qualoader.metrics import create_metric
        >>> metric = create_metric("confidence", measure="entropy")
        >>> metric(torch.rand(4, 1, 28, 28)).shape
        torch.Size([4])
    """

    name = "confidence"
    higher_is_better = True

    def __init__(
        self,
        reference: ReferenceSource = None,
        *,
        weights: WeightsPath = None,
        measure: str = "probability",
        check_values: bool = True,
        **convention: Any,
    ) -> None:
        check_choice(measure, "measure", MEASURES)
        super().__init__(reference, weights=weights, check_values=check_values, **convention)
        self.measure = measure
        self.attach_shipped_calibration()

    def score(self, images: Tensor, reference: Tensor | None = None) -> Tensor:
        """Confidences :math:`(B,)` of validated images :math:`(B, C, H, W)`."""
        return confidence(self.network, images, self.measure)

    def tap(self, network: ReferenceNetwork, images: Tensor) -> ForwardTap:
        return confidence_tap(images.dtype, self.measure)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "measure": self.measure}

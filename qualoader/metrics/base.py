"""The metric protocol every quality score follows.

A metric is an :class:`torch.nn.Module` that maps a batch of images :math:`(B, C, H, W)` in
[0, 1] (``uint8`` accepted) to scores :math:`(B,)`. Subclasses implement :meth:`QualityMetric.score`
on already validated input; :meth:`QualityMetric.forward` validates and dispatches. Kernels live
in buffers, so ``metric.to(device)`` moves everything and the same code runs on CPU and CUDA.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

# the protocol sits outside qualoader.calibration, whose sweeps run metrics: no import circle either way
from qualoader._calibration_protocol import Calibration
from qualoader._validation import check_images, check_same_shape

__all__ = ["QualityMetric", "metric_fingerprint", "score_dtype"]


class QualityMetric(nn.Module):
    """Base class of every registered quality metric.

    Class attributes:
        name: registry name, e.g. ``"sharpness"``.
        higher_is_better: ``True`` when a larger score means a better image.
        requires_reference: ``True`` for full-reference metrics (``forward(images, reference)``).
        requires_weights: ``True`` when the metric needs network weights (local files only).
        min_size: smallest image height and width the metric accepts (its window or kernel);
            smaller input raises a ``ValueError`` naming it. A metric whose minimum depends on
            its options sets it per instance.

    Scores follow one policy for every metric: shape :math:`(B,)`, ``float64`` for ``float64``
    input and ``float32`` for any other input (``uint8``, half precisions, ``float32``), computed
    under ``torch.no_grad()`` so they never carry an autograd graph.

    Instance attribute:
        calibration: a :class:`~qualoader.calibration.Calibration` mapping scores :math:`(B,)` to
            expected error in [0, 1] (see :meth:`difficulty`), or ``None``. It is not part of the
            score's identity (:meth:`fingerprint`): attaching another calibration changes the
            difficulty read from stored scores, never the scores.

    Args:
        check_values: validate that float input is finite and in [0, 1] (one host sync per call).
    """

    name: ClassVar[str] = ""
    higher_is_better: ClassVar[bool] = True
    requires_reference: ClassVar[bool] = False
    requires_weights: ClassVar[bool] = False
    min_size: int = 1

    def __init__(self, *, check_values: bool = True) -> None:
        super().__init__()
        self.check_values = check_values
        self.calibration: Calibration | None = None

    # -- to implement -------------------------------------------------------------------------
    def score(self, images: Tensor, reference: Tensor | None = None) -> Tensor:
        """Score validated images :math:`(B, C, H, W)` float in [0, 1]; return :math:`(B,)`."""
        raise NotImplementedError

    def get_config(self) -> dict[str, Any]:
        """JSON-serialisable constructor parameters that change the scores (for fingerprints)."""
        return {}

    # -- protocol -----------------------------------------------------------------------------
    def forward(self, images: Tensor, reference: Tensor | None = None) -> Tensor:
        """Score a batch.

        Args:
            images: :math:`(B, C, H, W)`, float in [0, 1] or uint8, ``C`` in {1, 3},
                ``H, W >= min_size``.
            reference: clean images of the same shape, for full-reference metrics only.

        Returns:
            Scores of shape :math:`(B,)`, on the images' device, ``float64`` for ``float64``
            input and ``float32`` otherwise, without autograd graph.
        """
        images = check_images(images, "images", check_values=self.check_values, min_size=self.min_size, owner=f"metric {self.name!r}")
        if self.requires_reference:
            if reference is None:
                raise ValueError(
                    f"reference should be a tensor of clean images for the full-reference metric {self.name!r}, but got reference=None"
                )
            reference = check_same_shape(reference, images, "reference", check_values=self.check_values)
        elif reference is not None:
            raise ValueError(
                f"reference should be None for the no-reference metric {self.name!r}, but got reference of type {type(reference).__name__}"
            )
        with torch.no_grad():  # scores are data for sampling and stores, never a loss to differentiate
            scores = self.score(images, reference)
        if scores.shape != images.shape[:1]:
            raise RuntimeError(f"{type(self).__name__}.score should return shape ({images.shape[0]},), but got shape {tuple(scores.shape)}")
        return scores.to(score_dtype(images.dtype))

    def difficulty(self, scores: Tensor) -> Tensor:
        """Map scores :math:`(B,)` to a difficulty prior (expected error in [0, 1]), shape :math:`(B,)`.

        Raises:
            RuntimeError: when no calibration is attached to this metric.
        """
        if self.calibration is None:
            raise RuntimeError(
                f"metric {self.name!r} has no calibration, so it cannot give a difficulty; "
                "attach one with metric.calibration = ... (see qualoader.calibration) or use a calibrated metric"
            )
        return self.calibration(scores)

    @property
    def device(self) -> torch.device:
        """Device of the metric's buffers and parameters (CPU for a metric that has none)."""
        for tensor in (*self.parameters(), *self.buffers()):
            return tensor.device
        return torch.device("cpu")

    def fingerprint(self) -> str:
        """A short hash of name, config and weights (not the calibration): equal fingerprints give equal scores."""
        return metric_fingerprint(self)

    def extra_repr(self) -> str:
        return ", ".join(f"{key}={value!r}" for key, value in self.get_config().items())


def score_dtype(dtype: torch.dtype) -> torch.dtype:
    """The dtype of a metric's scores for input of ``dtype``: ``float64`` stays, all else is ``float32``.

    Half precisions are widened because a score of 80 dB or a variance of 1e-5 needs more than
    their 11-bit mantissa, and one dtype per batch keeps stores and comparisons exact.

    Example:
        >>> score_dtype(torch.uint8), score_dtype(torch.float16), score_dtype(torch.float64)
        (torch.float32, torch.float32, torch.float64)
    """
    return torch.float64 if dtype == torch.float64 else torch.float32


def metric_fingerprint(metric: QualityMetric) -> str:
    """Hash ``metric.name``, ``metric.get_config()`` and every parameter and buffer (16 hex digits).

    The calibration is left out on purpose: it maps scores to difficulty at read time, so a store
    keyed by this fingerprint stays valid when a metric is re-calibrated. A metric built from a
    quality profile adds the profile's ``score_identity``: it covers what the tensors cannot show
    (a TorchScript graph, the code behind an entry point, the input transform).
    """
    digest = hashlib.sha256()
    digest.update(json.dumps({"name": metric.name, "config": metric.get_config()}, sort_keys=True, default=str).encode())
    profile = getattr(metric, "profile", None)
    if profile is not None:
        digest.update(f"profile:{profile.score_identity}".encode())
    for key, tensor in sorted(metric.state_dict().items()):
        digest.update(key.encode())
        digest.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())  # reshape: 0-d buffers too
    return digest.hexdigest()[:16]

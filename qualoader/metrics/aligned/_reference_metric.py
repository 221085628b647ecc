"""Shared base of the metrics computed through a reference network (``feature-distance``, ``bn-shift``)."""

from __future__ import annotations

import hashlib
import json
import os
from typing import Any

import torch
from torch import nn

from qualoader.metrics.base import QualityMetric
from qualoader.reference import ReferenceNetwork, load_reference

__all__ = ["ReferenceMetric", "robust_fingerprint"]


def robust_fingerprint(metric: QualityMetric) -> str:
    """:func:`qualoader.metrics.metric_fingerprint`, also for 0-d tensors (BatchNorm's ``num_batches_tracked``).

    Same recipe (sha256 of name, config, every state tensor's bytes and the calibration state,
    16 hex digits), with every tensor flattened before its bytes are read.
    """
    digest = hashlib.sha256()
    digest.update(json.dumps({"name": metric.name, "config": metric.get_config()}, sort_keys=True, default=str).encode())
    for key, tensor in sorted(metric.state_dict().items()):
        digest.update(key.encode())
        if tensor.numel():
            digest.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    calibration = metric.calibration
    if calibration is not None and hasattr(calibration, "state_dict"):
        digest.update(json.dumps(calibration.state_dict(), sort_keys=True, default=str).encode())
    return digest.hexdigest()[:16]


class ReferenceMetric(QualityMetric):
    """A metric that owns a :class:`~qualoader.reference.ReferenceNetwork` as ``self.network``.

    Args:
        reference: the network: ``None``/``"default"`` (embedded Fashion-MNIST CNN), a
            :class:`ReferenceNetwork`, a torchvision name, ``"timm:<name>"`` or any ``nn.Module``
            (see :func:`qualoader.reference.load_reference`).
        weights: local weights file for ``reference`` (see :func:`~qualoader.reference.load_reference`).
        check_values: validate that float input is finite and in [0, 1].
        **convention: input-convention overrides forwarded to ``load_reference``.
    """


    def __init__(
        self,
        reference: str | nn.Module | None = None,
        *,
        weights: str | os.PathLike[str] | None = None,
        check_values: bool = True,
        **convention: Any,
    ) -> None:
        super().__init__(check_values=check_values)
        self.uses_default_reference = reference is None or (isinstance(reference, str) and reference == "default")
        self.network: ReferenceNetwork = load_reference("default" if reference is None else reference, weights=weights, **convention)

    def attach_default_calibration(self) -> None:
        """Attach the shipped difficulty calibration (fitted against the embedded default), if any."""
        from qualoader.calibration import default_calibration

        self.calibration = default_calibration(self.name)

    def get_config(self) -> dict[str, Any]:
        return {"reference": self.network.get_config()}

    def fingerprint(self) -> str:
        """Hash of name, config, the reference network's weights and the calibration (16 hex digits)."""
        return robust_fingerprint(self)

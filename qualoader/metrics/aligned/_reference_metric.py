"""Shared base of the metrics computed through a reference network (``feature-distance``, ``bn-shift``)."""

from __future__ import annotations

import os
from typing import Any

from torch import nn

from qualoader.metrics.base import QualityMetric
from qualoader.reference import ReferenceNetwork, load_reference

__all__ = ["ReferenceMetric"]


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
        self.network: ReferenceNetwork = load_reference("default" if reference is None else reference, weights=weights, **convention)

    def attach_shipped_calibration(self) -> None:
        """Attach the shipped calibration fitted for this exact configuration, if the package has one.

        Subclasses call it last in ``__init__``, once ``get_config()`` is complete; which
        configurations have one is declared in :data:`qualoader.calibration.SHIPPED_DEFAULTS`.
        """
        from qualoader.calibration.defaults import shipped_calibration

        self.calibration = shipped_calibration(self)

    def get_config(self) -> dict[str, Any]:
        return {"reference": self.network.get_config()}


"""The :class:`Calibration` protocol: what a metric needs from a difficulty calibration.

It lives apart from :mod:`qualoader.calibration` (which runs metrics in its sweeps) so that
:mod:`qualoader.metrics.base` can name it without an import circle; the calibration package
re-exports it as ``qualoader.calibration.Calibration``.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

from torch import Tensor

__all__ = ["Calibration"]


@runtime_checkable
class Calibration(Protocol):
    """What a metric needs from a difficulty calibration.

    ``calibration(scores)`` maps scores :math:`(B,)` to expected errors :math:`(B,)` in [0, 1] on
    the scores' device; ``state_dict()`` is its plain-JSON description (stored beside scores and in
    profiles). :class:`~qualoader.calibration.DifficultyCalibration` is the implementation the
    library fits and ships.
    """

    higher_is_better: bool

    def __call__(self, scores: Tensor) -> Tensor: ...

    def state_dict(self) -> dict[str, Any]: ...

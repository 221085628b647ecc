"""The calibrations the package ships, declared once in a table keyed by metric name.

Each entry names the metric configuration its calibration was fitted for (constructor parameters
and reference network); :func:`shipped_calibration` attaches it to a metric only when the metric
has exactly that configuration, so no constructor tests its own default arguments.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from qualoader._validation import check_type
from qualoader.calibration.mapping import DifficultyCalibration

if TYPE_CHECKING:
    from qualoader.metrics.base import QualityMetric

__all__ = [
    "SHIPPED_DEFAULTS",
    "ShippedDefault",
    "default_calibration",
    "default_calibration_path",
    "shipped_calibration",
]


@dataclass(frozen=True)
class ShippedDefault:
    """A calibration shipped with the package and the metric configuration it belongs to.

    Attributes:
        metric: registry name.
        params: entries of ``metric.get_config()`` the configuration must have (its fitted parameters).
        reference: ``"embedded"`` when the metric must run the embedded default reference network
            (compared by weights hash, so an equal network built another way matches too), ``None``
            for metrics without a reference network.
        asset: file name of the calibration JSON in ``qualoader/assets``.
    """

    metric: str
    params: Mapping[str, Any] = field(default_factory=dict)
    reference: str | None = None
    asset: str = ""


def _table(*entries: ShippedDefault) -> Mapping[str, ShippedDefault]:
    return MappingProxyType({entry.metric: entry for entry in entries})


#: Shipped calibrations, fitted by ``python tools/fit_calibrations.py`` (bn-shift, feature-distance)
#: and with the task-guided head, on a corruption sweep of the Fashion-MNIST TRAIN split.
SHIPPED_DEFAULTS: Mapping[str, ShippedDefault] = _table(
    ShippedDefault("bn-shift", {"divergence": "kl", "variance_floor": 0.01, "layers": None}, "embedded", "calibration_bn-shift.json"),
    ShippedDefault("feature-distance", {"layers": None, "distance": "cosine"}, "embedded", "calibration_feature-distance.json"),
    ShippedDefault("task-guided", {"checkpoint": None}, None, "calibration_task-guided.json"),
)


def default_calibration_path(metric_name: str) -> Path:
    """Where the shipped calibration of ``metric_name`` lives (``qualoader/assets/calibration_<name>.json``)."""
    check_type(metric_name, "metric_name", str, "a metric name (str)")
    entry = SHIPPED_DEFAULTS.get(metric_name)
    asset = entry.asset if entry is not None else f"calibration_{metric_name}.json"
    return Path(str(resources.files("qualoader") / "assets" / asset))


@functools.lru_cache(maxsize=None)
def _shipped_state(path: Path) -> str | None:
    # cached as text: every caller gets its own DifficultyCalibration, so mutating one never leaks
    return path.read_text() if path.is_file() else None


def default_calibration(metric_name: str) -> DifficultyCalibration | None:
    """The shipped calibration of an aligned metric against the embedded default reference.

    Args:
        metric_name: registry name, e.g. ``"feature-distance"``, ``"bn-shift"``, ``"task-guided"``.

    Returns:
        A new calibration object, or ``None`` when the package ships none for that metric.

    Example:
        >>> default_calibration("bn-shift").higher_is_better
        False
    """
    text = _shipped_state(default_calibration_path(metric_name))
    return None if text is None else DifficultyCalibration.from_state_dict(json.loads(text))


@functools.lru_cache(maxsize=1)
def _embedded_reference_hash() -> str:
    from qualoader.reference import default_reference

    return default_reference().weights_hash


def shipped_calibration(metric: QualityMetric) -> DifficultyCalibration | None:
    """The shipped calibration whose configuration ``metric`` has exactly, else ``None``.

    A calibration is only valid for the scores it was fitted on, so any other parameter or
    reference network (even the embedded one with another input convention) gets none.

    Example:
        >>> from qualoader.metrics import create_metric
        >>> shipped_calibration(create_metric("bn-shift")) is not None
        True
        >>> shipped_calibration(create_metric("bn-shift", divergence="mean")) is None
        True
    """
    entry = SHIPPED_DEFAULTS.get(metric.name)
    if entry is None:
        return None
    config = metric.get_config()
    missing = object()
    if any(config.get(key, missing) != value for key, value in entry.params.items()):
        return None
    if entry.reference == "embedded":
        reference = config.get("reference")
        if not isinstance(reference, dict) or reference.get("weights_hash") != _embedded_reference_hash():
            return None
    return default_calibration(metric.name)

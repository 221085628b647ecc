"""The calibrations the package ships, declared once in a table keyed by metric name.

Each entry names the metric configuration its calibration was fitted for (constructor parameters
and reference network), directly or through a shipped quality profile; :func:`shipped_calibration`
attaches it to a metric only when the metric has exactly that configuration, so no constructor
tests its own default arguments.
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
    "SHIPPED_SWEEP",
    "ShippedDefault",
    "default_calibration",
    "default_calibration_path",
    "shipped_calibration",
    "shipped_profile",
]


@dataclass(frozen=True)
class ShippedDefault:
    """A calibration shipped with the package and the metric configuration it belongs to.

    Attributes:
        metric: registry name.
        profile: file name in ``qualoader/assets`` of the quality profile that holds the
            configuration (metric parameters, reference network) and its calibration; or ``None``
            when the entry states them itself (``params``, ``reference``, ``asset``).
        params: entries of ``metric.get_config()`` the configuration must have (its fitted parameters).
        reference: ``"embedded"`` when the metric must run the embedded default reference network
            (compared by weights hash, so an equal network built another way matches too), ``None``
            for a metric whose scores do not depend on it.
        asset: file name of a bare calibration JSON in ``qualoader/assets`` (entries without profile).
    """

    metric: str
    profile: str | None = None
    params: Mapping[str, Any] = field(default_factory=dict)
    reference: str | None = None
    asset: str = ""


def _table(*entries: ShippedDefault) -> Mapping[str, ShippedDefault]:
    # Read-only: patching the table at run time would silently change every metric built afterwards.
    return MappingProxyType({entry.metric: entry for entry in entries})


#: Shipped defaults, keyed by metric. The Fashion-MNIST profiles (``confidence`` too) are rebuilt by ``python tools/fit_calibrations.py``;
#: the task-guided calibration is written with its head by ``python tools/train_task_guided.py``.
SHIPPED_DEFAULTS: Mapping[str, ShippedDefault] = _table(
    ShippedDefault("bn-shift", profile="profile_fashion-mnist_bn-shift.json"),
    ShippedDefault("feature-distance", profile="profile_fashion-mnist_feature-distance.json"),
    ShippedDefault("confidence", profile="profile_fashion-mnist_confidence.json"),
    ShippedDefault("task-guided", params={"checkpoint": None}, asset="calibration_task-guided.json"),
)


#: The corruptions of the sweep that the shipped Fashion-MNIST profiles (``bn-shift``, ``feature-distance``) were
#: calibrated on, as their provenance records: the 17 ImageNet-C corruptions the suite had then (frost and snow came
#: later; the ``extra`` family is held out). Named here, not derived from the suite, so it stays what was fitted.
SHIPPED_SWEEP: tuple[str, ...] = (
    "brightness", "contrast", "defocus_blur", "elastic", "fog", "gaussian_blur", "gaussian_noise", "glass_blur", "impulse_noise",
    "jpeg", "motion_blur", "pixelate", "saturate", "shot_noise", "spatter", "speckle_noise", "zoom_blur",
)


def _asset(name: str) -> Path:
    return Path(str(resources.files("qualoader") / "assets" / name))


def default_calibration_path(metric_name: str) -> Path:
    """The shipped file holding ``metric_name``'s calibration: its profile, or its calibration JSON.

    For a metric without an entry in :data:`SHIPPED_DEFAULTS`, the (absent) ``calibration_<name>.json``.
    """
    check_type(metric_name, "metric_name", str, "a metric name (str)")
    entry = SHIPPED_DEFAULTS.get(metric_name)
    if entry is None:
        return _asset(f"calibration_{metric_name}.json")
    return _asset(entry.profile or entry.asset)


@functools.cache
def _shipped_text(path: Path) -> str | None:
    # cached as text: every caller gets its own objects, so mutating one never leaks
    return path.read_text() if path.is_file() else None


@functools.cache
def _shipped_profile(metric_name: str) -> Any:
    from qualoader.profiles.profile import load_profile

    entry = SHIPPED_DEFAULTS[metric_name]
    # verify=False: the embedded weights are checked against their sha256 when the reference is built
    return load_profile(_asset(str(entry.profile)), verify=False)


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
    check_type(metric_name, "metric_name", str, "a metric name (str)")
    entry = SHIPPED_DEFAULTS.get(metric_name)
    if entry is not None and entry.profile is not None:
        calibration = _shipped_profile(metric_name).calibration
        # A fresh copy: the cached profile's calibration must not be shared by every metric that attaches it.
        return None if calibration is None else DifficultyCalibration.from_state_dict(calibration.state_dict())
    text = _shipped_text(default_calibration_path(metric_name))
    return None if text is None else DifficultyCalibration.from_state_dict(json.loads(text))


@functools.lru_cache(maxsize=1)
def _embedded_reference_hash() -> str:
    from qualoader.reference import default_reference

    return default_reference().weights_hash


def _matches(metric: QualityMetric, entry: ShippedDefault) -> bool:
    if entry.profile is not None:
        profile = _shipped_profile(entry.metric)
        params, embedded = profile.metric.params, profile.reference.source == "embedded"
    else:
        params, embedded = entry.params, entry.reference == "embedded"
    config = metric.get_config()
    # A sentinel rather than None: a config without the key must not match an expected value of None
    # (task-guided expects "checkpoint": None).
    missing = object()
    if any(config.get(key, missing) != value for key, value in params.items()):
        return False
    if embedded:
        reference = config.get("reference")
        return isinstance(reference, dict) and reference.get("weights_hash") == _embedded_reference_hash()
    return True


def shipped_profile(metric: QualityMetric) -> Any:
    """The shipped :class:`~qualoader.profiles.QualityProfile` whose configuration ``metric`` has exactly, else ``None``."""
    entry = SHIPPED_DEFAULTS.get(metric.name)
    if entry is None or entry.profile is None or not _matches(metric, entry):
        return None
    return _shipped_profile(metric.name)


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
    if entry is None or not _matches(metric, entry):
        return None
    return default_calibration(metric.name)

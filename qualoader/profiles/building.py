"""Turn a quality profile into a ready metric, and find the profiles the package ships."""

from __future__ import annotations

import inspect
import os
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

from qualoader._validation import check_type
from qualoader.calibration.mapping import DifficultyCalibration
from qualoader.profiles.profile import ProfileError, QualityProfile, build_reference, load_profile

if TYPE_CHECKING:
    from qualoader.metrics.base import QualityMetric

__all__ = ["default_profile_path", "metric_from_profile"]


def default_profile_path(metric_name: str) -> Path:
    """The shipped Fashion-MNIST profile of an aligned metric, ``qualoader/assets/profile_fashion-mnist_<name>.json``.

    The file may not exist (not every metric ships one); see :data:`qualoader.calibration.SHIPPED_DEFAULTS`.
    """
    check_type(metric_name, "metric_name", str, "a metric name (str)")
    return Path(str(resources.files("qualoader") / "assets" / f"profile_fashion-mnist_{metric_name}.json"))


def metric_from_profile(
    profile: QualityProfile | str | os.PathLike[str],
    name: str | None = None,
    *,
    strict: bool = False,
    check_values: bool = True,
) -> QualityMetric:
    """Build the metric a profile defines: its reference network, parameters, head, calibration and domain.

    Args:
        profile: a :class:`QualityProfile` or the path of its JSON (see :func:`load_profile`).
        name: the metric name the caller expects (``None``: the profile's).
        strict: raise :class:`~qualoader.profiles.DomainError` for images outside the reference's
            input domain instead of warning once.
        check_values: validate that float input is finite and in [0, 1].

    Returns:
        The metric, with ``metric.calibration`` from the profile (``None`` when it has none),
        ``metric.input_domain`` from the profile and ``metric.profile`` set.

    Raises:
        ProfileError: the profile is invalid, its files missing or altered, or ``name`` differs
            from the profile's metric.
        KeyError: the profile names a metric this qualoader does not register.
    """
    from qualoader.metrics.aligned._reference_metric import ReferenceMetric
    from qualoader.metrics.registry import _lookup

    if not isinstance(profile, QualityProfile):
        profile = load_profile(profile)
    if name is not None and name != profile.metric.name:
        raise ProfileError(
            f"name should be the profile's metric {profile.metric.name!r}, but got name={name!r} for the profile {profile.name!r}"
        )
    cls = _lookup(profile.metric.name)
    if not issubclass(cls, ReferenceMetric):
        raise ProfileError(
            f"profile['metric']['name'] should be an aligned metric with a reference network, but got {profile.metric.name!r}"
        )
    accepted = inspect.signature(cls.__init__).parameters
    params = dict(profile.metric.params)
    clash = sorted({"reference", "weights", "checkpoint", "check_values", "strict"} & set(params))
    if clash:
        raise ProfileError(f"profile['metric']['params'] should not set {clash}: the profile itself defines them")
    if profile.head is not None:
        if "checkpoint" not in accepted:
            raise ProfileError(f"profile['head'] should be null for the metric {profile.metric.name!r}, which takes no trained head")
        params["checkpoint"] = str(profile.head.verify("profile['head']"))
    metric = cls(reference=build_reference(profile), check_values=check_values, strict=strict, **params)
    metric.calibration = None if profile.calibration is None else DifficultyCalibration.from_state_dict(profile.calibration.state_dict())
    metric.set_input_domain(profile.reference.domain)
    metric.profile = profile
    return metric

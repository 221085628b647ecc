"""Name -> metric registry (``register_metric``, ``create_metric``, ``list_metrics``).

Names with a ``"<prefix>:"`` (e.g. ``"pyiqa:fsim"``) are routed to a prefix factory registered
with :func:`register_metric_prefix`, so adapters to other libraries share the same entry point.
"""

from __future__ import annotations

import difflib
import inspect
import os
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, TypeVar

import torch

from qualoader._validation import check_type
from qualoader.metrics.base import QualityMetric

if TYPE_CHECKING:
    from qualoader.profiles.schema import QualityProfile

__all__ = [
    "MetricInfo",
    "create_metric",
    "list_metrics",
    "metric_from_profile",
    "metric_info",
    "register_metric",
    "register_metric_prefix",
]

MetricType = TypeVar("MetricType", bound=type[QualityMetric])

_METRICS: dict[str, type[QualityMetric]] = {}
_PREFIXES: dict[str, Callable[..., QualityMetric]] = {}


@dataclass(frozen=True)
class MetricInfo:
    """What a metric is, without building it."""

    name: str
    mode: str  # "NR" (no reference) or "FR" (full reference)
    higher_is_better: bool
    requires_weights: bool
    summary: str
    #: takes a ``downscale`` argument (the classical measures; see
    #: :class:`~qualoader.metrics.classical.ClassicalMetric`).
    accepts_downscale: bool = False


def register_metric(cls: MetricType) -> MetricType:
    """Class decorator adding a :class:`QualityMetric` subclass under ``cls.name``.

    Raises:
        TypeError: ``cls`` is not a ``QualityMetric`` subclass.
        ValueError: the name is empty or already registered.
    """
    if not (isinstance(cls, type) and issubclass(cls, QualityMetric)):
        raise TypeError(f"cls should be a QualityMetric subclass, but got cls={cls!r}")
    if not cls.name or ":" in cls.name:
        raise ValueError(f"cls.name should be a non-empty name without ':', but got cls.name={cls.name!r}")
    if cls.name in _METRICS:
        raise ValueError(
            f"cls.name should be a new metric name, but got cls.name={cls.name!r}, already registered by {_METRICS[cls.name].__qualname__}"
        )
    _METRICS[cls.name] = cls
    return cls


def register_metric_prefix(prefix: str, factory: Callable[..., QualityMetric]) -> None:
    """Route names ``"<prefix>:<rest>"`` to ``factory(rest, **kwargs)``."""
    if prefix in _PREFIXES:
        raise ValueError(f"prefix should be a new prefix, but got prefix={prefix!r}, already registered")
    _PREFIXES[prefix] = factory


def list_metrics(mode: str | None = None) -> list[str]:
    """Sorted names of the registered metrics; ``mode="NR"`` or ``"FR"`` filters by reference need."""
    if mode not in (None, "NR", "FR"):
        raise ValueError(f"mode should be one of {{None, 'FR', 'NR'}}, but got mode={mode!r}")
    return sorted(name for name, cls in _METRICS.items() if mode is None or (mode == "FR") == cls.requires_reference)


def _lookup(name: str) -> type[QualityMetric]:
    check_type(name, "name", str, "a metric name (str)")
    if name not in _METRICS:
        close = difflib.get_close_matches(name, list(_METRICS), n=3)
        hint = f"; did you mean {', '.join(map(repr, close))}?" if close else f"; registered: {', '.join(list_metrics())}"
        raise KeyError(f"name should be a registered metric, but got name={name!r}{hint}")
    return _METRICS[name]


def metric_info(name: str) -> MetricInfo:
    """Describe a registered metric (mode, direction, weights) without constructing it."""
    cls = _lookup(name)
    doc = (cls.__doc__ or "").strip().splitlines()
    return MetricInfo(
        name=cls.name,
        mode="FR" if cls.requires_reference else "NR",
        higher_is_better=cls.higher_is_better,
        requires_weights=cls.requires_weights,
        summary=doc[0] if doc else "",
        # Read from the constructor, not by importing ClassicalMetric: the classical measures import this
        # registry to register themselves, and the registry must not import them back.
        accepts_downscale="downscale" in inspect.signature(cls.__init__).parameters,
    )


def metric_from_profile(
    profile: QualityProfile | str | os.PathLike[str],
    name: str | None = None,
    *,
    strict: bool = False,
    check_values: bool = True,
    trust: bool = False,
) -> QualityMetric:
    """Build the metric a profile defines: its reference network, parameters, head, calibration and domain.

    It lives beside the registry (not in :mod:`qualoader.profiles`) because it looks the metric up by
    name: profiles describe metrics and never import the registry back.

    Args:
        profile: a :class:`~qualoader.profiles.QualityProfile` or the path of its JSON (see
            :func:`~qualoader.profiles.load_profile`).
        name: the metric name the caller expects (``None``: the profile's).
        strict: raise :class:`~qualoader.profiles.DomainError` for images outside the reference's
            input domain instead of warning once.
        check_values: validate that float input is finite and in [0, 1].
        trust: with a path, accept a profile whose reference runs its author's code (see
            :func:`~qualoader.profiles.load_profile`).

    Returns:
        The metric, with ``metric.calibration`` from the profile (``None`` when it has none),
        ``metric.input_domain`` from the profile (checked at the profile's input transform) and
        ``metric.profile`` set.

    Raises:
        ProfileError: the profile is invalid, untrusted, its files missing or altered, or ``name``
            differs from the profile's metric.
        KeyError: the profile names a metric this qualoader does not register.
    """
    from qualoader.calibration.mapping import DifficultyCalibration
    from qualoader.metrics.aligned._reference_metric import ReferenceMetric
    from qualoader.profiles.profile import build_reference, load_profile
    from qualoader.profiles.schema import ProfileError, QualityProfile

    if not isinstance(profile, QualityProfile):
        profile = load_profile(profile, trust=trust)
    if name is not None and name != profile.metric.name:
        raise ProfileError(
            f"name should be the profile's metric {profile.metric.name!r}, but got name={name!r} for the profile {profile.name!r}"
        )
    cls = _lookup(profile.metric.name)
    if not issubclass(cls, ReferenceMetric):
        raise ProfileError(
            f"profile['metric']['name'] should be an aligned metric with a reference network, but got {profile.metric.name!r}"
        )
    # Before the network is built: building a TorchScript reference runs its forward once (the output check).
    if cls.reads_layers and profile.reference.source == "torchscript":
        raise ProfileError(
            f"profile['reference'] should be a plain network for {cls.name!r}, which reads the network's layers, but got a TorchScript "
            "reference, whose layers TorchScript hides; rebuild the profile from a torchvision or timm name with its weights or a "
            "'package.module:function' entry point"
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
    # named after the profile: the guard then knows the user's own profile is in use (and checks sizes against the
    # range of its calibration images, which its transform resized)
    metric.set_input_domain(replace(profile.reference.domain, profile=profile.name))
    metric.profile = profile
    return metric


def create_metric(
    name: str,
    device: str | torch.device | None = None,
    *,
    profile: str | os.PathLike[str] | QualityProfile | None = None,
    trust_profile: bool = False,
    **kwargs: Any,
) -> QualityMetric:
    """Build a metric by name and move it to ``device``.

    Args:
        name: a name from :func:`list_metrics`, or ``"<prefix>:<name>"`` such as ``"pyiqa:fsim"``.
        device: where the metric's kernels live; ``None`` keeps the default (CPU).
        profile: a quality profile (path or :class:`~qualoader.profiles.QualityProfile`) that
            defines the metric's reference network, parameters, head, calibration and input domain
            (see :func:`metric_from_profile`); ``kwargs`` may then only hold ``strict`` and
            ``check_values``.
        trust_profile: accept a ``profile`` path whose reference runs its author's code (an entry
            point or a TorchScript file); see :func:`qualoader.profiles.load_profile`.
        **kwargs: forwarded to the metric's constructor.

    Raises:
        KeyError: unknown name (the message suggests close matches).
        ValueError: with ``profile``, other keyword arguments or a profile of another metric; an
            untrusted profile that would run code.

    Example:
        >>> metric = create_metric("sharpness")
        >>> metric(torch.rand(2, 3, 32, 32)).shape
        torch.Size([2])
    """
    check_type(name, "name", str, "a metric name (str)")
    check_type(trust_profile, "trust_profile", bool, "a bool")
    if profile is not None:
        extra = sorted(set(kwargs) - {"strict", "check_values"})
        if extra:
            raise ValueError(f"kwargs should only be strict and check_values with profile=..., which defines the rest, but got {extra}")
        metric = metric_from_profile(profile, name, trust=trust_profile, **kwargs)
        metric.eval()
        return metric if device is None else metric.to(device)
    prefix, sep, rest = name.partition(":")
    if sep:
        if prefix not in _PREFIXES:
            raise KeyError(f"name should use a known prefix {sorted(_PREFIXES)}, but got name={name!r}")
        metric = _PREFIXES[prefix](rest, device=device, **kwargs)
    else:
        metric = _lookup(name)(**kwargs)
    metric.eval()
    return metric if device is None else metric.to(device)

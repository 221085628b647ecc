"""``--profile PATH`` and ``--strict`` of the scoring commands: metrics defined by quality profiles beside the ``--metric`` names.

A profile (``qualoader calibrate --reference ...``) defines an aligned metric completely (reference
network, transform, parameters, calibration), so ``--profile`` can stand in for ``--metric``. A
``--metric NAME`` that a given profile defines is taken from the profile, not built twice.

An aligned metric warns once (:class:`~qualoader.profiles.DomainWarning`) when images fall far
outside its reference network's input domain; ``--strict`` builds the aligned metrics with
``strict=True``, so such images stop the command with a :class:`~qualoader.profiles.DomainError`,
which the commands report as a one-line user error (exit code 2).
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from qualoader.cli._errors import UserError, as_option, create_cli_metric, user_errors

__all__ = ["add_profile_argument", "cli_metrics"]


def add_profile_argument(parser: argparse.ArgumentParser, *, repeat: bool, scoring: bool = True) -> None:
    """Add ``--profile PATH`` (repeatable for the commands that take several metrics), and ``--strict`` and ``--downscale``.

    ``scoring=False`` leaves out ``--strict`` and ``--downscale``, which only act on images being
    scored, for the commands that read stored scores (``export``).
    """
    parser.add_argument(
        "--profile",
        type=Path,
        action="append" if repeat else "store",
        default=[] if repeat else None,
        metavar="PATH",
        help="quality profile JSON (from 'qualoader calibrate') defining an aligned metric" + ("; repeat for several" if repeat else ""),
    )
    if not scoring:
        return
    parser.add_argument(
        "--strict",
        action="store_true",
        help="stop with an error when images fall far outside an aligned metric's reference domain (default: warn once)",
    )
    parser.add_argument(
        "--downscale",
        type=int,
        default=1,
        metavar="F",
        help="score sharpness, gradient-energy and noise on the luma averaged over F x F blocks (1, 2 or 4; default 1: full "
        "resolution; the other classical measures always read every pixel); their scores change scale and are stored apart",
    )


def _is_registered(name: str, kind: type) -> bool:
    """Whether the registered metric ``name`` is a ``kind`` subclass; prefixed (pyiqa:...) and unknown names are not
    (unknown ones are left to create_metric, which names them)."""
    from qualoader.metrics.registry import _lookup

    if ":" in name:
        return False
    try:
        return issubclass(_lookup(name), kind)
    except KeyError:
        return False


def _checks_domain(name: str) -> bool:
    """Whether ``name`` is an aligned metric (one that takes ``strict``)."""
    from qualoader.metrics.aligned._reference_metric import ReferenceMetric

    return _is_registered(name, ReferenceMetric)


def _accepts_downscale(name: str) -> bool:
    """Whether ``name`` is a classical measure (one that takes ``downscale``)."""
    from qualoader.metrics.classical import ClassicalMetric

    return _is_registered(name, ClassicalMetric)


def _metric_names(values: Sequence[str] | None) -> list[str]:
    """``--metric`` values (each a name, ``a,b,c`` or a suite such as ``classical``) as distinct metric names."""
    from qualoader.engine import parse_metric_spec  # the one parser of metric specifications

    if not values:
        return []
    try:
        return parse_metric_spec(list(values))
    except (KeyError, ValueError, TypeError) as error:
        raise as_option(error, "spec", "--metric") from error


def cli_metrics(
    names: Sequence[str] | None,
    profiles: Sequence[Path] | Path | None,
    device: str | None = None,
    *,
    strict: bool = False,
    downscale: int = 1,
) -> list[Any]:
    """The metrics of ``--metric`` names and ``--profile`` paths, in that order, no-reference only.

    With ``strict`` (``--strict``), the aligned metrics among them raise
    :class:`~qualoader.profiles.DomainError` for images far outside their reference's domain.
    ``downscale`` (``--downscale``) is given to the metrics that take it (the classical measures).

    Raises:
        UserError: neither is given, a profile is invalid or altered, two profiles define the same
            metric name, or a metric needs a clean reference image.
    """
    from qualoader.metrics import create_metric
    from qualoader.profiles import load_profile

    names = _metric_names(names)
    paths = [profiles] if isinstance(profiles, Path) else list(profiles or [])
    if not names and not paths:
        raise UserError("--metric or --profile should name at least one metric, but got neither")
    by_name: dict[str, Any] = {}
    for path in paths:
        with user_errors():
            profile = load_profile(path)  # the weights' sha256 is checked here, before any file is written
            metric = create_metric(profile.metric.name, device=device, profile=profile, strict=strict)
        if metric.name in by_name:
            raise UserError(
                f"--profile should define each metric once, but got two profiles of {metric.name!r} (the second is {str(path)!r})"
            )
        if metric.requires_reference:
            raise UserError(
                f"--profile should define a no-reference metric (this command has no clean reference image), but got {str(path)!r} of "
                f"{metric.name!r}"
            )
        by_name[metric.name] = metric
    from qualoader.metrics.classical._features import check_downscale

    try:
        check_downscale(downscale)
    except (TypeError, ValueError) as error:
        raise as_option(error, "downscale", "--downscale") from error
    if downscale != 1 and not any(_accepts_downscale(name) for name in names):
        raise UserError(f"--downscale applies to the classical measures, but got --downscale={downscale} and none of them in --metric")
    metrics = [
        by_name.pop(name)
        if name in by_name
        else create_cli_metric(
            name,
            device=device,
            **({"strict": True} if strict and _checks_domain(name) else {}),
            **({"downscale": downscale} if downscale != 1 and _accepts_downscale(name) else {}),
        )
        for name in names
    ]
    return metrics + list(by_name.values())

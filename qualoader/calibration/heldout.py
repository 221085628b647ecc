"""Fit a difficulty calibration on one part of a labelled set and measure it on a seeded held-out part.

A calibration is only worth storing when its fit can be measured: the reference network must make
some errors and get some images right on both parts (an error rate of 0 or 1 leaves the AUROC
undefined and the map constant), and every figure must be finite. :func:`fit_held_out` refuses
anything else with a ``ValueError`` that says why, so no NaN ever reaches a profile.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from qualoader._validation import check_choice, check_images, check_type
from qualoader.calibration.fit import calibration_report
from qualoader.calibration.mapping import CALIBRATION_METHODS, DifficultyCalibration
from qualoader.calibration.sweep import corruption_sweep, reference_errors
from qualoader.metrics.base import QualityMetric

__all__ = ["check_error_rate", "fit_held_out", "held_out_split"]


def held_out_split(n: int, holdout: float, seed: int) -> tuple[Tensor, Tensor]:
    """Seeded split of ``range(n)`` into ``(fit, held_out)`` index tensors, both non-empty and sorted.

    Args:
        n: number of items (at least 2).
        holdout: fraction in (0, 1) that goes to the held-out part (at least one item each side).
        seed: seeds the permutation (the same seed gives the same split).

    Example:
        >>> fit, held = held_out_split(10, 0.3, seed=0)
        >>> len(fit), len(held), sorted(set(fit.tolist()) | set(held.tolist())) == list(range(10))
        (7, 3, True)
    """
    check_type(n, "n", int, "an int")
    if n < 2:
        raise ValueError(f"n should be at least 2 images to hold some out, but got n={n}")
    if isinstance(holdout, bool) or not isinstance(holdout, (int, float)) or not 0.0 < holdout < 1.0:
        raise ValueError(f"holdout should be a fraction in (0, 1), but got holdout={holdout!r}")
    held = min(max(1, round(n * holdout)), n - 1)
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    # Sorted: each part keeps the dataset's order, so only membership depends on the seed.
    return order[held:].sort().values, order[:held].sort().values


def check_error_rate(errors: Tensor, part: str) -> float:
    """The error rate of ``errors`` ``(N,)`` (0/1), refused unless strictly between 0 and 1 (a fit needs both)."""
    rate = float(errors.mean())
    if rate in (0.0, 1.0):
        what = "no image right" if rate == 1.0 else "no error"
        hint = (
            "check that the labels match the network's label set and its input transform (size, channels, mean/std)"
            if rate == 1.0
            else "use more images, harder data or higher --severities"
        )
        raise ValueError(
            f"the reference network's error rate on the {part} sweep should be strictly between 0 and 1 to fit a difficulty, "
            f"but got error_rate={rate:g} ({what} in {errors.numel()} scored images); {hint}"
        )
    return rate


def fit_held_out(
    metric: QualityMetric,
    images: Tensor,
    labels: Tensor,
    reference: nn.Module,
    corruptions: Sequence[str] | None = None,
    severities: Sequence[int] = (0, 1, 2, 3, 4, 5),
    *,
    holdout: float = 0.3,
    seed: int = 0,
    method: str = "isotonic",
    batch_size: int = 500,
    progress: bool = False,
) -> tuple[DifficultyCalibration, dict[str, Any]]:
    """Fit ``metric``'s difficulty on a corruption sweep of one part of the images, report it on the rest.

    Args:
        metric: the metric to calibrate (its scores are the calibration's input).
        images: clean images :math:`(N, C, H, W)`, uint8 or float in [0, 1].
        labels: class indices :math:`(N,)` of ``reference``'s outputs.
        reference: the reference network whose errors are the target.
        corruptions: corruption names (default: all).
        severities: severities in 0..5 (0: the clean images).
        holdout: fraction of the images held out (see :func:`held_out_split`).
        seed: seeds the split and the corruptions.
        method: ``"isotonic"`` or ``"logistic"``.
        batch_size: images per forward pass.
        progress: progress bars over the sweeps.

    Returns:
        ``(calibration, figures)``: ``figures`` holds ``held_out`` and ``fit`` (AUROC of the
        difficulty for the reference's errors, Brier, Brier of the base rate, error rate, rows),
        ``clean_error_rate`` (the reference's error on the clean held-out images) and the image counts.

    Raises:
        ValueError: labels outside the network's outputs, an error rate of 0 or 1 on either part, or
            any undefined (non-finite) figure; the message says which.
    """
    check_choice(method, "method", CALIBRATION_METHODS)
    images = check_images(images)
    check_type(labels, "labels", Tensor, "a torch.Tensor of class indices (N,)")
    with torch.no_grad():
        # One image, to learn the number of outputs before the slow sweep: a label the network cannot
        # predict would just count as an error every time and inflate the error rate silently.
        outputs = reference(images[:1]).shape[-1]
    if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= outputs):
        raise ValueError(
            f"labels should be class indices in [0, {outputs}) for a network with {outputs} outputs, but got labels in "
            f"[{int(labels.min())}, {int(labels.max())}]"
        )
    fit_index, held_index = held_out_split(int(images.shape[0]), holdout, seed)
    # one generator per part, both from seed: the held-out corruptions do not depend on the fit part's size
    fit_sweep = corruption_sweep(
        metric,
        images[fit_index],
        labels[fit_index],
        reference,
        corruptions,
        severities,
        torch.Generator().manual_seed(seed),
        batch_size,
        progress,
    )
    held_sweep = corruption_sweep(
        metric,
        images[held_index],
        labels[held_index],
        reference,
        corruptions,
        severities,
        torch.Generator().manual_seed(seed + 1),
        batch_size,
        progress,
    )
    # Both parts are checked before fitting, so a failure names the part and the cause instead of
    # surfacing later as a NaN AUROC in the report.
    for part, sweep in (("fit", fit_sweep), ("held-out", held_sweep)):
        bad = int((~torch.isfinite(sweep.scores)).sum())
        if bad:
            raise ValueError(
                f"scores of {metric.name!r} on the {part} sweep should be finite, but got {bad} NaN/Inf scores of {sweep.scores.numel()}"
            )
        check_error_rate(sweep.errors, part)
    info = {
        "metric": metric.name,
        "corruptions": list(fit_sweep.names),
        "severities": sorted(set(severities)),
        # What the map was fitted on: the fit part only, not the images the caller passed.
        "n_images": int(fit_index.numel()),
    }
    calibration = DifficultyCalibration.fit(fit_sweep.scores, fit_sweep.errors, metric.higher_is_better, method, info)
    figures: dict[str, Any] = {}
    for part, sweep in (("fit", fit_sweep), ("held_out", held_sweep)):
        report = calibration_report(calibration(sweep.scores), sweep.errors)
        undefined = sorted(key for key, value in report.items() if not math.isfinite(value))
        if undefined:
            raise ValueError(
                f"the {part.replace('_', '-')} fit statistics should all be defined, but got {undefined} undefined (NaN) for "
                f"{sweep.errors.numel()} rows"
            )
        figures[part] = {**{key: round(value, 6) for key, value in report.items()}, "rows": int(sweep.errors.numel())}
    figures["clean_error_rate"] = round(float(reference_errors(reference, images[held_index], labels[held_index]).mean()), 6)
    figures["n_fit"], figures["n_held_out"] = int(fit_index.numel()), int(held_index.numel())
    calibration.info["fit"] = figures["fit"]
    return calibration, figures

"""Fit a metric's difficulty calibration on a corruption sweep, and measure how well a prior fits."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor, nn

from qualoader._validation import check_choice, check_type
from qualoader.calibration.mapping import CALIBRATION_METHODS, DifficultyCalibration
from qualoader.calibration.sweep import corruption_sweep
from qualoader.metrics.base import QualityMetric
from qualoader.stats import auroc

__all__ = ["calibrate_metric", "calibration_report"]


def calibrate_metric(
    metric: QualityMetric,
    images: Tensor,
    labels: Tensor,
    reference: nn.Module,
    corruptions: Sequence[str] | None = None,
    severities: Sequence[int] = (0, 1, 2, 3, 4, 5),
    generator: torch.Generator | None = None,
    method: str = "isotonic",
    batch_size: int = 500,
    progress: bool = False,
) -> DifficultyCalibration:
    """Fit a metric's difficulty prior on a corruption sweep (see :func:`~qualoader.calibration.corruption_sweep`).

    The target is the reference network's error ``1 - correct`` on every corrupted image.
    ``progress`` shows a progress bar over the sweep's batches.

    Returns:
        The fitted calibration (attach it with ``metric.calibration = cal``); its ``info`` records
        the metric, sweep and in-sample fit quality (:func:`calibration_report`).

    Example:
        >>> from qualoader.datasets import load_fashion_mnist
        >>> from qualoader.metrics import create_metric
        >>> from qualoader.reference import default_reference
        >>> images, labels = load_fashion_mnist("test")
        >>> cal = calibrate_metric(
        ...     create_metric("sharpness"), images[:200], labels[:200], default_reference(),
        ...     corruptions=["gaussian_noise"], severities=(0, 3), generator=torch.Generator().manual_seed(0),
        ... )
        >>> cal(torch.tensor([0.001, 0.1])).shape
        torch.Size([2])
    """
    check_choice(method, "method", CALIBRATION_METHODS)
    sweep = corruption_sweep(metric, images, labels, reference, corruptions, severities, generator, batch_size, progress)
    info = {
        "metric": metric.name,
        # The weights' hash when the network has one: two networks of one class differ only in their weights.
        "reference": str(getattr(reference, "weights_hash", type(reference).__name__)),
        "corruptions": list(sweep.names),
        "severities": sorted(set(severities)),
        "n_images": int(images.shape[0]),
    }
    calibration = DifficultyCalibration.fit(sweep.scores, sweep.errors, metric.higher_is_better, method, info)
    # In-sample, so optimistic; fit_held_out measures on images the fit never saw.
    calibration.info["fit"] = calibration_report(calibration(sweep.scores), sweep.errors)
    return calibration


def calibration_report(predicted: Tensor, errors: Tensor) -> dict[str, float]:
    """Fit quality of a difficulty prior against observed errors.

    Args:
        predicted: expected errors :math:`(N,)` in [0, 1].
        errors: observed errors :math:`(N,)`, 0 or 1.

    Returns:
        ``brier`` (mean squared error), ``brier_base`` (Brier of predicting the base rate),
        ``auroc`` (probability that an erroneous image gets a higher prior than a correct one,
        ties counted half, from :func:`qualoader.stats.auroc`; NaN when only one class is present),
        and ``error_rate``.

    Raises:
        TypeError: an argument is not a tensor.
        ValueError: shapes differ or are not 1-D; ``errors`` is not 0/1; NaN in ``predicted``.
    """
    check_type(predicted, "predicted", Tensor, "a torch.Tensor (N,)")
    check_type(errors, "errors", Tensor, "a torch.Tensor (N,)")
    if predicted.shape != errors.shape or predicted.ndim != 1:
        raise ValueError(
            f"errors should have the 1-D shape of predicted {tuple(predicted.shape)}, but got errors.shape={tuple(errors.shape)}"
        )
    p = predicted.detach().to("cpu", torch.float64).numpy()
    e = errors.detach().to("cpu", torch.float64).numpy()
    rate = float(e.mean())
    return {
        "auroc": auroc(p, e),
        "brier": float(np.mean((p - e) ** 2)),
        # Always predicting the base rate p scores p(1 - p) on 0/1 targets: the bar a useful prior must beat.
        "brier_base": rate * (1 - rate),
        "error_rate": rate,
    }

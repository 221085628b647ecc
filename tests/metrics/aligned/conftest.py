"""A shared corruption sweep of real Fashion-MNIST test images, scored once by the aligned metrics."""

from __future__ import annotations

import pytest
import torch

from qualoader.metrics import create_metric

#: Real test images per corruption and severity (every 50th of the 10,000, so all classes appear).
SWEEP_IMAGES = 200


@pytest.fixture(scope="session")
def severity_sweep(fashion_mnist_test) -> dict[str, dict[str, list[float]]]:
    """``{metric: {corruption: [mean score at severity 1..5]}}`` for ``feature-distance`` and ``bn-shift``."""
    from qualoader.corruptions import corrupt, list_corruptions

    clean = fashion_mnist_test[0][:: 10000 // SWEEP_IMAGES][:SWEEP_IMAGES].float() / 255
    metrics = {name: create_metric(name) for name in ("feature-distance", "bn-shift")}
    curves: dict[str, dict[str, list[float]]] = {name: {} for name in metrics}
    for corruption in list_corruptions():
        means: dict[str, list[float]] = {name: [] for name in metrics}
        for severity in range(1, 6):
            generator = torch.Generator().manual_seed(severity)
            corrupted = corrupt(clean, corruption, severity, generator=generator).clamp(0.0, 1.0)
            means["feature-distance"].append(float(metrics["feature-distance"](corrupted, clean).mean()))
            means["bn-shift"].append(float(metrics["bn-shift"](corrupted).mean()))
        for name in metrics:
            curves[name][corruption] = means[name]
    return curves

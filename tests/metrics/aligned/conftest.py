"""Real Fashion-MNIST test images for the aligned metrics, and a corruption sweep scored once by them."""

from __future__ import annotations

from itertools import pairwise

import pytest
import torch
from torch import Tensor

from qualoader.metrics import create_metric
from qualoader.metrics.aligned.feature_distance import feature_distance, pooled_features

#: Real test images per corruption and severity (every 50th of the 10,000, so all classes appear).
SWEEP_IMAGES = 200


@pytest.fixture(scope="module")
def clean(fashion_mnist_test) -> Tensor:
    """The first 32 real test images, ``(32, 1, 28, 28)`` float32 in [0, 1]."""
    return fashion_mnist_test[0][:32].float() / 255


@pytest.fixture(scope="session")
def severity_sweep(fashion_mnist_test) -> dict[str, dict[str, list[float]]]:
    """``{metric: {corruption: [mean score at severity 1..5]}}`` for ``feature-distance`` and ``bn-shift``.

    ``feature-distance`` reuses the clean images' features across the sweep (``clean_features``),
    which gives the metric's scores with one forward pass per corrupted batch.
    """
    from qualoader.corruptions import corrupt, list_corruptions

    clean = fashion_mnist_test[0][:: 10000 // SWEEP_IMAGES][:SWEEP_IMAGES].float() / 255
    distance, shift = create_metric("feature-distance"), create_metric("bn-shift")
    reference_features = pooled_features(distance.network, clean)
    curves: dict[str, dict[str, list[float]]] = {"feature-distance": {}, "bn-shift": {}}
    for corruption in list_corruptions():
        batches = [corrupt(clean, corruption, severity, generator=torch.Generator().manual_seed(severity)) for severity in range(1, 6)]
        curves["feature-distance"][corruption] = [
            float(feature_distance(distance.network, batch, clean_features=reference_features).mean()) for batch in batches
        ]
        curves["bn-shift"][corruption] = [float(shift(batch).mean()) for batch in batches]
    return curves


@pytest.fixture(scope="session")
def increasing_with_severity(severity_sweep) -> dict[str, list[str]]:
    """``{metric: sorted names of the corruptions whose mean score strictly increases from severity 1 to 5}``."""
    return {
        metric: sorted(name for name, curve in curves.items() if all(b > a for a, b in pairwise(curve)))
        for metric, curves in severity_sweep.items()
    }

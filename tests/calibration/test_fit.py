"""calibration_report (AUROC from qualoader.stats) and calibrate_metric on a real corruption sweep."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from qualoader.calibration import DifficultyCalibration, calibrate_metric, calibration_report, corruption_sweep
from qualoader.stats import auroc


def test_calibration_report_auroc_and_brier() -> None:
    report = calibration_report(torch.tensor([0.9, 0.8, 0.2, 0.1]), torch.tensor([1.0, 1.0, 0.0, 0.0]))
    assert report["auroc"] == 1.0 and math.isclose(report["brier"], (0.01 + 0.04 + 0.04 + 0.01) / 4, rel_tol=1e-6)
    flipped = calibration_report(torch.tensor([0.1, 0.2, 0.8, 0.9]), torch.tensor([1.0, 1.0, 0.0, 0.0]))
    assert flipped["auroc"] == 0.0
    tied = calibration_report(torch.full((4,), 0.5), torch.tensor([1.0, 0.0, 1.0, 0.0]))
    assert tied["auroc"] == 0.5
    assert math.isnan(calibration_report(torch.zeros(3), torch.zeros(3))["auroc"])
    with pytest.raises(ValueError, match="shape of predicted"):
        calibration_report(torch.zeros(3), torch.zeros(4))


def test_calibration_report_agrees_with_stats(synthetic) -> None:
    _, errors, probability = synthetic(True, n=3000, seed=4)
    report = calibration_report(probability, errors)
    assert report["auroc"] == auroc(probability.numpy(), errors.numpy())
    assert report["error_rate"] == pytest.approx(float(errors.mean()))
    assert report["brier"] == pytest.approx(float(np.mean((probability.numpy() - errors.numpy()) ** 2)))


def test_calibrate_metric_fits_the_sweep(fashion_mnist_test, intensity_classifier, toy_sharpness) -> None:
    from qualoader.corruptions import list_corruptions

    images = fashion_mnist_test[0][:40]
    labels = intensity_classifier(images.float() / 255).argmax(dim=1)
    names = list_corruptions()[:3]
    sweep = corruption_sweep(
        toy_sharpness, images, labels, intensity_classifier, names, (0, 2, 5), torch.Generator().manual_seed(0), batch_size=16
    )
    calibration = calibrate_metric(
        toy_sharpness, images, labels, intensity_classifier, names, (0, 2, 5), torch.Generator().manual_seed(0), batch_size=16
    )
    assert calibration.higher_is_better and calibration.info["metric"] == "toy-sharpness"
    assert calibration.info["corruptions"] == list(names) and calibration.info["n_fit"] == sweep.scores.numel()
    assert torch.equal(calibration(sweep.scores), DifficultyCalibration.fit(sweep.scores, sweep.errors, True)(sweep.scores))
    assert calibration.info["fit"] == calibration_report(calibration(sweep.scores), sweep.errors)
    with pytest.raises(ValueError, match="method should be one of"):
        calibrate_metric(toy_sharpness, images, labels, intensity_classifier, names, method="spline")

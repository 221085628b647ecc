"""Tests of ``qualoader calibrate``: small end-to-end runs on real Fashion-MNIST and bad arguments."""

from __future__ import annotations

import json

import pytest
import torch

from qualoader.calibration import DifficultyCalibration
from qualoader.cli import build_parser, main
from qualoader.corruptions import list_corruptions
from qualoader.datasets import load_fashion_mnist
from qualoader.metrics import create_metric

SMALL = ["--max-images", "6", "--severities", "0", "4", "--seed", "3"]


@pytest.fixture
def corruptions(fashion_mnist_test) -> list[str]:  # the fixture skips off CI when the dataset is missing
    return ["--corruptions", *list_corruptions()[:2]]


def test_task_guided_writes_loadable_checkpoint_and_recipe(tmp_path, corruptions, capsys) -> None:
    out = tmp_path / "head.pt"
    assert main(["calibrate", "--metric", "task-guided", "--out", str(out), "--steps", "20", *SMALL, *corruptions]) == 0
    summary = json.loads(capsys.readouterr().out)
    recipe = json.loads(out.with_suffix(".json").read_text())
    assert summary["checkpoint"] == str(out) and recipe["n_images"] == 6 and recipe["seed"] == 3
    assert recipe["n_rows"] == 6 * 3 and recipe["split"] == "train"
    metric = create_metric("task-guided", checkpoint=out)
    images, _ = load_fashion_mnist("test")
    assert metric(images[:4]).shape == (4,)
    assert isinstance(metric.calibration, DifficultyCalibration)


def test_metric_calibration_json_is_reproducible(tmp_path, corruptions) -> None:
    first, second = tmp_path / "a.json", tmp_path / "b.json"
    for out in (first, second):
        assert main(["calibrate", "--metric", "bn-shift", "--out", str(out), "--method", "logistic", *SMALL, *corruptions]) == 0
    calibration = DifficultyCalibration.load(first)
    assert calibration == DifficultyCalibration.load(second)
    assert calibration.method == "logistic" and calibration.info["metric"] == "bn-shift"
    assert calibration.info["n_fit"] == 6 * 3
    prior = calibration(torch.linspace(-10, 10, 50))
    assert bool(((prior >= 0) & (prior <= 1)).all())


def test_bad_arguments(tmp_path, corruptions) -> None:
    with pytest.raises(KeyError, match="registered metric"):
        main(["calibrate", "--metric", "no-such-metric", "--out", str(tmp_path / "x.json"), *SMALL, *corruptions])
    with pytest.raises(ValueError, match="--max-images should be a positive int"):
        main(["calibrate", "--metric", "bn-shift", "--out", str(tmp_path / "x.json"), "--max-images", "0"])
    with pytest.raises(FileNotFoundError, match="--out should be in an existing folder"):
        main(["calibrate", "--metric", "bn-shift", "--out", str(tmp_path / "no" / "x.json"), *SMALL])
    with pytest.raises(ValueError, match="severities should be ints in 0..5"):
        main(["calibrate", "--metric", "bn-shift", "--out", str(tmp_path / "x.json"), *SMALL[:2], "--severities", "0", "9"])
    with pytest.raises(SystemExit):
        build_parser().parse_args(["calibrate", "--out", "x.json"])  # --metric is required

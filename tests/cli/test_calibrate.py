"""Tests of ``qualoader calibrate``: small end-to-end runs on real Fashion-MNIST and bad arguments."""

from __future__ import annotations

import json

import pytest
import torch

from qualoader.calibration import DifficultyCalibration
from qualoader.cli import main
from qualoader.corruptions import list_corruptions
from qualoader.datasets import load_fashion_mnist
from qualoader.metrics import create_metric

SMALL = ["--max-images", "6", "--severities", "0", "4", "--seed", "3"]


@pytest.fixture
def corruptions() -> list[str]:
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


def test_imagenet_c_names_are_aliases(tmp_path) -> None:
    ours, theirs = tmp_path / "ours.json", tmp_path / "theirs.json"
    assert main(["calibrate", "--metric", "brightness", "--out", str(ours), *SMALL, "--corruptions", "jpeg", "elastic"]) == 0
    assert (
        main(
            [
                "calibrate",
                "fashion-mnist:train",
                "--metric",
                "brightness",
                "--out",
                str(theirs),
                *SMALL,
                "--corruptions",
                "jpeg_compression",
                "elastic_transform",
            ]
        )
        == 0
    )
    calibration = DifficultyCalibration.load(theirs)
    assert calibration == DifficultyCalibration.load(ours) and calibration.info["corruptions"] == ["jpeg", "elastic"]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--metric", "no-such-metric"], "--metric should be a registered metric, but got --metric='no-such-metric'"),
        (["--metric", "bn-shif"], "did you mean 'bn-shift'?"),
        (["--metric", "bn-shift", "--max-images", "0"], "--max-images should be a positive int, but got --max-images=0"),
        (["--metric", "bn-shift", "--corruptions", "jpeg_compresion"], "did you mean 'jpeg_compression'?"),
        (["fashion-mnist:test", "--metric", "bn-shift", "--split", "train"], "--split should agree with SOURCE"),
        (["--metric", "bn-shift", "--reference", "no_such_torchvision_model"], "--reference should be"),
    ],
)
def test_bad_arguments(tmp_path, argv, message, capsys) -> None:
    assert main(["calibrate", *argv, "--out", str(tmp_path / "x.json")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("qualoader calibrate: error: ") and message in err and err.count("\n") == 1
    assert not (tmp_path / "x.json").exists()


def test_out_creates_its_folder(tmp_path, capsys) -> None:
    out = tmp_path / "new" / "deeper" / "x.json"
    assert main(["calibrate", "--metric", "bn-shift", "--out", str(out), *SMALL, "--corruptions", "gaussian_noise"]) == 0
    assert json.loads(out.read_text())["info"]["metric"] == "bn-shift"
    capsys.readouterr()
    assert main(["calibrate", "--out", str(tmp_path / "x.json"), *SMALL]) == 2  # --metric is required without --profile
    assert "--metric should name the metric to calibrate, but got no --metric" in capsys.readouterr().err


def test_parser_errors_take_one_line(tmp_path, capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:  # argparse's own errors end the process, with exit code 2
        main(["calibrate", "--metric", "bn-shift", "--severities", "0", "9", "--out", str(tmp_path / "x.json")])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert (
        err
        == "qualoader calibrate: error: argument --severities: invalid choice: 9 (choose from 0, 1, 2, 3, 4, 5) (see 'qualoader calibrate "
        "--help')\n"
    )

"""``qualoader export --flags``: one yes/no column per quality flag, thresholds stated, one-line errors naming the option."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from qualoader.cli import main
from qualoader.corruptions import corrupt
from qualoader.data import ScoreStore
from qualoader.flags import FLAG_RULES, fit_threshold
from qualoader.metrics import create_metric

_BLURRED = (2, 9)
_DARK = (5,)


@pytest.fixture
def store(tmp_path: Path, photos: torch.Tensor) -> Path:
    """A store of the sharpness, noise and brightness of 15 real photos, two of them blurred and one darkened hard."""
    images = photos.clone()
    generator = torch.Generator().manual_seed(0)
    for index in _BLURRED:
        images[index : index + 1] = corrupt(images[index : index + 1], "gaussian_blur", 5, generator)
    for index in _DARK:
        images[index : index + 1] = corrupt(images[index : index + 1], "low_light", 5, generator)
    root = tmp_path / "store"
    scores = ScoreStore(root, length=len(images))
    for name in ("sharpness", "noise", "brightness"):
        metric = create_metric(name)
        scores.table(metric, create=True).write(list(range(len(images))), metric(images).tolist())
    return root


def test_flags_columns_and_thresholds(store: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    capsys.readouterr()
    output = tmp_path / "scores.csv"
    assert main(["export", str(store), "-o", str(output), "--flags"]) == 0
    out = capsys.readouterr().out
    with output.open(newline="") as file:
        rows = list(csv.DictReader(file))
    assert [name for name in rows[0] if name.startswith("flag_")] == ["flag_blurry", "flag_noisy", "flag_dark", "flag_light"]
    blurry = [k for k, row in enumerate(rows) if row["flag_blurry"] == "True"]
    assert set(_BLURRED) <= set(blurry) and len(blurry) <= len(_BLURRED) + 1
    dark = [k for k, row in enumerate(rows) if row["flag_dark"] == "True"]
    assert set(_DARK) <= set(dark) and len(dark) <= len(_DARK) + 1  # one of the 15 photos is dark by nature
    # the threshold stated is the one the rows follow, and the one the robust fit gives on these scores
    sidecar = json.loads((tmp_path / "scores.csv.flags.json").read_text())
    by_flag = {entry["flag"]: entry for entry in sidecar["thresholds"]}
    sharpness = np.array([float(row["sharpness"]) for row in rows])
    assert by_flag["blurry"]["threshold"] == pytest.approx(fit_threshold(sharpness, FLAG_RULES["blurry"]))
    assert [bool(v) for v in sharpness < by_flag["blurry"]["threshold"]] == [row["flag_blurry"] == "True" for row in rows]
    assert "jpeg" in sidecar["skipped"] and "flags: blurry: sharpness < " in out and "(fitted, median - 3 x MAD)" in out


def test_user_threshold_and_selection(store: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    output = tmp_path / "scores.jsonl"
    assert main(["export", str(store), "-o", str(output), "--flags", "dark=0.3", "--flags", "blurry"]) == 0
    rows = [json.loads(line) for line in output.read_text().splitlines()]
    assert [name for name in rows[0] if name.startswith("flag_")] == ["flag_dark", "flag_blurry"]
    rows_brightness = np.array([row["brightness"] for row in rows])
    assert [row["flag_dark"] for row in rows] == (rows_brightness < 0.3).tolist()
    assert isinstance(rows[0]["flag_dark"], bool)
    assert "dark: brightness < 0.3 (user)" in capsys.readouterr().out


def test_parquet_flags_are_booleans(store: Path, tmp_path: Path) -> None:
    import pandas as pd

    assert main(["export", str(store), "-o", str(tmp_path / "s.parquet"), "--flags", "blurry"]) == 0
    frame = pd.read_parquet(tmp_path / "s.parquet")
    assert frame["flag_blurry"].dtype == bool and set(np.flatnonzero(frame["flag_blurry"].to_numpy())) >= set(_BLURRED)


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        ("blury", "--flags should be among blurry, clipped, dark"),
        ("blurry=nan", "--flags should give thresholds as finite numbers"),
        ("dark=inf", "--flags should give thresholds as finite numbers"),
        ("jpeg", "--flags should name flags whose measure is among the columns"),
        ("hard", "--flags should name flags whose measure is among the columns"),
    ],
)
def test_bad_flags_are_one_line_errors(store: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], flags: str, message: str) -> None:
    capsys.readouterr()
    output = tmp_path / "a.csv"
    assert main(["export", str(store), "-o", str(output), "--flags", flags]) == 2
    err = capsys.readouterr().err
    assert err.startswith("qualoader export: error: ") and message in err and err.count("\n") == 1, err
    assert not output.exists() and not Path(f"{output}.flags.json").exists()


def test_hard_flag_reads_an_aligned_metrics_calibrated_difficulty(
    tmp_path: Path, fashion_mnist_test: tuple[torch.Tensor, torch.Tensor], capsys: pytest.CaptureFixture[str]
) -> None:
    from qualoader.calibration import DifficultyCalibration
    from qualoader.reference import default_reference

    images, labels = fashion_mnist_test
    images, labels = images[:300], labels[:300]
    degraded = images.float().div(255.0)
    degraded[::3] = corrupt(degraded[::3], "gaussian_noise", 5, torch.Generator().manual_seed(0))
    with torch.no_grad():
        errors = (default_reference()(degraded).argmax(1) != labels).double()
    metric = create_metric("confidence")
    scores = metric(degraded).double()
    # the network's own errors on these images: a real calibration, whose difficulty the store's header keeps
    metric.calibration = DifficultyCalibration.fit(scores, errors, higher_is_better=metric.higher_is_better)
    root = tmp_path / "store"
    ScoreStore(root, length=len(images)).table(metric, create=True).write(list(range(len(images))), scores.tolist())
    output = tmp_path / "scores.csv"
    assert main(["export", str(root), "-o", str(output), "--flags", "hard"]) == 0
    with output.open(newline="") as file:
        rows = list(csv.DictReader(file))
    difficulty = np.array([float(row["confidence_difficulty"]) for row in rows])
    threshold = fit_threshold(difficulty, FLAG_RULES["hard"])
    hard = np.array([row["flag_hard"] == "True" for row in rows])
    assert hard.tolist() == (difficulty > threshold).tolist() and 0 < hard.sum() < len(rows)
    # the flagged images are those the network gets wrong far more often than the rest
    assert errors.numpy()[hard].mean() > 2 * errors.numpy()[~hard].mean()
    assert "hard: confidence_difficulty > " in capsys.readouterr().out


def test_too_few_images_to_fit_is_a_one_line_error(tmp_path: Path, photos: torch.Tensor, capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "store"
    metric = create_metric("sharpness")
    ScoreStore(root, length=3).table(metric, create=True).write([0, 1, 2], metric(photos[:3]).tolist())
    capsys.readouterr()
    cases = [
        (["--flags"], "--flags should find a measure to flag in SOURCE, but got none of them"),
        (["--flags", "blurry"], "--flags should name measures with at least 5 finite values"),
    ]
    for extra, message in cases:
        assert main(["export", str(root), "-o", str(tmp_path / "a.csv"), *extra]) == 2
        err = capsys.readouterr().err
        assert err.startswith("qualoader export: error: ") and message in err and err.count("\n") == 1, err
    # a user threshold needs no fit: three images are enough
    assert main(["export", str(root), "-o", str(tmp_path / "a.csv"), "--flags", "blurry=1.0"]) == 0
    with (tmp_path / "a.csv").open(newline="") as file:
        assert [row["flag_blurry"] for row in csv.DictReader(file)] == ["True"] * 3


def test_an_export_without_flags_removes_the_thresholds_of_the_table_it_replaces(
    store: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    output, sidecar = tmp_path / "scores.csv", tmp_path / "scores.csv.flags.json"
    assert main(["export", str(store), "-o", str(output), "--flags"]) == 0 and sidecar.is_file()
    capsys.readouterr()
    assert main(["export", str(store), "-o", str(output)]) == 0
    assert not sidecar.exists() and f"removed {sidecar}" in capsys.readouterr().out
    assert "flag_blurry" not in output.read_text().splitlines()[0]
    sidecar.write_text('{"notes": "mine"}')  # not a thresholds file this command wrote: never touched
    assert main(["export", str(store), "-o", str(output)]) == 0
    assert sidecar.read_text() == '{"notes": "mine"}' and "removed" not in capsys.readouterr().out

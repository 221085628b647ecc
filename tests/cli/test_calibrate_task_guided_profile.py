"""``qualoader calibrate --reference ... --metric task-guided``: a profile with its trained head, measured on held-out images.

Real data: Fashion-MNIST test images and the embedded reference network, a short sweep (three
corruptions, severities 0, 3 and 5) and a short head training, so each run takes seconds.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import warnings
from pathlib import Path

import pytest
import torch

from qualoader.cli import main
from qualoader.datasets import load_fashion_mnist
from qualoader.metrics import create_metric
from qualoader.metrics.aligned.task_guided import load_task_guided_head

SWEEP = ["--severities", "0", "3", "5", "--corruptions", "gaussian_noise", "contrast", "gaussian_blur", "--steps", "60", "--no-progress"]


def _calibrate(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(["calibrate", *argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    """A task-guided profile of the embedded network on 120 Fashion-MNIST test images, and the command's JSON summary."""
    out = tmp_path_factory.mktemp("task-guided") / "profile.json"
    argv = ["--reference", "embedded", "--metric", "task-guided", "--data", "fashion-mnist:test", "--max-images", "120", *SWEEP]
    stdout = io.StringIO()  # capsys is per test; this run is shared by the module's tests
    with contextlib.redirect_stdout(stdout):
        assert main(["calibrate", *argv, "--out", str(out)]) == 0
    return out, json.loads(stdout.getvalue())


def test_profile_names_its_head_and_the_head_was_trained_on_the_fit_part_only(built: tuple[Path, dict]) -> None:
    out, summary = built
    data = json.loads(out.read_text(), parse_constant=lambda constant: pytest.fail(f"{out} holds {constant}"))
    head = out.with_suffix(".head.pt")
    assert summary["head"] == str(head.resolve()) and head.is_file()
    assert data["head"] == {"path": "profile.head.pt", "sha256": hashlib.sha256(head.read_bytes()).hexdigest()}
    assert data["metric"] == {"name": "task-guided", "params": {}}
    provenance = data["provenance"]
    assert provenance["split"]["n_fit"] == provenance["head"]["n_images"] == 84  # 70% of 120: the held-out 36 never trained it
    assert provenance["head"]["inputs"] == "both" and provenance["head"]["steps"] == 60
    assert 0.0 < provenance["held_out"]["error_rate"] < 1.0 and provenance["held_out"]["auroc"] > 0.5


def test_the_profile_builds_a_scoring_metric_with_the_measured_calibration(built: tuple[Path, dict]) -> None:
    out, _ = built
    metric = create_metric("task-guided", profile=out)
    images = load_fashion_mnist("test")[0][:16]
    scores = metric(images)
    assert scores.shape == (16,) and bool(((scores > 0) & (scores < 1)).all())
    difficulty = metric.difficulty(scores)
    assert bool(((difficulty >= 0) & (difficulty <= 1)).all())
    # the checkpoint carries the calibration the profile measured, not the head's in-sample one
    _, stored = load_task_guided_head(out.with_suffix(".head.pt"))
    assert stored == metric.calibration.state_dict() == json.loads(out.read_text())["calibration"]


def test_a_task_guided_profile_can_be_refitted(built: tuple[Path, dict], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    first, first_summary = built
    out = tmp_path / "refit.json"
    argv = ["--profile", str(first), "--data", "fashion-mnist:test", "--max-images", "100", "--seed", "3", *SWEEP, "--out", str(out)]
    code, stdout, err = _calibrate(argv, capsys)
    assert code == 0, err
    data = json.loads(out.read_text())
    assert data["provenance"]["refit_of"] == first_summary["identity"] and json.loads(stdout)["head"] == str(out.with_suffix(".head.pt"))
    assert (tmp_path / "refit.head.pt").is_file() and data["provenance"]["head"]["n_images"] == 70
    assert create_metric("task-guided", profile=out)(load_fashion_mnist("test")[0][:4]).shape == (4,)


def test_a_failed_fit_writes_neither_profile_nor_head(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "profile.json"
    # 4 clean images: the network gets the 3 of the fit part right, so no difficulty can be fitted
    argv = ["--reference", "embedded", "--metric", "task-guided", "--data", "fashion-mnist:test", "--max-images", "4"]
    code, _, err = _calibrate([*argv, "--severities", "0", "--steps", "10", "--no-progress", "--out", str(out)], capsys)
    assert code == 2 and err.count("\n") == 1 and "error rate on the fit sweep should be strictly between 0 and 1" in err
    assert list(tmp_path.iterdir()) == []


def test_a_torchscript_reference_is_refused_before_training(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from qualoader.reference import FashionCNN

    scripted = tmp_path / "scripted.pt"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit.script is deprecated; users still have such archives
        torch.jit.script(FashionCNN().eval()).save(str(scripted))
    out = tmp_path / "profile.json"
    argv = ["--reference", str(scripted), "--input-size", "28", "--in-channels", "1", "--metric", "task-guided"]
    argv += ["--data", "fashion-mnist:test", "--max-images", "40", *SWEEP, "--out", str(out)]
    code, _, err = _calibrate(argv, capsys)
    assert code == 2 and err.count("\n") == 1
    assert "reference should be a plain nn.Module for 'task-guided'" in err and "entry point" in err
    assert not out.exists() and not out.with_suffix(".head.pt").exists()

"""``qualoader demo``: scores real Fashion-MNIST (full copy or bundled sample) offline and checks the scores."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from qualoader.cli import main
from qualoader.cli.commands.demo import DEMO_METRICS, _degrade, demo_summary
from qualoader.metrics import create_metric
from qualoader.reference import default_reference


def test_demo_writes_scores_that_the_metrics_reproduce(tmp_path: Path, capsys: pytest.CaptureFixture[str], fashion_mnist_test) -> None:
    assert main(["demo", "--max-images", "240", "--output", str(tmp_path), "--no-progress", "--seed", "2"]) == 0
    out = capsys.readouterr().out
    assert f"wrote {tmp_path / 'demo.json'}" in out
    summary = json.loads((tmp_path / "demo.json").read_text())
    arrays = np.load(tmp_path / "scores.npz")
    assert set(summary["metrics"]) == set(DEMO_METRICS) and summary["data"]["images"] == 240

    images, labels = fashion_mnist_test[0][:240], fashion_mnist_test[1][:240]
    degraded, _, severity = _degrade(images, 2)
    assert np.array_equal(arrays["labels"], labels.numpy()) and np.array_equal(arrays["severity"], severity.numpy())
    with torch.no_grad():
        correct = (default_reference()(degraded).argmax(1) == labels).numpy()
    assert np.array_equal(arrays["correct"], correct)
    assert summary["reference"]["accuracy"] == pytest.approx(correct.mean())
    for name in DEMO_METRICS:
        metric = create_metric(name)
        with torch.no_grad():
            expected = metric(degraded).double()
        np.testing.assert_allclose(arrays[f"score:{name}"], expected.numpy(), rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(arrays[f"difficulty:{name}"], metric.difficulty(expected.float()).double().numpy(), rtol=1e-5, atol=1e-6)
        result = summary["metrics"][name]
        assert [q["images"] for q in result["quartiles"]] == [60, 60, 60, 60]
        assert f"{name} (" in out and "Q4:" in out


def test_difficulty_quartiles_separate_the_networks_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # task-guided is the best aligned no-reference score: its hardest quartile is where the network fails.
    assert main(["demo", "--metric", "task-guided", "--max-images", "600", "--output", str(tmp_path), "--no-progress"]) == 0
    result = json.loads((tmp_path / "demo.json").read_text())["metrics"]["task-guided"]
    accuracy = [q["accuracy"] for q in result["quartiles"]]
    assert accuracy[0] > accuracy[3] + 0.15
    assert result["auroc"] > 0.65 and result["spearman_severity"] > 0.2
    predicted = [q["predicted_error"] for q in result["quartiles"]]
    assert predicted == sorted(predicted)


def test_demo_on_the_bundled_sample_says_so(tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("QUALOADER_FASHION_MNIST", str(tmp_path / "no-copy-here"))
    assert main(["demo", "--metric", "brightness", "--max-images", "60", "--output", str(tmp_path / "out"), "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "from the sample bundled with qualoader" in out
    summary = json.loads((tmp_path / "out" / "demo.json").read_text())
    assert summary["data"]["copy"] == "sample"
    assert summary["metrics"]["brightness"]["mean_predicted_error"] is None  # no calibration: ranked by score


def test_summary_of_a_known_case() -> None:
    severity = np.repeat(np.arange(6), 20)
    difficulty = severity / 5.0
    correct = severity < 3  # the network fails exactly on the three worst severities
    result = demo_summary(-difficulty, difficulty, correct, severity, higher_is_better=True)
    assert [q["accuracy"] for q in result["quartiles"]] == [1.0, 1.0, 0.0, 0.0]
    assert result["auroc"] == 1.0 and result["spearman_severity"] == pytest.approx(1.0)
    without = demo_summary(-difficulty, None, correct, severity, higher_is_better=True)  # ranked by the oriented score
    assert without["quartiles"] == [{**q, "predicted_error": None} for q in result["quartiles"]]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["demo", "fashion-mnist:valid"], "SOURCE should be fashion-mnist, fashion-mnist:train or fashion-mnist:test"),
        (["demo", "--metric", "ssim"], "--metric should be a no-reference metric"),
        (["demo", "--metric", "task-guidd"], "did you mean 'task-guided'?"),
        (["demo", "--max-images", "0"], "--max-images should be a positive int, but got --max-images=0"),
    ],
)
def test_user_errors(argv: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("qualoader demo: error: ") and message in err and err.count("\n") == 1


def test_folder_source_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", str(tmp_path)]) == 2
    assert "SOURCE should be fashion-mnist[:split] for this command, but got" in capsys.readouterr().err

"""``qualoader export --metric/--profile``: difficulties from the current calibrations of the metrics that scored a store."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from qualoader.calibration import DifficultyCalibration
from qualoader.cli import main
from qualoader.data import ScoreStore
from qualoader.metrics import create_metric
from qualoader.profiles import load_profile, save_profile
from qualoader.webdataset import score_shard, sidecar_path, write_image_shards


@pytest.fixture
def bn_shift_store(tmp_path: Path) -> Path:
    """``qualoader precompute`` of 16 Fashion-MNIST test images with the shipped bn-shift."""
    store = tmp_path / "store"
    argv = ["precompute", "fashion-mnist:test", "--limit", "16", "--metric", "bn-shift", "--store", str(store), "--no-progress"]
    assert main(argv) == 0
    return store


def _difficulty(path: Path) -> np.ndarray:
    return np.array([json.loads(line)["bn-shift_difficulty"] for line in path.read_text().splitlines()], dtype=np.float64)


def _files(root: Path) -> dict[Path, bytes]:
    return {path: path.read_bytes() for path in sorted(root.rglob("*")) if path.is_file()}


def test_a_refitted_profile_gives_new_difficulties_without_rescoring(
    bn_shift_store: Path, copied_default: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    scores = torch.from_numpy(ScoreStore(bn_shift_store).table(create_metric("bn-shift")).scores())
    assert torch.isfinite(scores).all()
    refit_calibration = DifficultyCalibration.fit(scores, (scores > scores.median()).double(), higher_is_better=False)
    refit = save_profile(replace(load_profile(copied_default), calibration=refit_calibration, path=None), tmp_path / "refit.json")
    before = _files(bn_shift_store)
    capsys.readouterr()
    assert main(["export", str(bn_shift_store), "--profile", str(refit), "-o", str(tmp_path / "refit.jsonl")]) == 0
    assert "exported 16 rows of score store" in capsys.readouterr().out
    assert main(["export", str(bn_shift_store), "-o", str(tmp_path / "header.jsonl")]) == 0
    assert main(["export", str(bn_shift_store), "--metric", "bn-shift", "-o", str(tmp_path / "shipped.jsonl")]) == 0
    refitted, header = _difficulty(tmp_path / "refit.jsonl"), _difficulty(tmp_path / "header.jsonl")
    np.testing.assert_allclose(refitted, refit_calibration(scores).double().numpy())
    shipped = create_metric("bn-shift").calibration(scores).double().numpy()
    np.testing.assert_allclose(header, shipped)  # without the options: the calibration the table was created with
    np.testing.assert_allclose(_difficulty(tmp_path / "shipped.jsonl"), shipped)
    assert not np.allclose(refitted, header)
    assert _files(bn_shift_store) == before  # the stored scores were read, not rescored or rewritten


def test_a_metric_the_store_does_not_hold_is_a_one_line_error(
    bn_shift_store: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    capsys.readouterr()
    assert main(["export", str(bn_shift_store), "--metric", "sharpness", "-o", str(tmp_path / "out.csv")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("qualoader export: error: --metric and --profile should name metric configurations the store holds")
    assert "sharpness" in err and "bn-shift [" in err and "\n" not in err
    assert not (tmp_path / "out.csv").exists()


def test_shards_take_no_metric_and_export_takes_no_scoring_options(
    tmp_path: Path, photos: torch.Tensor, capsys: pytest.CaptureFixture[str]
) -> None:
    images = (photos[:3, :, :32, :32] * 255).round().to(torch.uint8)
    (shard,) = write_image_shards(images, str(tmp_path / "d-%06d.tar"))
    score_shard(str(shard), "contrast").write(sidecar_path(shard))
    capsys.readouterr()
    assert main(["export", str(shard), "--metric", "contrast", "-o", str(tmp_path / "out.csv")]) == 2
    assert "--metric and --profile apply to a score store" in capsys.readouterr().err
    for option in ("--strict", "--downscale=2"):  # they act on images being scored: export scores none
        with pytest.raises(SystemExit) as exit_info:
            main(["export", str(shard), option, "-o", str(tmp_path / "out.csv")])
        assert exit_info.value.code == 2
        assert f"unrecognized arguments: {option}" in capsys.readouterr().err

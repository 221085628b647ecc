"""``qualoader precompute``: Fashion-MNIST and ImageFolder sources into a score store."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from qualoader.cli import main
from qualoader.data import ScoreStore, StoreError
from qualoader.metrics import create_metric
from tests.helpers import precompute_argv


def test_fashion_mnist_into_store(
    tmp_path: Path, fashion_mnist_test: tuple[torch.Tensor, torch.Tensor], capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["precompute", "fashion-mnist", "--store", str(tmp_path / "s"), "--metric", "brightness", "--limit", "64", "--batch-size", "16"]
    argv.append("--no-progress")
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "64/64" in out and "brightness" in out
    metric = create_metric("brightness")
    scores = ScoreStore(tmp_path / "s").table(metric).scores()
    assert np.array_equal(scores, metric(fashion_mnist_test[0][:64]).double().numpy())
    assert main(argv) == 0  # already complete: resumes with nothing to do
    capsys.readouterr()
    assert main([*argv[:-5], "--limit", "32", "--no-progress"]) == 2
    assert "qualoader precompute: error: length should be the store's dataset length 64" in capsys.readouterr().err
    assert main([*argv, "--size", "32"]) == 2
    assert "dataset_id should be the store's" in capsys.readouterr().err
    with pytest.raises(ValueError, match="dataset_id should be the store's") as raised:
        main(["--debug", *argv, "--size", "32"])
    assert isinstance(raised.value.__cause__, StoreError)


def test_image_folder_variable_sizes(tmp_path: Path, photos: torch.Tensor, capsys: pytest.CaptureFixture[str]) -> None:
    arrays = []
    for k in range(6):
        side = 48 if k % 2 else 64
        array = (photos[k, :, :side, :side].permute(1, 2, 0) * 255).round().to(torch.uint8).numpy()
        folder = tmp_path / "images" / ("a" if k < 3 else "b")
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(array).save(folder / f"{k}.png")
        arrays.append(array)
    assert main(precompute_argv(tmp_path / "images", tmp_path / "s")) == 0
    metric = create_metric("sharpness")
    expected = np.array([float(metric(torch.from_numpy(a).permute(2, 0, 1)[None])[0]) for a in arrays])
    assert np.allclose(ScoreStore(tmp_path / "s").table(metric).scores(), expected, rtol=1e-5, atol=0)
    assert "6/6" in capsys.readouterr().out


def test_bad_arguments(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["precompute", str(tmp_path / "nowhere"), "--store", str(tmp_path / "s"), "--metric", "sharpness"]) == 2
    assert "SOURCE should be an existing folder or shard" in capsys.readouterr().err
    assert main(["precompute", "fashion-mnist", "--store", str(tmp_path / "s"), "--metric", "sharpness", "--limit", "0"]) == 2
    assert "--limit should be a positive int" in capsys.readouterr().err
    assert main(["precompute", "fashion-mnist", "--store", str(tmp_path / "s"), "--metric", "sharpnes", "--limit", "4"]) == 2
    err = capsys.readouterr().err
    assert "--metric should be a registered metric" in err and "sharpness" in err
    assert not (tmp_path / "s").exists()  # nothing was created for a command that was refused


def test_unreadable_image_named_or_skipped(tmp_path: Path, photos: torch.Tensor, capsys: pytest.CaptureFixture[str]) -> None:
    for k in range(5):
        array = (photos[k, :, :32, :32].permute(1, 2, 0) * 255).round().to(torch.uint8).numpy()
        (tmp_path / "images" / "c").mkdir(parents=True, exist_ok=True)
        Image.fromarray(array).save(tmp_path / "images" / "c" / f"{k}.jpg")
    bad = tmp_path / "images" / "c" / "2.jpg"
    bad.write_bytes(bad.read_bytes()[:400])
    argv = precompute_argv(tmp_path / "images", tmp_path / "s")
    argv += ["--batch-size", "2"]
    assert main([*argv, "--num-workers", "2"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"dataset[2] (file '{bad}') should be a readable sample" in err and "--on-error skip" in err
    assert main([*argv, "--num-workers", "2", "--on-error", "skip"]) == 0
    out = capsys.readouterr().out
    assert "4/5 scored, 1 skipped" in out and f"skipped 2: dataset[2] (file '{bad}')" in out and "skipped    1 unreadable" in out
    for k in (0, 4):  # rewritten in place: the next run rescores exactly these
        Image.open(tmp_path / "images" / "c" / f"{k}.jpg").rotate(90).save(tmp_path / "images" / "c" / f"{k}.jpg")
    assert main([*argv, "--on-error", "skip"]) == 0
    out = capsys.readouterr().out
    assert "2 sample(s) changed since the last run" in out and "4/5 scored, 1 skipped" in out


def test_several_metrics_one_pass(
    tmp_path: Path, fashion_mnist_test: tuple[torch.Tensor, torch.Tensor], capsys: pytest.CaptureFixture[str]
) -> None:
    store = tmp_path / "s"
    argv = ["precompute", "fashion-mnist", "--store", str(store), "--limit", "48", "--batch-size", "16", "--no-progress"]
    assert main([*argv, "--metric", "sharpness,noise"]) == 0
    out = capsys.readouterr().out
    assert out.count("48/48 scored") == 2 and "sharpness" in out and "noise" in out
    assert main([*argv, "--metric", "classical"]) == 0  # adds the seven missing measures; the two tables stay
    capsys.readouterr()
    from qualoader.engine import METRIC_SUITES

    images = fashion_mnist_test[0][:48]
    tables = {table.metric_name: table for table in ScoreStore(store).tables()}
    assert sorted(tables) == sorted(METRIC_SUITES["classical"])
    for name, table in tables.items():
        np.testing.assert_allclose(table.scores(), create_metric(name)(images).double().numpy(), rtol=1e-6, atol=1e-9)
    assert main([*argv, "--metric", "classical", "--calibration", str(tmp_path / "c.json")]) == 2
    assert "--calibration should come with one metric, but got 9 metrics" in capsys.readouterr().err
    assert main([*argv, "--metric", "sharpnes"]) == 2
    assert "did you mean 'sharpness'" in capsys.readouterr().err


def test_store_inside_the_image_folder_is_refused(tmp_path: Path, photos: torch.Tensor, capsys: pytest.CaptureFixture[str]) -> None:
    """A store inside the dataset pollutes it (its files would be read as images next time): refused before anything is written."""
    from tests.helpers import save_photo_crops

    save_photo_crops(tmp_path / "images" / "c", photos, count=3, side=16)
    for store in (tmp_path / "images" / "store", tmp_path / "images", tmp_path):
        capsys.readouterr()
        assert main(precompute_argv(tmp_path / "images", store)) == 2
        assert "--store should not overwrite or lie inside an input" in capsys.readouterr().err
    assert sorted(path.name for path in (tmp_path / "images").rglob("*")) == ["0.png", "1.png", "2.png", "c"]


def test_flat_folder_and_repeated_metric_options(tmp_path: Path, photos: torch.Tensor, capsys: pytest.CaptureFixture[str]) -> None:
    """A flat folder of images is scored as ``report`` reads it; --metric given twice scores both (it used to keep the last)."""
    from tests.helpers import save_photo_crops

    paths = save_photo_crops(tmp_path / "flat", photos, count=4, side=20)
    store = tmp_path / "s"
    assert main(precompute_argv(tmp_path / "flat", store, "--metric", "noise")) == 0
    assert capsys.readouterr().out.count("4/4 scored") == 2
    tables = {table.metric_name: table for table in ScoreStore(store).tables()}
    assert sorted(tables) == ["noise", "sharpness"]
    from qualoader.decoding import load_image

    images = torch.stack([load_image(str(path)) for path in paths])
    np.testing.assert_allclose(tables["noise"].scores(), create_metric("noise")(images).double().numpy(), rtol=1e-6, atol=1e-9)


def test_size_too_large_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["precompute", "fashion-mnist", "--store", str(tmp_path / "s"), "--metric", "sharpness", "--size", "100000"]) == 2
    assert "--size should be at most 4096" in capsys.readouterr().err and not (tmp_path / "s").exists()

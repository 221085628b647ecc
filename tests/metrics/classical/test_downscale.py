"""``downscale``: the fine-detail intermediates on a box-reduced luma, every other measure untouched."""

from __future__ import annotations

import tarfile
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from qualoader.cli import main
from qualoader.decoding import decode_image
from qualoader.engine import METRIC_SUITES, ScoringEngine
from qualoader.metrics import create_metric, metric_info
from qualoader.metrics.classical import BatchFeatures

FOLLOWS = ("sharpness", "gradient-energy", "noise")  # fine detail, read on the reduced luma
EXACT = ("contrast", "brightness", "colorfulness", "blockiness", "entropy", "clipping")  # full resolution at any factor


def _as_bytes(images: torch.Tensor) -> torch.Tensor:
    return (images * 255).round().to(torch.uint8)


def test_the_suite_splits_into_reduced_and_exact_measures() -> None:
    assert sorted(FOLLOWS + EXACT) == sorted(METRIC_SUITES["classical"])
    assert all(metric_info(name).accepts_downscale for name in METRIC_SUITES["classical"])
    assert not metric_info("bn-shift").accepts_downscale


@pytest.mark.parametrize("name", EXACT)
@pytest.mark.parametrize("as_bytes", [False, True], ids=["float", "uint8"])
def test_full_resolution_measures_do_not_change(photos: torch.Tensor, degrade, name: str, as_bytes: bool) -> None:
    images = torch.cat([photos, degrade.jpeg(photos, 4)])  # JPEG: a block grid for blockiness to find
    images = _as_bytes(images) if as_bytes else images
    full, reduced = create_metric(name), create_metric(name, downscale=4)
    torch.testing.assert_close(reduced(images), full(images), rtol=0, atol=0)
    assert reduced.fingerprint() == full.fingerprint()  # same scores, same identity


@pytest.mark.parametrize("name", ["sharpness", "gradient-energy", "noise"])
@pytest.mark.parametrize("factor", [2, 4])
def test_fine_detail_measures_read_the_box_averaged_luma(photos: torch.Tensor, name: str, factor: int) -> None:
    # The luma is linear in the channels, so the luma of box-averaged RGB is the box-averaged luma:
    # the reduced measure equals the full measure of the images averaged over factor x factor blocks.
    expected = create_metric(name)(F.avg_pool2d(photos, factor))
    torch.testing.assert_close(create_metric(name, downscale=factor)(photos), expected, rtol=2e-4, atol=1e-5)


def test_uint8_and_float_input_agree(photos: torch.Tensor) -> None:
    images = _as_bytes(photos)
    for name in FOLLOWS:
        metric = create_metric(name, downscale=2)
        torch.testing.assert_close(metric(images), metric(images.float() / 255), rtol=2e-4, atol=1e-5, msg=name)


def test_identity_records_a_reduced_resolution() -> None:
    assert create_metric("sharpness", downscale=1).fingerprint() == create_metric("sharpness").fingerprint()
    assert create_metric("sharpness", downscale=2).fingerprint() != create_metric("sharpness").fingerprint()
    assert create_metric("sharpness", downscale=2).get_config() == {"downscale": 2}
    assert create_metric("blockiness", downscale=2).get_config() == {"block": 8}


def test_engine_shares_features_per_factor_and_matches_each_metric_alone(photos: torch.Tensor) -> None:
    images = _as_bytes(photos)
    metrics = [create_metric("sharpness"), create_metric("noise", downscale=2), create_metric("gradient-energy", downscale=4)]
    scores = ScoringEngine(metrics).score(images).scores
    for metric in metrics:
        torch.testing.assert_close(scores[metric.name], metric(images).double(), msg=metric.name)


@pytest.mark.parametrize("factor", [0, 3, 8, -2])
def test_bad_factor_names_the_argument(factor: int) -> None:
    with pytest.raises(ValueError, match="downscale should be"):
        create_metric("sharpness", downscale=factor)
    with pytest.raises(ValueError, match="downscale should be"):
        BatchFeatures(torch.rand(1, 1, 16, 16), downscale=factor)


def test_minimum_size_grows_with_the_factor() -> None:
    metric = create_metric("sharpness", downscale=4)
    assert metric.min_size == 12
    metric(torch.rand(1, 3, 12, 12))
    with pytest.raises(ValueError, match="at least 12x12"):
        metric(torch.rand(1, 3, 11, 11))


def test_cli_option(tmp_path: Path, photos: torch.Tensor, capsys: pytest.CaptureFixture[str]) -> None:
    from qualoader.webdataset import read_sidecar, write_image_shards

    shards = [str(p) for p in write_image_shards(photos[:4], str(tmp_path / "p-%06d.tar"), keys=[f"k{i}" for i in range(4)])]
    out = tmp_path / "scores"
    assert main(["score", *shards, "--metric", "sharpness,brightness", "--downscale", "2", "--out", str(out), "--no-progress"]) == 0
    index = read_sidecar(out / (Path(shards[0]).name + ".quality.json"))
    with tarfile.open(shards[0]) as archive:
        members = sorted((m for m in archive if m.isfile() and not m.name.endswith(".cls")), key=lambda m: m.name)
        images = torch.stack([decode_image(archive.extractfile(m).read()) for m in members])  # type: ignore[union-attr]
    expected = create_metric("sharpness", downscale=2)(images).double()
    torch.testing.assert_close(index.scores("sharpness").double(), expected, rtol=1e-5, atol=1e-7)
    assert not torch.allclose(expected, create_metric("sharpness")(images).double())
    capsys.readouterr()
    assert main(["score", *shards, "--metric", "sharpness", "--downscale", "3", "--out", str(tmp_path / "x"), "--no-progress"]) == 2
    assert "--downscale should be one of 1, 2, 4, but got --downscale=3" in capsys.readouterr().err
    assert main(["score", *shards, "--metric", "bn-shift", "--downscale", "2", "--out", str(tmp_path / "y"), "--no-progress"]) == 2
    assert "--downscale applies to the classical measures" in capsys.readouterr().err
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()

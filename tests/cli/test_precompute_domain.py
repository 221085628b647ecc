"""``qualoader precompute``'s summary says how much of the dataset lies outside each aligned metric's reference domain.

Real images: scikit-image photos (RGB, 96 px) and Fashion-MNIST test images (grey, 28 px, the
embedded reference's own domain), written as an ImageFolder.
"""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import pytest
import torch
from PIL import Image

from qualoader.cli import main
from qualoader.cli.commands import precompute as precompute_command
from qualoader.profiles import DomainWarning


def _domain_lines(out: str) -> list[str]:
    return [line.strip() for line in out.splitlines() if line.strip().startswith("domain ")]


@pytest.fixture
def mixed_folder(tmp_path: Path, photos: torch.Tensor, fashion_mnist_test: tuple[torch.Tensor, torch.Tensor]) -> Path:
    """``root/photos``: 4 RGB photos at 96 px (3.4x the native 28 px: out of domain); ``root/fashion``: 2 grey 28 px images."""
    root = tmp_path / "images"
    (root / "photos").mkdir(parents=True)
    (root / "fashion").mkdir()
    for k in range(4):
        array = (photos[k, :, :96, :96].permute(1, 2, 0) * 255).round().to(torch.uint8).numpy()
        Image.fromarray(array).save(root / "photos" / f"{k}.png")
    for k in range(2):
        Image.fromarray(fashion_mnist_test[0][k, 0].numpy()).save(root / "fashion" / f"{k}.png")
    return root


def _precompute(*argv: str) -> int:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DomainWarning)  # the photos are meant to be out of domain
        return main(["precompute", *argv, "--no-progress"])


def test_aligned_metric_gets_a_domain_line_classical_none(mixed_folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert _precompute(str(mixed_folder), "--store", str(tmp_path / "s"), "--metric", "bn-shift,sharpness") == 0
    out = capsys.readouterr().out
    (line,) = _domain_lines(out)  # bn-shift only: sharpness has no reference network
    assert line.startswith("domain     66.7% of 6 images out of the reference's domain")
    assert "size 66.7%" in line
    assert out.index("\nbn-shift [") < out.index("  domain ") < out.index("\nsharpness [")  # in bn-shift's section


def test_unreadable_images_are_left_out_of_the_count(mixed_folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    broken = mixed_folder / "photos" / "0.png"
    broken.write_bytes(broken.read_bytes()[:100])
    argv = [str(mixed_folder), "--store", str(tmp_path / "s"), "--metric", "bn-shift", "--on-error", "skip", "--batch-size", "2"]
    assert _precompute(*argv, "--num-workers", "2") == 0
    out = capsys.readouterr().out
    assert "5/6 scored, 1 skipped" in out
    (line,) = _domain_lines(out)
    assert line.startswith("domain     60.0% of 5 images")


def test_in_domain_data_gets_a_line_per_aligned_metric(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["fashion-mnist", "--limit", "32", "--store", str(tmp_path / "s"), "--metric", "bn-shift,confidence,brightness"]
    assert _precompute(*argv) == 0
    lines = _domain_lines(capsys.readouterr().out)
    assert lines == ["domain     0.0% of 32 images out of the reference's domain (channels 0.0%, size 0.0%; atypical intensity 0.0%)"] * 2


def test_large_datasets_are_counted_on_evenly_spaced_images(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(precompute_command, "_DOMAIN_IMAGES", 5)
    images = precompute_command._ReadableImages(torch.utils.data.TensorDataset(torch.arange(17).view(17, 1, 1, 1)), 2, 0)
    assert images.indices == [0, 4, 8, 12, 16]
    assert [int(v) for batch in images for v in batch.flatten()] == [0, 4, 8, 12, 16]
    assert list(images) and list(images)  # an iterable read afresh, not a generator spent after one pass
    assert _precompute("fashion-mnist", "--limit", "20", "--store", str(tmp_path / "s"), "--metric", "bn-shift") == 0
    (line,) = _domain_lines(capsys.readouterr().out)
    assert re.match(r"domain +0\.0% of 5 images", line)

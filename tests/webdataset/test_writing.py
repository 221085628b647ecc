"""write_image_shards / encode_image: lossless round trip through real shards."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import webdataset as wds

from qualoader.webdataset import decode_image, encode_image, write_image_shards


def test_round_trip(tmp_path: Path, fashion_mnist_test: tuple[torch.Tensor, torch.Tensor], photos: torch.Tensor) -> None:
    images, labels = fashion_mnist_test
    shards = write_image_shards(images[:25], str(tmp_path / "fm-%03d.tar"), labels=labels[:25], maxcount=10)
    assert [p.name for p in shards] == ["fm-000.tar", "fm-001.tar", "fm-002.tar"]
    samples = list(wds.WebDataset([str(p) for p in shards], shardshuffle=False))
    assert [s["__key__"] for s in samples] == [f"{i:08d}" for i in range(25)]
    for i, sample in enumerate(samples):
        assert torch.equal(decode_image(sample["png"]), images[i]) and int(sample["cls"]) == int(labels[i])
    photo = decode_image(encode_image(photos[0]))
    assert photo.shape == (3, 128, 128) and torch.equal(photo, (photos[0].double() * 255).round().to(torch.uint8))


def test_jpeg_and_variable_sizes(tmp_path: Path, photos: torch.Tensor) -> None:
    images = [photos[0], photos[1, :, :64, :96]]
    (shard,) = write_image_shards(images, tmp_path / "p-%d.tar", keys=["big", "small"], image_format="jpg")
    samples = list(wds.WebDataset(str(shard), shardshuffle=False))
    assert [decode_image(s["jpg"]).shape for s in samples] == [(3, 128, 128), (3, 64, 96)]


def test_bad_arguments(tmp_path: Path) -> None:
    images = torch.zeros(2, 1, 4, 4, dtype=torch.uint8)
    with pytest.raises(ValueError, match="pattern should contain"):
        write_image_shards(images, str(tmp_path / "x.tar"))
    with pytest.raises(ValueError, match="labels should have"):
        write_image_shards(images, str(tmp_path / "x-%d.tar"), labels=[1])
    with pytest.raises(ValueError, match="keys should be"):
        write_image_shards(images, str(tmp_path / "x-%d.tar"), keys=["a", "a"])
    with pytest.raises(ValueError, match="keys should be"):
        write_image_shards(images, str(tmp_path / "x-%d.tar"), keys=["a.b", "c"])
    with pytest.raises(ValueError, match="image_format should be"):
        write_image_shards(images, str(tmp_path / "x-%d.tar"), image_format="gif")
    with pytest.raises(ValueError, match="should have C in"):
        encode_image(torch.zeros(2, 4, 4))
    with pytest.raises(TypeError, match="image should be"):
        encode_image([[0]])  # type: ignore[arg-type]

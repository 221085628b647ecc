"""Fashion-MNIST from a full local copy or from the sample bundled with qualoader; photos from scikit-image."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from qualoader import datasets
from qualoader.datasets import (
    FASHION_MNIST_SAMPLE,
    FashionMNISTSampleWarning,
    fashion_mnist_source,
    load_fashion_mnist,
)

_HAS_FULL_COPY = fashion_mnist_source() == "full"


@pytest.fixture
def fresh_machine(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """No full copy where ``$QUALOADER_FASHION_MNIST`` points, and no warning given yet in this process."""
    missing = tmp_path / "no-copy-here"
    monkeypatch.setenv("QUALOADER_FASHION_MNIST", str(missing))
    monkeypatch.setattr(datasets, "_WARNED", set())
    return missing


def test_sample_is_small_labelled_and_balanced() -> None:
    assert FASHION_MNIST_SAMPLE.stat().st_size < 3 * 2**20
    for split, count in (("test", 3000), ("train", 2000)):
        images, labels = load_fashion_mnist(split, source="sample")
        assert images.shape == (count, 1, 28, 28) and images.dtype == torch.uint8
        assert labels.shape == (count,) and labels.dtype == torch.int64
        share = torch.bincount(labels, minlength=10).double() / count
        assert bool((share > 0.08).all() and (share < 0.12).all()), share  # every class about a tenth


def test_licence_and_origin_beside_the_sample() -> None:
    text = FASHION_MNIST_SAMPLE.with_suffix(".txt").read_text()
    assert "MIT License" in text and "Zalando" in text and "tools/build_fashion_mnist_sample.py" in text


def test_auto_falls_back_to_the_sample_and_says_so_once(fresh_machine: Path) -> None:
    assert fashion_mnist_source() == "sample"
    with pytest.warns(
        FashionMNISTSampleWarning, match=f"no full Fashion-MNIST copy in '{fresh_machine}'.*first 3000 of the 10000 test images"
    ):
        images, labels = load_fashion_mnist("test")
    sample_images, sample_labels = load_fashion_mnist("test", source="sample")
    assert torch.equal(images, sample_images) and torch.equal(labels, sample_labels)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a second load of the same split stays quiet
        load_fashion_mnist("test")
        load_fashion_mnist("train", source="sample")


def test_full_copy_is_required_when_asked_for(fresh_machine: Path, tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="apt-get install dataset-fashion-mnist"):
        load_fashion_mnist("test", source="full")
    with pytest.raises(FileNotFoundError, match="root should be a folder with the Fashion-MNIST idx files"):
        load_fashion_mnist("test", root=tmp_path)  # an explicit folder never falls back to the sample


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="source should be one of {'auto', 'full', 'sample'}, but got source='bundled'"):
        load_fashion_mnist("test", source="bundled")
    with pytest.raises(ValueError, match="root should be None with source='sample'"):
        load_fashion_mnist("test", root="/data", source="sample")
    with pytest.raises(ValueError, match="split should be one of {'test', 'train'}, but got split='valid'"):
        load_fashion_mnist("valid", source="sample")


@pytest.mark.skipif(not _HAS_FULL_COPY, reason="compares the sample with a full local copy of Fashion-MNIST")
def test_sample_is_a_prefix_of_the_full_splits() -> None:
    for split in ("test", "train"):
        images, labels = load_fashion_mnist(split, source="full")
        sample_images, sample_labels = load_fashion_mnist(split, source="sample")
        assert torch.equal(sample_images, images[: len(sample_images)]) and torch.equal(sample_labels, labels[: len(sample_labels)])


@pytest.mark.skipif(not _HAS_FULL_COPY, reason="rebuilds the sample from a full local copy of Fashion-MNIST")
def test_tool_rebuilds_the_same_bytes(tmp_path: Path, load_script) -> None:
    tool = load_script("tools/build_fashion_mnist_sample.py")
    out = tmp_path / "sample.npz"
    tool.main(["--out", str(out)])
    assert out.read_bytes() == FASHION_MNIST_SAMPLE.read_bytes()
    assert not list(tmp_path.glob("*.partial"))
    with np.load(out) as archive:
        assert sorted(archive.files) == ["test_images", "test_labels", "train_images", "train_labels"]


def _write_idx(folder: Path, images: np.ndarray, labels: np.ndarray) -> None:
    """A small full copy: the TEST idx files (magic 0x0803 / 0x0801, big-endian dimensions, then the bytes)."""
    folder.mkdir(parents=True, exist_ok=True)
    header = (0x0803).to_bytes(4, "big") + b"".join(int(d).to_bytes(4, "big") for d in images.shape)
    (folder / "t10k-images-idx3-ubyte").write_bytes(header + images.astype(np.uint8).tobytes())
    (folder / "t10k-labels-idx1-ubyte").write_bytes((0x0801).to_bytes(4, "big") + len(labels).to_bytes(4, "big") + labels.tobytes())


def test_digest_tells_a_changed_copy_from_the_one_scored(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from qualoader.cli import main
    from qualoader.datasets import fashion_mnist_digest

    images, labels = load_fashion_mnist("test", source="sample")
    array, label_array = images[:20, 0].numpy().copy(), labels[:20].numpy().astype(np.uint8)
    _write_idx(tmp_path / "copy", array, label_array)
    monkeypatch.setenv("QUALOADER_FASHION_MNIST", str(tmp_path / "copy"))
    first = fashion_mnist_digest("test")
    assert first == fashion_mnist_digest("test", root=tmp_path / "copy") != fashion_mnist_digest("test", source="sample")
    argv = ["precompute", "fashion-mnist:test", "--store", str(tmp_path / "s"), "--metric", "sharpness", "--limit", "10", "--no-progress"]
    assert main(argv) == 0
    array[3, 10:14, 10:14] = 255 - array[3, 10:14, 10:14]  # the source changes under the same split and limit, same sizes
    _write_idx(tmp_path / "copy", array, label_array)
    assert fashion_mnist_digest("test") != first
    capsys.readouterr()
    assert main(argv) == 2  # refused by name: the store's scores are of the other copy
    error = capsys.readouterr().err
    assert error.startswith("qualoader precompute: error: dataset_id should be the store's") and f"src={first}" in error

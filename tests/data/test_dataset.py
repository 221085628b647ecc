"""QualityDataset: per-sample annotation for every sample structure, store reads, difficulty, errors."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
import torch
from PIL import Image
from torch.utils.data import ConcatDataset, Subset, TensorDataset

from qualoader.data import QualityDataset, ScoreStore, StoreError
from qualoader.metrics import QualityMetric, create_metric
from tests.helpers import ListDataset


def _pil(image: torch.Tensor) -> Image.Image:
    """uint8 (1, H, W) -> PIL 'L' image."""
    return Image.fromarray(image[0].numpy())


def test_scores_equal_direct_metric_tuple(fmnist_small: TensorDataset, sharpness: QualityMetric) -> None:
    data = QualityDataset(fmnist_small, sharpness)
    images, labels = fmnist_small.tensors
    direct = sharpness(images[:12])
    for i in range(12):
        image, label, quality, difficulty = data[i]
        assert math.isnan(difficulty)  # sharpness has no calibration: same layout, NaN difficulty
        assert image is not None and int(label) == int(labels[i])
        assert quality == pytest.approx(float(direct[i]), rel=1e-5)


def test_scores_equal_direct_metric_pil_dict_and_bare(fmnist_small: TensorDataset, sharpness: QualityMetric) -> None:
    images, labels = fmnist_small.tensors
    direct = sharpness(images[:6])
    dict_samples = [{"img": _pil(images[i]), "label": int(labels[i])} for i in range(6)]
    as_dicts = QualityDataset(ListDataset(dict_samples), sharpness, image_key="img")
    as_pil = QualityDataset(ListDataset([_pil(images[i]) for i in range(6)]), sharpness)
    as_grey_2d = QualityDataset(ListDataset([images[i, 0] for i in range(6)]), sharpness, output="dict")
    for i in range(6):
        sample = as_dicts[i]
        assert sample.keys() == {"img", "label", "quality", "difficulty"} and sample["quality"] == pytest.approx(float(direct[i]), rel=1e-5)
        image, quality, _ = as_pil[i]
        assert isinstance(image, Image.Image) and quality == pytest.approx(float(direct[i]), rel=1e-5)
        assert as_grey_2d[i]["quality"] == pytest.approx(float(direct[i]), rel=1e-5)


def test_float_photos(photos: torch.Tensor) -> None:
    metric = create_metric("contrast")
    data = QualityDataset(ListDataset([(photo, name) for photo, name in zip(photos, range(len(photos)))]), metric, output="dict")
    direct = metric(photos)
    assert [data[i]["quality"] for i in range(len(photos))] == direct.double().tolist()
    assert data[3]["target"] == 3


def test_reads_store_instead_of_scoring(tmp_path: Path, fmnist_small: TensorDataset, sharpness: QualityMetric) -> None:
    store = ScoreStore(tmp_path / "s", len(fmnist_small))
    table = store.table(sharpness, create=True)
    images = fmnist_small.tensors[0]
    table.write([5], sharpness(images[5:6]))

    class Counting(type(sharpness)):  # same name and config, so the same table
        calls = 0

        def score(self, images: torch.Tensor, reference: torch.Tensor | None = None) -> torch.Tensor:
            Counting.calls += 1
            return super().score(images, reference)

        def score_features(self, features: Any) -> torch.Tensor:  # the engine's path for classical measures
            Counting.calls += 1
            return super().score_features(features)

    data = QualityDataset(fmnist_small, Counting(), store=store)
    assert data[5][2] == table.get(5)
    assert Counting.calls == 0
    assert data[6][2] == float(sharpness(images[6:7])[0])
    assert Counting.calls == 1 and table.get(6) is None  # per-sample scores are never written back


def test_difficulty_modes(fmnist_small: TensorDataset, calibrated_brightness: QualityMetric, sharpness: QualityMetric) -> None:
    image, label, quality, difficulty = QualityDataset(fmnist_small, calibrated_brightness)[0]
    assert torch.equal(image, fmnist_small.tensors[0][0]) and label == fmnist_small.tensors[1][0]
    score = calibrated_brightness(image[None]).double()
    assert quality == float(score[0])
    assert difficulty == pytest.approx(float(calibrated_brightness.difficulty(score)[0]), abs=1e-12)
    assert len(QualityDataset(fmnist_small, calibrated_brightness, difficulty=False)[0]) == 3
    # one layout whatever the calibration: an uncalibrated metric gives a NaN difficulty
    for difficulty in (None, True):
        uncalibrated = QualityDataset(fmnist_small, sharpness, difficulty=difficulty)[0]
        assert len(uncalibrated) == 4 and math.isnan(uncalibrated[3])
    assert len(QualityDataset(fmnist_small, sharpness, difficulty=False)[0]) == 3
    with pytest.raises(TypeError, match="difficulty should be a bool or None"):
        QualityDataset(fmnist_small, sharpness, difficulty=1)  # type: ignore[arg-type]


def test_return_index_and_deferred(fmnist_small: TensorDataset, sharpness: QualityMetric) -> None:
    assert QualityDataset(fmnist_small, sharpness, return_index=True)[7][-1] == 7
    deferred = QualityDataset(fmnist_small)
    assert deferred.deferred and len(deferred[7]) == 3 and deferred[7][-1] == 7
    assert deferred[7][0] is not None


def test_subset_and_concat_indices(fmnist_small: TensorDataset, sharpness: QualityMetric) -> None:
    images = fmnist_small.tensors[0]
    direct = sharpness(images).double()
    subset = Subset(QualityDataset(fmnist_small, sharpness, return_index=True), [40, 3, 17])
    assert [(s[-1], s[-3]) for s in subset] == [(i, float(direct[i])) for i in (40, 3, 17)]
    concat = QualityDataset(ConcatDataset([Subset(fmnist_small, range(10, 20)), Subset(fmnist_small, range(50, 60))]), sharpness)
    assert len(concat) == 20
    assert [concat[i][-2] for i in (0, 9, 10, 19)] == [float(direct[i]) for i in (10, 19, 50, 59)]


def test_bad_images(sharpness: QualityMetric) -> None:
    with pytest.raises(ValueError, match=r"dataset\[0\] image should be a tensor of shape \(C, H, W\)"):
        QualityDataset(ListDataset([(torch.zeros(4, 8, 8), 0)]), sharpness)[0]
    with pytest.raises(ValueError, match=r"dataset\[0\] image should be a tensor of shape"):
        QualityDataset(ListDataset([torch.zeros(2, 3, 8, 8)]), sharpness)[0]
    with pytest.raises(ValueError, match=r"images should have float values in \[0, 1\]"):
        QualityDataset(ListDataset([torch.full((3, 8, 8), 2.0)]), sharpness)[0]


def test_unsupported_sample_structure(sharpness: QualityMetric) -> None:
    for data in (QualityDataset(ListDataset([3]), sharpness), QualityDataset(ListDataset(["x.png"]))):
        with pytest.raises(TypeError, match=r"dataset\[0\] should be a tuple/list \(image at position image_key\), a dict"):
            data[0]
    with pytest.raises(ValueError, match="output should be 'auto' or 'dict' for dict samples"):
        QualityDataset(ListDataset([{"image": torch.zeros(1, 4, 4)}]), sharpness, output="tuple")[0]


def test_bad_arguments(tmp_path: Path, fmnist_small: TensorDataset, sharpness: QualityMetric) -> None:
    with pytest.raises(TypeError, match="dataset should be a map-style Dataset"):
        QualityDataset(iter([1, 2]), sharpness)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="metric should be a QualityMetric"):
        QualityDataset(fmnist_small, "sharpness")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="metric should be a no-reference metric"):
        QualityDataset(fmnist_small, create_metric("psnr"))
    with pytest.raises(TypeError, match="image_key should be an int"):
        QualityDataset(fmnist_small, sharpness, image_key=1.0)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="output should be one of"):
        QualityDataset(fmnist_small, sharpness, output="list")
    with pytest.raises(ValueError, match=r"store should hold scores for len\(dataset\)=96 samples, but got store.length=95"):
        QualityDataset(fmnist_small, sharpness, store=ScoreStore(tmp_path / "s", 95))
    with pytest.raises(ValueError, match="store, difficulty and dataset_id should be None when metric=None"):
        QualityDataset(fmnist_small, store=ScoreStore(tmp_path / "t", 96))
    with pytest.raises(TypeError, match="store should be a ScoreStore"):
        QualityDataset(fmnist_small, sharpness, store=3)  # type: ignore[arg-type]
    assert QualityDataset(fmnist_small, sharpness, store=tmp_path / "u").table.length == 96
    sharp_table = ScoreStore(tmp_path / "u").table(sharpness)
    with pytest.raises(StoreError, match="metric should have the fingerprint"):
        QualityDataset(fmnist_small, create_metric("brightness"), store=sharp_table)


def test_worker_readers_see_main_process_writes(tmp_path: Path, fmnist_small: TensorDataset, sharpness: QualityMetric) -> None:
    """Per-sample mode in 2 persistent workers reads the store lazily and sees later writes.

    The table is filled with *brightness* scores so that a value read from the store can be told
    apart from one the workers compute (sharpness).
    """
    images = fmnist_small.tensors[0]
    brightness = create_metric("brightness")(images).double()
    sharp = sharpness(images).double()
    store = ScoreStore(tmp_path / "s", len(fmnist_small))
    table = store.table(sharpness, create=True)
    table.write(torch.arange(48), brightness[:48])
    loader = torch.utils.data.DataLoader(
        QualityDataset(fmnist_small, sharpness, store=store, return_index=True), batch_size=16, num_workers=2, persistent_workers=True
    )
    index, quality = zip(*[(b[-1], b[-3]) for b in loader])
    index, quality = torch.cat(index), torch.cat(quality)
    assert torch.equal(index, torch.arange(96))
    # Scores of a batch of one and of a full batch agree to float32 rounding, not bit for bit.
    torch.testing.assert_close(quality, torch.cat([brightness[:48], sharp[48:]]), rtol=1e-5, atol=1e-7)
    table.write(torch.arange(48, 96), brightness[48:])
    assert torch.equal(torch.cat([b[-3] for b in loader]), brightness)

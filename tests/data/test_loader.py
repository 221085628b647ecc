"""QualityLoader: per-batch scoring in the main process, persistence, workers, subsets, errors."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from torch.utils.data import ConcatDataset, DataLoader, Subset, TensorDataset

from qualoader.data import QualityDataset, QualityLoader, ScoreStore
from qualoader.metrics import QualityMetric, create_metric
from tests.helpers import CountingMetric, ListDataset


def _collect(loader: QualityLoader) -> tuple[torch.Tensor, torch.Tensor]:
    """Concatenate (index, quality) over one epoch of a loader whose dataset has return_index=True."""
    indices, qualities = [], []
    for batch in loader:
        indices.append(batch[-1])
        qualities.append(batch[-3])  # (..., quality, difficulty, index)
    return torch.cat(indices), torch.cat(qualities)


def test_scores_equal_direct_and_epoch_two_reads(tmp_path: Path, fmnist_small: TensorDataset, sharpness: QualityMetric) -> None:
    metric = CountingMetric(sharpness)
    store = ScoreStore(tmp_path / "s", len(fmnist_small))
    loader = QualityLoader(DataLoader(QualityDataset(fmnist_small), batch_size=32), metric, "cpu", store=store)
    direct = sharpness(fmnist_small.tensors[0]).double()
    for epoch in range(2):
        batches = list(loader)
        assert [len(b) for b in batches] == [4, 4, 4]  # (images, labels, quality, difficulty): the index was removed
        assert all(torch.isnan(b[3]).all() for b in batches)  # sharpness has no calibration
        assert torch.equal(torch.cat([b[2] for b in batches]), direct)
        assert torch.equal(torch.cat([b[1] for b in batches]), fmnist_small.tensors[1])
        assert metric.scored == len(fmnist_small)  # epoch 2 scored nothing
    assert store.table(sharpness).complete


def test_only_missing_indices_are_scored(tmp_path: Path, fmnist_small: TensorDataset, sharpness: QualityMetric) -> None:
    store = ScoreStore(tmp_path / "s", len(fmnist_small))
    table = store.table(sharpness, create=True)
    table.write(torch.arange(0, 96, 2), sharpness(fmnist_small.tensors[0][::2]))
    metric = CountingMetric(sharpness)
    loader = QualityLoader(DataLoader(QualityDataset(fmnist_small, return_index=True), batch_size=20), metric, store=store)
    index, quality = _collect(loader)
    assert metric.scored == 48
    assert torch.equal(quality, sharpness(fmnist_small.tensors[0]).double()) and torch.equal(index, torch.arange(96))


def test_multi_worker_every_index_once(tmp_path: Path, fmnist_small: TensorDataset, sharpness: QualityMetric) -> None:
    store = ScoreStore(tmp_path / "s", len(fmnist_small))
    data = DataLoader(
        QualityDataset(fmnist_small, return_index=True),
        batch_size=10,
        shuffle=True,
        generator=torch.Generator().manual_seed(0),
        num_workers=2,
        persistent_workers=True,
        pin_memory=torch.cuda.is_available(),
    )
    metric = CountingMetric(sharpness)
    loader = QualityLoader(data, metric, store=store)
    direct = sharpness(fmnist_small.tensors[0]).double()
    for _ in range(2):
        index, quality = _collect(loader)
        assert sorted(index.tolist()) == list(range(96))
        assert torch.equal(quality, direct[index])
    assert metric.scored == 96


def test_no_store_scores_every_epoch(fmnist_small: TensorDataset, sharpness: QualityMetric) -> None:
    metric = CountingMetric(sharpness)
    loader = QualityLoader(DataLoader(QualityDataset(fmnist_small), batch_size=48), metric)
    assert len(loader) == 2 and loader.batch_size == 48
    for _ in range(2):
        list(loader)
    assert metric.scored == 192 and loader.scored_batches == 4


def test_subset_keys_by_full_dataset_index(tmp_path: Path, fmnist_small: TensorDataset, sharpness: QualityMetric) -> None:
    store = ScoreStore(tmp_path / "s", len(fmnist_small))
    chosen = [90, 4, 33, 61, 7]
    subset = Subset(QualityDataset(fmnist_small, return_index=True), chosen)
    loader = QualityLoader(DataLoader(subset, batch_size=2), sharpness, store=store)
    index, quality = _collect(loader)
    assert index.tolist() == chosen
    direct = sharpness(fmnist_small.tensors[0]).double()
    torch.testing.assert_close(quality, direct[chosen], rtol=1e-5, atol=1e-7)  # other batch composition: float32 rounding
    table = store.table(sharpness)
    torch.testing.assert_close(torch.from_numpy(table.scores()[chosen]), direct[chosen], rtol=1e-5, atol=1e-7)
    assert table.num_scored == len(chosen)


def test_concat_dataset(tmp_path: Path, fmnist_small: TensorDataset, photos: torch.Tensor) -> None:
    metric = create_metric("contrast")
    grey = fmnist_small.tensors[0][:6].float().div(255).expand(-1, 3, -1, -1)
    resized = torch.nn.functional.interpolate(photos[:4], size=(28, 28), mode="area").clamp(0, 1)
    concat = ConcatDataset([TensorDataset(grey, torch.zeros(6)), TensorDataset(resized, torch.ones(4))])
    store = ScoreStore(tmp_path / "s", len(concat))
    loader = QualityLoader(DataLoader(QualityDataset(concat, output="dict"), batch_size=4), metric, store=store)
    batches = list(loader)
    assert set(batches[0]) == {"image", "target", "quality", "difficulty"}
    assert torch.equal(torch.cat([b["quality"] for b in batches]), metric(torch.cat([grey, resized])).double())


def test_dict_samples_and_difficulty(fmnist_small: TensorDataset, calibrated_brightness: QualityMetric) -> None:
    images = fmnist_small.tensors[0][:8]
    data = ListDataset([{"pixels": images[i], "id": f"s{i}"} for i in range(8)])
    loader = QualityLoader(DataLoader(QualityDataset(data, image_key="pixels"), batch_size=8), calibrated_brightness)
    (batch,) = list(loader)
    assert set(batch) == {"pixels", "id", "quality", "difficulty"}
    expected = calibrated_brightness(images).double()
    assert torch.equal(batch["quality"], expected)
    assert torch.allclose(batch["difficulty"], calibrated_brightness.difficulty(expected))
    loader = QualityLoader(DataLoader(QualityDataset(data, image_key="pixels"), batch_size=8), calibrated_brightness, difficulty=False)
    assert "difficulty" not in next(iter(loader))


def test_variable_size_images_with_list_collate(photos: torch.Tensor, sharpness: QualityMetric) -> None:
    samples = [(photos[i, :, : 32 + 16 * (i % 3), : 40 + 8 * (i % 2)], i) for i in range(9)]

    def keep_list(items: list[Any]) -> tuple[list[torch.Tensor], torch.Tensor, torch.Tensor]:
        return [s[0] for s in items], torch.tensor([s[1] for s in items]), torch.tensor([s[2] for s in items])

    metric = CountingMetric(sharpness)
    loader = QualityLoader(DataLoader(QualityDataset(ListDataset(samples)), batch_size=5, collate_fn=keep_list), metric)
    qualities = torch.cat([batch[2] for batch in loader])  # (images, ids, quality, difficulty)
    expected = torch.cat([sharpness(image[None]) for image, _ in samples]).double()
    assert torch.allclose(qualities, expected, rtol=1e-5, atol=0)
    assert metric.scored == 9


def test_bad_input(tmp_path: Path, fmnist_small: TensorDataset, sharpness: QualityMetric) -> None:
    with pytest.raises(TypeError, match="loader.dataset should be a QualityDataset"):
        QualityLoader(DataLoader(fmnist_small), sharpness)
    with pytest.raises(TypeError, match="around TensorDataset"):
        QualityLoader(DataLoader(Subset(fmnist_small, [1, 2])), sharpness)
    with pytest.raises(ValueError, match="loader.dataset should be a deferred QualityDataset"):
        QualityLoader(DataLoader(QualityDataset(fmnist_small, sharpness)), sharpness)
    with pytest.raises(TypeError, match="loader should be a torch.utils.data.DataLoader"):
        QualityLoader(QualityDataset(fmnist_small), sharpness)  # type: ignore[arg-type]
    deferred = DataLoader(QualityDataset(fmnist_small), batch_size=8)
    with pytest.raises(ValueError, match="store should hold scores for len"):
        QualityLoader(deferred, sharpness, store=ScoreStore(tmp_path / "s", 10))
    with pytest.raises(ValueError, match="metric should be a no-reference metric"):
        QualityLoader(deferred, create_metric("ssim"))
    with pytest.raises(TypeError, match="difficulty should be a bool or None"):
        QualityLoader(deferred, sharpness, difficulty=1)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="device should be a str"):
        QualityLoader(deferred, sharpness, 0)  # type: ignore[arg-type]


def test_bad_images_in_batch(sharpness: QualityMetric) -> None:
    four_channels = QualityLoader(DataLoader(QualityDataset(ListDataset([(torch.zeros(4, 8, 8),)] * 2)), batch_size=2), sharpness)
    with pytest.raises(ValueError, match=r"images should be a tensor of shape \(B, C, H, W\) with C in \{1, 3\}"):
        next(iter(four_channels))
    normalised = QualityLoader(DataLoader(QualityDataset(ListDataset([(torch.full((3, 8, 8), -1.0),)] * 2)), batch_size=2), sharpness)
    with pytest.raises(ValueError, match=r"images should have float values in \[0, 1\]"):
        next(iter(normalised))


@pytest.mark.parametrize("output", ["auto", "dict"])
def test_one_batch_layout_with_and_without_calibration(fmnist_small: TensorDataset, sharpness: QualityMetric,
                                                      calibrated_brightness: QualityMetric, output: str) -> None:
    """The README loop ``for image, label, quality, difficulty in loader`` works with every metric."""
    layouts = []
    for metric in (calibrated_brightness, sharpness):
        loader = QualityLoader(DataLoader(QualityDataset(fmnist_small, output=output), batch_size=16), metric)
        batch = next(iter(loader))
        layouts.append(len(batch) if output == "auto" else sorted(batch))
        difficulty = batch[3] if output == "auto" else batch["difficulty"]
        quality = batch[2] if output == "auto" else batch["quality"]
        assert difficulty.dtype == torch.float64 and difficulty.shape == (16,)
        if metric.calibration is None:
            assert torch.isnan(difficulty).all()
        else:
            assert torch.equal(difficulty, metric.difficulty(quality).double()) and not torch.isnan(difficulty).any()
        if output == "auto":
            for image, label, quality, difficulty in loader:  # the README's loop
                assert image.shape[0] == label.shape[0] == quality.shape[0] == difficulty.shape[0]
    assert layouts[0] == layouts[1] == (4 if output == "auto" else ["difficulty", "image", "quality", "target"])
    explicit = QualityLoader(DataLoader(QualityDataset(fmnist_small), batch_size=16), sharpness, difficulty=False)
    assert len(next(iter(explicit))) == 3  # only an explicit difficulty=False removes the field

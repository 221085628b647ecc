"""precompute: fills the store with the metric's scores, resumes after an interruption."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch.utils.data import Dataset, TensorDataset

from qualoader.data import ScoreStore, StoreError, precompute
from qualoader.metrics import QualityMetric


class Interrupted(RuntimeError):
    pass


class FailingAfter(QualityMetric):
    """The wrapped metric (same name and config, so the same fingerprint) that raises on call ``k + 1``."""

    def __init__(self, inner: QualityMetric, k: int) -> None:
        super().__init__()
        self.inner, self.k, self.calls = inner, k, 0
        self.name = inner.name

    def get_config(self) -> dict[str, Any]:
        return self.inner.get_config()

    def score(self, images: torch.Tensor, reference: torch.Tensor | None = None) -> torch.Tensor:
        if self.calls == self.k:
            raise Interrupted(f"interrupted after {self.k} batches")
        self.calls += 1
        return self.inner.score(images)


class ListDataset(Dataset[Any]):
    def __init__(self, samples: list[Any]) -> None:
        self.samples = samples

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> Any:
        return self.samples[index]


def test_fills_store_with_direct_scores(tmp_path: Path, fmnist_small: TensorDataset, sharpness: QualityMetric) -> None:
    table = precompute(fmnist_small, sharpness, tmp_path / "s", batch_size=40, progress=False)
    assert table.complete and table.length == 96
    assert np.array_equal(table.scores(), sharpness(fmnist_small.tensors[0]).double().numpy())
    assert ScoreStore(tmp_path / "s").table(sharpness).complete


def test_interrupt_and_resume_equals_uninterrupted(tmp_path: Path, fmnist_small: TensorDataset, sharpness: QualityMetric) -> None:
    reference = precompute(fmnist_small, sharpness, ScoreStore(tmp_path / "a", 96), batch_size=16, progress=False)
    store = ScoreStore(tmp_path / "b", 96)
    failing = FailingAfter(sharpness, k=3)
    assert failing.fingerprint() == sharpness.fingerprint()
    with pytest.raises(Interrupted):
        precompute(fmnist_small, failing, store, batch_size=16, progress=False)
    partial = store.table(sharpness)
    assert partial.num_scored == 48 and partial.missing().tolist() == list(range(48, 96))
    resumed = FailingAfter(sharpness, k=100)
    table = precompute(fmnist_small, resumed, store, batch_size=16, progress=False)
    assert resumed.calls == 3  # only the 48 missing samples were scored
    assert np.array_equal(table.scores(), reference.scores()) and table.complete


def test_complete_store_loads_nothing(tmp_path: Path, fmnist_small: TensorDataset, sharpness: QualityMetric) -> None:
    store = ScoreStore(tmp_path / "s", 96)
    precompute(fmnist_small, sharpness, store, progress=False, dataset_id="fmnist-96")

    class Exploding(TensorDataset):
        def __getitem__(self, index: int) -> Any:
            raise AssertionError("a complete store should not load samples")

    # with a dataset_id the identity needs no sample either (a content hash would load a few)
    assert precompute(Exploding(*fmnist_small.tensors), sharpness, store, progress=False, dataset_id="fmnist-96").complete


def test_workers_and_variable_sizes(tmp_path: Path, photos: torch.Tensor, sharpness: QualityMetric) -> None:
    samples = [{"image": photos[i, :, : 48 + 16 * (i % 2)], "name": str(i)} for i in range(len(photos))]
    table = precompute(ListDataset(samples), sharpness, tmp_path / "s", batch_size=4, num_workers=2, progress=False)
    expected = torch.cat([sharpness(s["image"][None]) for s in samples]).double().numpy()
    assert np.allclose(table.scores(), expected, rtol=1e-5, atol=0)


def test_bad_input(tmp_path: Path, fmnist_small: TensorDataset, sharpness: QualityMetric) -> None:
    ScoreStore(tmp_path / "s", 95)
    with pytest.raises(StoreError, match="length should be the store's dataset length 95, but got length=96"):
        precompute(fmnist_small, sharpness, tmp_path / "s", progress=False)
    with pytest.raises(ValueError, match="store should hold scores for len"):
        precompute(fmnist_small, sharpness, ScoreStore(tmp_path / "s"), progress=False)
    with pytest.raises(TypeError, match="store should be a ScoreStore, a ScoreTable or a store folder, but got store=None"):
        precompute(fmnist_small, sharpness, None)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="dataset should be a map-style Dataset"):
        precompute(iter([]), sharpness, tmp_path / "t")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="batch_size should be a positive int"):
        precompute(fmnist_small, sharpness, tmp_path / "t", batch_size=0)
    with pytest.raises(TypeError, match=r"dataset\[0\] should be a tuple/list"):
        precompute(ListDataset([1, 2]), sharpness, tmp_path / "u", progress=False)
    with pytest.raises(ValueError, match=r"images should have C in \{1, 3\} channels|image should be a tensor of shape"):
        precompute(ListDataset([torch.zeros(5, 8, 8)]), sharpness, tmp_path / "v", progress=False)

"""Several metrics per decode: QualityLoader, QualityDataset and precompute with ``metrics=``."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, Dataset, TensorDataset

from qualoader.data import QualityDataset, QualityLoader, ScoreStore, precompute
from qualoader.engine import ScoringEngine
from qualoader.metrics import QualityMetric, create_metric

NAMES = ["sharpness", "brightness", "contrast"]


class CountingDataset(Dataset[Any]):
    """Counts ``__getitem__`` calls (one per decode); optionally fails once at ``fail_at``."""

    def __init__(self, inner: TensorDataset, fail_at: int | None = None) -> None:
        self.inner = inner
        self.loads = 0
        self.fail_at = fail_at

    def __len__(self) -> int:
        return len(self.inner)

    def __getitem__(self, index: int) -> Any:
        if index == self.fail_at:
            self.fail_at = None
            raise RuntimeError("interrupted")
        self.loads += 1
        return self.inner[index]


@pytest.fixture
def engine_calls(monkeypatch: pytest.MonkeyPatch) -> list[list[str]]:
    """The metric names of every ``ScoringEngine.score`` call (one entry per call)."""
    calls: list[list[str]] = []
    original = ScoringEngine.score

    def counting(self: ScoringEngine, images: Any, names: Any = None, **kwargs: Any) -> Any:
        calls.append(list(self.names if names is None else names))
        return original(self, images, names, **kwargs)

    monkeypatch.setattr(ScoringEngine, "score", counting)
    return calls


def _direct(name: str, images: torch.Tensor) -> torch.Tensor:
    return create_metric(name)(images).double()


def test_loader_dict_layout_one_pass(
    fmnist_small: TensorDataset, calibrated_brightness: QualityMetric, engine_calls: list[list[str]]
) -> None:
    counted = CountingDataset(fmnist_small)
    loader = DataLoader(QualityDataset(counted), batch_size=32)
    wrapped = QualityLoader(loader, metrics=["sharpness", calibrated_brightness, "contrast"], device="cpu")
    batches = list(wrapped)
    # one decode per sample and one engine call per batch, for all metrics
    assert counted.loads == 96 and len(engine_calls) == 3 and all(names == NAMES for names in engine_calls)
    images = fmnist_small.tensors[0]
    for b, (image, label, quality, difficulty) in enumerate(batches):
        assert list(quality) == NAMES and list(difficulty) == NAMES
        rows = slice(32 * b, 32 * (b + 1))
        for name in NAMES:
            assert quality[name].dtype == torch.float64 and quality[name].shape == (32,)
            torch.testing.assert_close(quality[name], _direct(name, images[rows]))
        torch.testing.assert_close(difficulty["brightness"], calibrated_brightness.difficulty(quality["brightness"]).double())
        assert difficulty["sharpness"].isnan().all() and difficulty["contrast"].isnan().all()
        assert not difficulty["brightness"].isnan().any()


def test_loader_single_metric_keeps_tensors(fmnist_small: TensorDataset, sharpness: QualityMetric) -> None:
    loader = DataLoader(QualityDataset(fmnist_small), batch_size=48)
    image, label, quality, difficulty = next(iter(QualityLoader(loader, sharpness, "cpu")))
    assert isinstance(quality, torch.Tensor) and quality.shape == (48,) and difficulty.shape == (48,)
    # metrics= always gives dicts, even for one name: code written for a list never changes shape with its length
    image, label, by_name, hardness = next(iter(QualityLoader(loader, metrics=["sharpness"], device="cpu")))
    assert list(by_name) == ["sharpness"] and torch.equal(by_name["sharpness"], quality)
    assert hardness["sharpness"].isnan().all()


def test_loader_dict_batches(fmnist_small: TensorDataset) -> None:
    class Dicts(Dataset[Any]):
        def __len__(self) -> int:
            return len(fmnist_small)

        def __getitem__(self, index: int) -> dict[str, Any]:
            image, label = fmnist_small[index]
            return {"image": image, "label": label}

    loader = DataLoader(QualityDataset(Dicts(), return_index=True), batch_size=16)
    batch = next(iter(QualityLoader(loader, metrics="brightness,contrast", difficulty=False)))
    assert set(batch) == {"image", "label", "quality", "index"}
    torch.testing.assert_close(batch["quality"]["contrast"], _direct("contrast", fmnist_small.tensors[0][:16]))


def test_loader_store_one_table_per_metric(tmp_path: Path, fmnist_small: TensorDataset, engine_calls: list[list[str]]) -> None:
    store = ScoreStore(tmp_path / "s", len(fmnist_small))
    images = fmnist_small.tensors[0]
    store.table(create_metric("brightness"), create=True).write(range(96), _direct("brightness", images))  # already stored
    loader = QualityLoader(DataLoader(QualityDataset(fmnist_small), batch_size=32), metrics=NAMES, store=store)
    first = list(loader)
    # brightness is read, never rescored: each batch makes one engine call for the two others
    assert engine_calls == [["sharpness", "contrast"]] * 3 and loader.scored_batches == 3
    for name in NAMES:
        table = store.table(create_metric(name))
        assert table.complete
        np.testing.assert_allclose(table.scores(), _direct(name, images).numpy())
    second = list(loader)
    assert len(engine_calls) == 3 and loader.scored_batches == 3  # epoch 2 only reads
    for a, b in zip(first, second):
        for name in NAMES:
            assert torch.equal(a[2][name], b[2][name])


def test_dataset_dict_layout_one_decode(tmp_path: Path, fmnist_small: TensorDataset, engine_calls: list[list[str]]) -> None:
    counted = CountingDataset(fmnist_small)
    data = QualityDataset(counted, metrics="classical")
    image, label, quality, difficulty = data[7]
    assert counted.loads == 1 and len(engine_calls) == 1 and len(quality) == 9  # nine measures from one decode
    assert quality["sharpness"] == pytest.approx(float(_direct("sharpness", fmnist_small.tensors[0][7:8])[0]))
    assert all(math.isnan(value) for value in difficulty.values())
    batch = next(iter(DataLoader(QualityDataset(fmnist_small, metrics=NAMES), batch_size=8)))
    assert list(batch[2]) == NAMES and batch[2]["contrast"].dtype == torch.float64 and batch[2]["contrast"].shape == (8,)
    assert data.score_sample(7) == quality
    in_workers = next(iter(DataLoader(QualityDataset(fmnist_small, metrics=NAMES), batch_size=8, num_workers=2)))  # picklable engine
    assert all(torch.equal(in_workers[2][name], batch[2][name]) for name in NAMES)
    # with a filled store, per-sample reads never call the engine
    store = ScoreStore(tmp_path / "s", len(fmnist_small))
    for name in NAMES:
        store.table(create_metric(name), create=True).write(range(96), _direct(name, fmnist_small.tensors[0]))
    engine_calls.clear()
    stored = QualityDataset(fmnist_small, metrics=NAMES, store=store, difficulty=False, output="dict")
    sample = stored[3]
    assert engine_calls == [] and set(sample) == {"image", "target", "quality"}
    assert sample["quality"]["brightness"] == store.table(create_metric("brightness")).get(3)


def test_precompute_one_decode_fills_every_table(tmp_path: Path, fmnist_small: TensorDataset) -> None:
    counted = CountingDataset(fmnist_small)
    # a dataset_id instead of a sampled content hash, so every __getitem__ counted is a decode of the pass
    tables = precompute(counted, metrics=NAMES, store=tmp_path / "multi", batch_size=16, progress=False, dataset_id="fmnist-96")
    assert isinstance(tables, dict) and list(tables) == NAMES and counted.loads == 96  # not 3 x 96
    for name in NAMES:
        single = precompute(fmnist_small, create_metric(name), tmp_path / name, batch_size=16, progress=False)
        assert tables[name].complete
        np.testing.assert_array_equal(tables[name].scores(), single.scores())
    assert sorted(table.metric_name for table in ScoreStore(tmp_path / "multi").tables()) == sorted(NAMES)


def test_precompute_resumes_and_adds_metrics(tmp_path: Path, fmnist_small: TensorDataset) -> None:
    clean = precompute(fmnist_small, metrics=NAMES, store=tmp_path / "clean", batch_size=16, progress=False)
    broken = CountingDataset(fmnist_small, fail_at=40)
    store = ScoreStore(tmp_path / "s", len(fmnist_small), dataset_id="fmnist-96")  # no content hash: loads count decodes only
    with pytest.raises(RuntimeError, match="interrupted"):
        precompute(broken, metrics=NAMES, store=store, batch_size=16, progress=False)
    assert all(store.table(create_metric(name)).num_scored == 32 for name in NAMES)  # two whole batches
    broken.loads = 0
    resumed = precompute(broken, metrics=NAMES, store=store, batch_size=16, progress=False)
    assert broken.loads == 96 - 32
    for name in NAMES:
        np.testing.assert_array_equal(resumed[name].scores(), clean[name].scores())
    # a new metric on a filled store: one more decode pass, only for it; the old tables are untouched
    broken.loads = 0
    grown = precompute(broken, metrics=[*NAMES, "noise"], store=store, batch_size=16, progress=False)
    assert broken.loads == 96 and grown["noise"].complete
    assert precompute(broken, metrics=NAMES, store=store, progress=False)["sharpness"].complete and broken.loads == 96  # nothing to do


def test_bad_arguments(tmp_path: Path, fmnist_small: TensorDataset, sharpness: QualityMetric) -> None:
    store = ScoreStore(tmp_path / "s", len(fmnist_small))
    table = store.table(sharpness, create=True)
    loader = DataLoader(QualityDataset(fmnist_small), batch_size=8)
    with pytest.raises(ValueError, match="store should be a ScoreStore or a store folder when several metrics are given"):
        QualityLoader(loader, metrics=NAMES, store=table)
    with pytest.raises(ValueError, match="metric and metrics should not both be given"):
        QualityDataset(fmnist_small, sharpness, metrics="noise")
    with pytest.raises(ValueError, match="metric or metrics should be given"):
        QualityLoader(loader)
    with pytest.raises(ValueError, match="metric or metrics should be given"):
        precompute(fmnist_small, store=tmp_path / "t")
    with pytest.raises(ValueError, match="metrics should be no-reference metrics"):
        precompute(fmnist_small, metrics="sharpness,ssim", store=tmp_path / "t")
    with pytest.raises(KeyError, match="did you mean"):
        QualityDataset(fmnist_small, metrics="sharpnes")
    with pytest.raises(TypeError, match="metrics should be a metric name"):
        QualityLoader(loader, metrics=3)  # type: ignore[arg-type]

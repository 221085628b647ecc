"""Export: store and shard columns, pandas / Arrow tables, CSV / JSON lines / Parquet files (atomic)."""

from __future__ import annotations

import csv
import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import TensorDataset
from torchvision.datasets import ImageFolder

from qualoader.data import ScoreStore, precompute
from qualoader.data.export import shard_columns, store_columns, store_to_arrow, store_to_pandas, write_columns
from qualoader.metrics import QualityMetric, create_metric
from qualoader.webdataset import score_shard, sidecar_path, write_image_shards


@pytest.fixture
def folder_store(tmp_path: Path, image_folder: Path, sharpness: QualityMetric, calibrated_brightness: QualityMetric) -> ScoreStore:
    """A store of the 12-image folder: sharpness (uncalibrated) complete, calibrated brightness on the first 5."""
    folder = ImageFolder(str(image_folder))
    precompute(folder, sharpness, tmp_path / "s", progress=False)
    store = ScoreStore(tmp_path / "s")
    store.table(calibrated_brightness, create=True).write(range(5), [0.1, 0.2, 0.3, 0.4, 0.5])
    return store


def test_store_columns(
    folder_store: ScoreStore, image_folder: Path, sharpness: QualityMetric, calibrated_brightness: QualityMetric
) -> None:
    columns = store_columns(folder_store)
    assert list(columns) == ["index", "path", "brightness", "brightness_difficulty", "sharpness", "sharpness_difficulty"]
    assert columns["index"].tolist() == list(range(12))
    assert columns["path"] == [Path(p).relative_to(image_folder).as_posix() for p, _ in ImageFolder(str(image_folder)).samples]
    assert np.array_equal(columns["sharpness"], folder_store.table(sharpness).scores())
    assert np.isnan(columns["sharpness_difficulty"]).all()  # no calibration: NaN, the column is still there
    brightness = columns["brightness"]
    assert brightness[:5].tolist() == [0.1, 0.2, 0.3, 0.4, 0.5] and np.isnan(brightness[5:]).all()
    expected = calibrated_brightness.difficulty(torch.tensor(brightness[:5], dtype=torch.float64)).double().numpy()
    assert np.allclose(columns["brightness_difficulty"][:5], expected) and np.isnan(columns["brightness_difficulty"][5:]).all()


def test_two_configurations_get_fingerprinted_names(tmp_path: Path, fmnist_small: TensorDataset) -> None:
    a, b = create_metric("entropy", bins=256), create_metric("entropy", bins=64)
    precompute(fmnist_small, a, tmp_path / "s", progress=False, dataset_id="fm")
    precompute(fmnist_small, b, tmp_path / "s", progress=False, dataset_id="fm")
    columns = store_columns(ScoreStore(tmp_path / "s"))
    assert f"entropy-{a.fingerprint()}" in columns and f"entropy-{b.fingerprint()}_difficulty" in columns
    assert columns["key"] == [None] * 96  # no keys recorded for an in-memory dataset without keys


def test_pandas_and_arrow(folder_store: ScoreStore) -> None:
    frame = store_to_pandas(folder_store)
    columns = store_columns(folder_store)
    assert frame.columns.tolist() == list(columns) and len(frame) == 12
    assert np.array_equal(frame["sharpness"].to_numpy(), columns["sharpness"])
    assert frame["path"].tolist() == columns["path"]
    table = store_to_arrow(folder_store)
    assert table.num_rows == 12 and table.column_names == list(columns)
    assert table["brightness"].null_count == 7 and table["sharpness_difficulty"].null_count == 12
    assert table["sharpness"].to_pylist() == columns["sharpness"].tolist()


def test_missing_pandas_is_one_clear_error(folder_store: ScoreStore, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pandas", None)  # import pandas now raises ImportError
    with pytest.raises(ImportError, match=r"this export needs pandas, but got no pandas installed; pip install 'qualoader\[export\]'"):
        store_to_pandas(folder_store)


@pytest.mark.parametrize("output_format", ["csv", "jsonl", "parquet"])
def test_files_roundtrip_exactly(folder_store: ScoreStore, tmp_path: Path, output_format: str) -> None:
    columns = store_columns(folder_store)
    path = write_columns(columns, tmp_path / f"scores.{output_format}", output_format)
    if output_format == "csv":
        with path.open(newline="") as file:
            rows = list(csv.DictReader(file))
        back = {name: [row[name] for row in rows] for name in columns}
        for name in ("sharpness", "brightness"):
            assert [float(v) if v else math.nan for v in back[name]] == pytest.approx(columns[name].tolist(), nan_ok=True, rel=0, abs=0)
        assert back["path"] == columns["path"] and back["sharpness_difficulty"] == [""] * 12
    elif output_format == "jsonl":
        rows = [json.loads(line) for line in path.read_text().splitlines()]
        assert [r["index"] for r in rows] == list(range(12)) and [r["path"] for r in rows] == columns["path"]
        assert [r["sharpness"] for r in rows] == columns["sharpness"].tolist()
        assert rows[7]["brightness"] is None and rows[0]["sharpness_difficulty"] is None
    else:
        import pandas as pd

        frame = pd.read_parquet(path)
        assert frame.columns.tolist() == list(columns)
        assert np.array_equal(frame["sharpness"].to_numpy(), columns["sharpness"])
        assert frame["brightness"].isna().sum() == 7
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temporary file left


def test_failed_write_keeps_the_old_file(tmp_path: Path) -> None:
    target = tmp_path / "scores.jsonl"
    target.write_text("old\n")
    with pytest.raises(ValueError, match="columns should all have the same length"):
        write_columns({"index": np.arange(3), "x": np.ones(2)}, target, "jsonl")

    class Exploding(list):
        def __getitem__(self, index: object) -> object:
            if index == 2:
                raise RuntimeError("disk went away")
            return super().__getitem__(index)  # type: ignore[index]

    with pytest.raises(RuntimeError, match="disk went away"):
        write_columns({"index": np.arange(3), "key": Exploding(["a", "b", "c"])}, target, "jsonl")
    assert target.read_text() == "old\n" and sorted(p.name for p in tmp_path.iterdir()) == ["scores.jsonl"]
    with pytest.raises(ValueError, match=r"output_format should be one of \{'csv', 'jsonl', 'parquet'\}"):
        write_columns({"index": np.arange(3)}, target, "xlsx")


def test_shard_columns(tmp_path: Path, fmnist_small: TensorDataset) -> None:
    shards = write_image_shards(fmnist_small.tensors[0][:30], str(tmp_path / "in-%06d.tar"), maxcount=20)
    metric = create_metric("contrast")
    indexes = []
    for shard in shards:
        index = score_shard(str(shard), metric)
        index.write(sidecar_path(shard))
        indexes.append(index)
    columns = shard_columns(str(tmp_path / "in-{000000..000001}.tar"))
    assert list(columns) == ["index", "shard", "key", "contrast", "contrast_difficulty"]
    assert columns["index"].tolist() == list(range(30))
    assert columns["shard"] == [str(shards[0])] * 20 + [str(shards[1])] * 10
    assert columns["key"] == indexes[0].keys + indexes[1].keys
    expected = torch.cat([index.scores("contrast") for index in indexes]).numpy()
    assert np.array_equal(columns["contrast"], expected)
    assert np.allclose(columns["contrast"], metric(fmnist_small.tensors[0][:30]).double().numpy(), rtol=1e-5)
    sidecar_path(shards[1]).unlink()
    with pytest.raises(FileNotFoundError, match="without .*in-000001.tar.quality.json'; run qualoader tag or qualoader score"):
        shard_columns([str(s) for s in shards])


def test_csv_cells_that_start_a_formula_are_text(tmp_path: Path) -> None:
    keys = ["=1+1", "+A1", "-A1", "@SUM(A1)", "\tx", "\rx", "plain", "a=b"]
    columns = {"index": np.arange(8), "key": keys, "=score": np.array([-1.5, 2.0, np.nan, 0.0, 1e-9, -0.0, 3.0, 4.0])}
    write_columns(columns, tmp_path / "t.csv", "csv")
    with open(tmp_path / "t.csv", newline="") as handle:
        rows = list(csv.reader(handle))
    assert rows[0] == ["index", "key", "'=score"]
    assert [row[1] for row in rows[1:]] == ["'=1+1", "'+A1", "'-A1", "'@SUM(A1)", "'\tx", "'\rx", "plain", "a=b"]
    # numbers stay numbers, negative ones included, and read back bit for bit
    assert [row[2] for row in rows[1:]] == ["-1.5", "2.0", "", "0.0", "1e-09", "-0.0", "3.0", "4.0"]
    write_columns(columns, tmp_path / "t.jsonl", "jsonl")  # JSON is not run by spreadsheets: kept as they are
    assert [json.loads(line)["key"] for line in (tmp_path / "t.jsonl").read_text().splitlines()] == keys

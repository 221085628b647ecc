"""``qualoader export``: columns named by metric and profile (stable when a second profile is stored), chosen by
``--metric`` / ``--profile``; CSV cells that a spreadsheet would run are escaped; non-UTF-8 file names export."""

from __future__ import annotations

import csv
import json
import os
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from torchvision.datasets import ImageFolder

from qualoader.cli import main
from qualoader.data import ScoreStore, precompute
from qualoader.metrics import create_metric
from qualoader.profiles import load_profile, save_profile
from tests.helpers import save_photo_crops


@pytest.fixture
def two_profiles_store(tmp_path: Path, copied_default: Path) -> tuple[Path, Path]:
    """A store with the shipped bn-shift and a user's bn-shift profile of other params (two tables of one metric)."""
    shipped = load_profile(copied_default)
    params = {**shipped.metric.params, "variance_floor": 0.02}
    mine = replace(shipped, name="my-bn", metric=replace(shipped.metric, params=params), path=None)
    mine_path = save_profile(mine, tmp_path / "mine.json")
    store = tmp_path / "store"
    base = ["precompute", "fashion-mnist:test", "--limit", "12", "--store", str(store), "--no-progress"]
    assert main([*base, "--metric", "bn-shift"]) == 0
    return store, mine_path


def _jsonl(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_columns_keep_their_names_and_are_selected(two_profiles_store: tuple[Path, Path], tmp_path: Path) -> None:
    store, mine = two_profiles_store
    assert main(["export", str(store), "-o", str(tmp_path / "one.jsonl")]) == 0
    assert list(_jsonl(tmp_path / "one.jsonl")[0]) == ["index", "key", "bn-shift", "bn-shift_difficulty"]
    base = ["precompute", "fashion-mnist:test", "--limit", "12", "--store", str(store), "--no-progress"]
    assert main([*base, "--profile", str(mine)]) == 0
    assert main(["export", str(store), "-o", str(tmp_path / "all.jsonl")]) == 0
    shipped_name = load_profile(Path(__file__).parents[2] / "qualoader" / "assets" / "profile_fashion-mnist_bn-shift.json").name
    rows = _jsonl(tmp_path / "all.jsonl")
    # two profiles of one metric: each column carries its profile's name, the one `profile show` prints
    assert sorted(rows[0]) == sorted(
        ["index", "key", f"bn-shift-{shipped_name}", f"bn-shift-{shipped_name}_difficulty", "bn-shift-my-bn", "bn-shift-my-bn_difficulty"]
    )
    # --profile selects its column, --metric the shipped one, under the same names as in the full table
    assert main(["export", str(store), "--profile", str(mine), "-o", str(tmp_path / "mine.jsonl")]) == 0
    assert list(_jsonl(tmp_path / "mine.jsonl")[0]) == ["index", "key", "bn-shift-my-bn", "bn-shift-my-bn_difficulty"]
    assert [r["bn-shift-my-bn"] for r in _jsonl(tmp_path / "mine.jsonl")] == [r["bn-shift-my-bn"] for r in rows]
    assert main(["export", str(store), "--metric", "bn-shift", "-o", str(tmp_path / "shipped.csv")]) == 0
    with open(tmp_path / "shipped.csv", newline="") as handle:
        header = next(csv.reader(handle))
    assert header == ["index", "key", f"bn-shift-{shipped_name}", f"bn-shift-{shipped_name}_difficulty"]


def test_formula_cells_and_non_utf8_names(tmp_path: Path, photos: torch.Tensor) -> None:
    folder = tmp_path / "images"
    # class folders (the first part of each exported path): a formula, a number-like name, a Latin-1 (not UTF-8) name
    classes = [b"=HYPERLINK(1)", b"-2", b"caf\xe9"]
    for k, name in enumerate(classes):
        (path,) = save_photo_crops(tmp_path / f"tmp{k}", photos[k:], count=1, side=16)
        target = os.path.join(os.fsencode(folder), name)
        os.makedirs(target)
        os.rename(path, os.path.join(target, b"x.png"))
    dataset = ImageFolder(str(folder))  # the Latin-1 name does not block the folder
    assert len(dataset) == 3
    precompute(dataset, create_metric("brightness"), tmp_path / "s", progress=False)
    for suffix in ("csv", "jsonl", "parquet"):
        assert main(["export", str(tmp_path / "s"), "-o", str(tmp_path / f"t.{suffix}")]) == 0
    with open(tmp_path / "t.csv", newline="", encoding="utf-8") as handle:
        rows = list(csv.reader(handle))
    # a spreadsheet shows these as text, never runs them; the Latin-1 byte is written as \xe9
    assert sorted(row[1] for row in rows[1:]) == sorted(["'=HYPERLINK(1)/x.png", "'-2/x.png", "caf\\xe9/x.png"])
    brightness = [row[2] for row in rows[1:]]
    assert all(0 < float(b) < 1 and not b.startswith("'") for b in brightness)  # numbers stay numbers
    import pandas as pd

    frame = pd.read_parquet(tmp_path / "t.parquet")
    expected = sorted(["=HYPERLINK(1)/x.png", "-2/x.png", "caf\\xe9/x.png"])  # only CSV needs the quote
    assert sorted(frame["path"].tolist()) == expected
    assert sorted(json.loads(line)["path"] for line in (tmp_path / "t.jsonl").read_text().splitlines()) == expected
    np.testing.assert_allclose(frame["brightness"].to_numpy(), ScoreStore(tmp_path / "s").table(create_metric("brightness")).scores())

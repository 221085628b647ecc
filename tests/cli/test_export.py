"""``qualoader export``: a store or tagged shards to CSV / Parquet / JSON lines, one-line user errors."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from qualoader.cli import main
from qualoader.data import ScoreStore, store_to_pandas
from qualoader.metrics import create_metric
from qualoader.webdataset import score_shard, sidecar_path, write_image_shards
from tests.helpers import precompute_argv, save_photo_crops


@pytest.fixture
def store(tmp_path: Path, photos: torch.Tensor) -> Path:
    """``qualoader precompute`` of a 6-image folder, one of them unreadable (skipped)."""
    broken = save_photo_crops(tmp_path / "images" / "c", photos, count=6, side=24)[3]
    broken.write_bytes(broken.read_bytes()[:200])
    assert main(precompute_argv(tmp_path / "images", tmp_path / "s", "--on-error", "skip")) == 0
    return tmp_path / "s"


def test_store_to_csv_and_jsonl(store: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    capsys.readouterr()
    assert main(["export", str(store), "--output", str(tmp_path / "scores.csv")]) == 0
    assert "exported 6 rows of score store" in capsys.readouterr().out
    scores = ScoreStore(store).table(create_metric("sharpness")).scores()
    with (tmp_path / "scores.csv").open(newline="") as file:
        rows = list(csv.DictReader(file))
    assert [row["path"] for row in rows] == [f"c/{k}.png" for k in range(6)]
    assert [row["sharpness"] for row in rows][3] == ""  # the skipped, unreadable image
    assert [float(row["sharpness"]) for k, row in enumerate(rows) if k != 3] == scores[[0, 1, 2, 4, 5]].tolist()
    assert main(["export", str(store), "--format", "jsonl", "-o", str(tmp_path / "scores.txt")]) == 0
    lines = [json.loads(line) for line in (tmp_path / "scores.txt").read_text().splitlines()]
    assert lines[3] == {"index": 3, "path": "c/3.png", "sharpness": None, "sharpness_difficulty": None}


def test_store_to_parquet(store: Path, tmp_path: Path) -> None:
    import pandas as pd

    assert main(["export", str(store), "--output", str(tmp_path / "scores.parquet")]) == 0
    frame = pd.read_parquet(tmp_path / "scores.parquet")
    expected = store_to_pandas(ScoreStore(store))
    assert frame.columns.tolist() == expected.columns.tolist() == ["index", "path", "sharpness", "sharpness_difficulty"]
    assert np.array_equal(frame["sharpness"].to_numpy(), expected["sharpness"].to_numpy(), equal_nan=True)


def test_tagged_shards(tmp_path: Path, photos: torch.Tensor) -> None:
    images = (photos[:8, :, :32, :32] * 255).round().to(torch.uint8)  # PNG is lossless for uint8
    shards = write_image_shards(images, str(tmp_path / "d-%06d.tar"), maxcount=5)
    for shard in shards:
        score_shard(str(shard), "contrast").write(sidecar_path(shard))
    assert main(["export", str(tmp_path / "d-{000000..000001}.tar"), "-o", str(tmp_path / "out.jsonl")]) == 0
    rows = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert [r["shard"] for r in rows] == [str(shards[0])] * 5 + [str(shards[1])] * 3
    expected = create_metric("contrast")(images).double()
    assert torch.allclose(torch.tensor([r["contrast"] for r in rows], dtype=torch.float64), expected, rtol=1e-5)


def test_user_errors_are_one_line(store: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    capsys.readouterr()
    cases = [
        (["export", str(store), "-o", str(tmp_path / "scores.xlsx")], "--format should be given (csv, jsonl or parquet)"),
        (["export", str(store), "-o", str(tmp_path / "missing" / "a.csv")], "--output should be in an existing folder"),
        (["export", str(tmp_path / "images"), "-o", str(tmp_path / "a.csv")], "SOURCE should be webdataset shards for this command"),
        (["export", str(tmp_path / "none.tar"), "-o", str(tmp_path / "a.csv")], "without"),
    ]
    for argv, message in cases:
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert err.startswith("qualoader export: error: ") and message in err and err.count("\n") == 1
    assert not (tmp_path / "a.csv").exists()


@pytest.mark.parametrize("target", ["store.json", "header", "new.csv"])
def test_output_inside_the_store_is_refused(store: Path, target: str, capsys: pytest.CaptureFixture[str]) -> None:
    """Data lost before: ``-o STORE/store.json`` replaced the store's own file (rc 0)."""
    if target == "header":  # a table's own file, reached through '..'
        table = next(path for path in store.iterdir() if path.is_dir())
        output = store / table.name / ".." / table.name / "header.json"
    else:
        output = store / target
    before = {path: path.read_bytes() for path in store.rglob("*") if path.is_file()}
    capsys.readouterr()
    assert main(["export", str(store), "-o", str(output), "--format", "csv"]) == 2
    error = capsys.readouterr().err
    assert "--output should not overwrite or lie inside an input" in error and f"SOURCE={str(store)!r}" in error
    assert {path: path.read_bytes() for path in store.rglob("*") if path.is_file()} == before


def test_output_over_an_input_shard_or_its_sidecar_is_refused(
    tmp_path: Path, photos: torch.Tensor, capsys: pytest.CaptureFixture[str]
) -> None:
    images = (photos[:4, :, :16, :16] * 255).round().to(torch.uint8)
    (shard,) = write_image_shards(images, str(tmp_path / "d-%06d.tar"), maxcount=10)
    score_shard(str(shard), "contrast").write(sidecar_path(shard))
    sidecar = Path(sidecar_path(shard))
    before = (Path(shard).read_bytes(), sidecar.read_bytes())
    link = tmp_path / "link.jsonl"
    link.symlink_to(sidecar)
    for output in (shard, sidecar, link):
        capsys.readouterr()
        assert main(["export", str(shard), "-o", str(output), "--format", "jsonl"]) == 2
        assert "--output should not overwrite or lie inside an input" in capsys.readouterr().err
    assert (Path(shard).read_bytes(), sidecar.read_bytes()) == before


def test_a_fifo_output_is_written_through(store: Path, tmp_path: Path) -> None:
    """``-o FIFO`` streams the table into the FIFO; before, the FIFO was replaced by a regular file."""
    import os
    import stat
    import threading

    fifo = tmp_path / "table.pipe"
    os.mkfifo(fifo)
    received: list[str] = []
    reader = threading.Thread(target=lambda: received.append(fifo.read_text()))
    reader.start()
    assert main(["export", str(store), "-o", str(fifo), "--format", "csv"]) == 0
    reader.join(timeout=30)
    assert stat.S_ISFIFO(os.stat(fifo).st_mode)
    assert received and received[0].splitlines()[0].startswith("index,path,sharpness") and len(received[0].splitlines()) == 7


def test_export_gets_the_umask_mode_and_leaves_no_temporary(store: Path, tmp_path: Path) -> None:
    import os
    import stat

    previous = os.umask(0o002)
    try:
        assert main(["export", str(store), "-o", str(tmp_path / "shared.csv")]) == 0
    finally:
        os.umask(previous)
    assert stat.S_IMODE((tmp_path / "shared.csv").stat().st_mode) == 0o664  # not 0600
    assert [name for name in os.listdir(tmp_path) if name.endswith(".tmp")] == []

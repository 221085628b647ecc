"""``--metric a,b,c`` and suites on the shard commands, parsed by the engine's one parser."""

from __future__ import annotations

import tarfile
from pathlib import Path

import pytest
import torch

from qualoader.cli import main
from qualoader.decoding import decode_image
from qualoader.engine import METRIC_SUITES, ScoringEngine
from qualoader.webdataset import read_sidecar, write_image_shards


@pytest.fixture
def shards(tmp_path: Path, photos: torch.Tensor) -> list[str]:
    return [str(p) for p in write_image_shards(photos[:6], str(tmp_path / "photo-%06d.tar"), keys=[f"p{i}" for i in range(6)])]


def _image_members(shard: str) -> list[bytes]:
    with tarfile.open(shard) as archive:
        members = sorted((m for m in archive if m.isfile() and not m.name.endswith(".cls")), key=lambda m: m.name)
        return [archive.extractfile(m).read() for m in members]  # type: ignore[union-attr]


def test_score_with_a_suite_and_a_list(shards: list[str], tmp_path: Path) -> None:
    out = tmp_path / "scores"
    assert main(["score", *shards, "--metric", "classical", "--metric", "sharpness,bn-shift", "--out", str(out), "--no-progress"]) == 0
    index = read_sidecar(out / (Path(shards[0]).name + ".quality.json"))
    names = [*METRIC_SUITES["classical"], "bn-shift"]
    assert sorted(index.metrics) == sorted(names)
    decoded = [decode_image(member) for member in _image_members(shards[0])]
    expected = ScoringEngine(names).score(decoded).scores
    for name in names:
        torch.testing.assert_close(index.scores(name).double(), expected[name], rtol=1e-5, atol=1e-6, msg=name)


def test_unknown_name_in_a_list_is_a_one_line_error(shards: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["score", *shards, "--metric", "sharpness,sharpnes", "--out", str(tmp_path / "x"), "--no-progress"]) == 2
    error = capsys.readouterr().err.strip()
    assert (
        error.startswith("qualoader score: error: --metric should be a registered metric or suite")
        and "--metric='sharpnes'; did you mean 'sharpness'" in error
    )
    assert "\n" not in error and not (tmp_path / "x").exists()

"""``qualoader report``: published from a staging folder, never inside the image folder."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
import torch

from qualoader.cli import main
from tests.helpers import save_photo_crops


@pytest.fixture
def images(tmp_path: Path, photos: torch.Tensor) -> Path:
    save_photo_crops(tmp_path / "images" / "c", photos, count=4, side=24)
    return tmp_path / "images"


def _report(images: Path, out: Path) -> list[str]:
    return ["report", str(images), "--metric", "sharpness", "--out", str(out), "--max-images", "4", "--examples", "1", "--no-progress"]


@pytest.mark.parametrize("where", ["images/plots", "images/c/report", "images", "."])
def test_out_in_or_around_the_image_folder_is_refused(images: Path, tmp_path: Path, where: str, capsys: pytest.CaptureFixture[str]) -> None:
    """A report inside the image folder pollutes it (its PNGs would be scored as images next time)."""
    before = sorted(str(path) for path in tmp_path.rglob("*"))
    assert main(_report(images, tmp_path / where)) == 2
    error = capsys.readouterr().err
    assert "--out should not overwrite or lie inside an input" in error and f"SOURCE={str(images)!r}" in error
    assert sorted(str(path) for path in tmp_path.rglob("*")) == before


def test_report_is_published_whole_with_the_umask_mode(images: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "reports" / "r1"
    previous = os.umask(0o022)
    try:
        assert main(_report(images, out)) == 0
    finally:
        os.umask(previous)
    assert capsys.readouterr().out.strip() == str(out / "index.html")
    assert {path.name for path in out.iterdir()} >= {"index.html", "report.json", "plots"}
    assert stat.S_IMODE(out.stat().st_mode) == 0o755  # not the staging folder's 0700
    assert os.listdir(out.parent) == ["r1"]  # no staging folder left beside it
    # a second run into the same folder replaces the report's own entries and keeps the user's files
    (out / "notes.txt").write_text("mine")
    (out / "plots" / "stale.png").write_bytes(b"old plot")
    assert main(_report(images, out)) == 0
    assert (out / "notes.txt").read_text() == "mine" and not (out / "plots" / "stale.png").exists()
    assert (out / "index.html").stat().st_size > 0 and os.listdir(out.parent) == ["r1"]

"""The report's flags section: counts, thresholds stated, the worst images as thumbnails, on a tiny real folder."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from qualoader.corruptions import corrupt
from qualoader.flags import FLAG_RULES, fit_threshold
from qualoader.report import build_report

_BLURRED = ("p03", "p08")
_DARK = ("p05",)


@pytest.fixture
def folder(tmp_path: Path, photos: torch.Tensor) -> Path:
    """15 real photos at 64 px: two blurred hard (severity 5 twice), one under-exposed hard.

    Fifteen different photos spread their sharpness over two decades, so the fitted fence is wide: one
    pass of severity-5 blur at 64 px lands just inside it (130x below the median), two passes outside.
    """
    root = tmp_path / "images"
    root.mkdir()
    small = torch.nn.functional.interpolate(photos, size=(64, 64), mode="area")
    generator = torch.Generator().manual_seed(0)
    for index, photo in enumerate(small):
        name = f"p{index:02d}"
        if name in _BLURRED:
            photo = corrupt(corrupt(photo[None], "gaussian_blur", 5, generator), "gaussian_blur", 5, generator)[0]
        if name in _DARK:
            photo = corrupt(photo[None], "low_light", 5, generator)[0]
        array = photo.clamp(0, 1).mul(255).round().byte().permute(1, 2, 0).numpy()
        Image.fromarray(np.ascontiguousarray(array)).save(root / f"{name}.png")
    return root


def test_flags_section_with_thumbnails(tmp_path: Path, folder: Path) -> None:
    out = tmp_path / "report"
    index = build_report(folder, ["sharpness", "brightness"], out, examples=2)
    summary = json.loads((out / "report.json").read_text())
    flags = {entry["flag"]: entry for entry in summary["flags"]["flags"]}
    assert list(flags) == ["blurry", "dark", "light"]
    assert set(summary["flags"]["skipped"]) == {"noisy", "jpeg", "low-contrast", "clipped", "hard"}
    sharpness = np.array([m for m in summary["metrics"] if m["name"] == "sharpness"][0]["lowest"][0]["score"])
    blurry = flags["blurry"]
    # the worst examples are the blurred photos, worst first, and both are below the threshold stated
    assert {Path(e["key"]).stem for e in blurry["examples"]} == set(_BLURRED) and blurry["count"] >= 2
    assert blurry["examples"][0]["score"] == pytest.approx(float(sharpness))
    assert all(e["score"] < blurry["threshold"] for e in blurry["examples"])
    assert Path(flags["dark"]["examples"][0]["key"]).stem in _DARK
    html = index.read_text(encoding="utf-8")
    assert '<h2 id="flags">Flags</h2>' in html and f"&lt; {blurry['threshold']:.4g}" in html and "median - 3 MAD" in html
    for entry in flags.values():
        for example in entry["examples"]:
            assert f'src="{example["file"]}"' in html
            with Image.open(out / example["file"]) as image:
                image.verify()


def test_threshold_is_the_fit_on_the_reported_images(tmp_path: Path, folder: Path) -> None:
    out = tmp_path / "report"
    build_report(folder, ["brightness"], out, examples=1)
    summary = json.loads((out / "report.json").read_text())
    from qualoader.metrics import create_metric
    from qualoader.report import load_source

    images = [sample.decode() for sample in load_source(folder).samples]
    brightness = np.array([float(create_metric("brightness")(image[None])) for image in images])
    dark = [entry for entry in summary["flags"]["flags"] if entry["flag"] == "dark"][0]
    assert dark["threshold"] == pytest.approx(fit_threshold(brightness, FLAG_RULES["dark"]), rel=1e-6)
    assert dark["count"] == int((brightness < dark["threshold"]).sum())


def test_chosen_flags_and_user_thresholds(tmp_path: Path, folder: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``report --flags``, spelled as for ``export --flags``: only the flags named, a threshold given in the measure's units."""
    from qualoader.cli import main

    out = tmp_path / "report"
    argv = ["report", str(folder), "--metric", "sharpness,brightness", "--out", str(out), "--no-progress", "--examples", "1"]
    assert main([*argv, "--flags", "blurry", "--flags", "dark=0.9"]) == 0
    summary = json.loads((out / "report.json").read_text())
    flags = {entry["flag"]: entry for entry in summary["flags"]["flags"]}
    assert list(flags) == ["blurry", "dark"] and not summary["flags"]["skipped"]
    assert flags["dark"]["threshold"] == 0.9 and flags["dark"]["source"] == "user" and flags["dark"]["count"] == 15  # every photo
    assert flags["blurry"]["source"] == "fitted" and flags["blurry"]["count"] >= len(_BLURRED)
    capsys.readouterr()
    # refused before any image is scored: a flag whose metric is not asked for, an unknown flag
    assert main([*argv, "--flags", "noisy"]) == 2
    expected = "--flags should name flags whose measure the report scores (sharpness, brightness), but got 'noisy', which needs"
    assert expected in capsys.readouterr().err
    assert main([*argv, "--flags", "blury"]) == 2
    assert "did you mean 'blurry'?" in capsys.readouterr().err
    with pytest.raises(ValueError, match="which needs the metric 'noise'"):
        build_report(folder, ["sharpness"], tmp_path / "r2", flags=["noisy"])
    assert not (tmp_path / "r2").exists()

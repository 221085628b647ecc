"""The engine benchmarks' helpers do what their figures rely on (no timing asserted here)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from qualoader.decoding import load_image
from qualoader.engine import ScoringEngine


def test_photo_folder_is_seeded_and_same_crops_at_any_size(load_script, tmp_path: Path) -> None:
    common = load_script("benchmarks/engine_common.py")
    first = common.make_photo_folder(tmp_path / "a", 6, 48, seed=3)
    again = common.make_photo_folder(tmp_path / "b", 6, 48, seed=3)
    mixed = common.make_photo_folder(tmp_path / "c", 6, (40, 64), seed=3)
    for one, two, three in zip(first, again, mixed, strict=True):
        assert one.read_bytes() == two.read_bytes()
        with Image.open(one) as a, Image.open(three) as c:
            assert a.size == (48, 48) and 40 <= min(c.size) and max(c.size) <= 64
            resized = np.asarray(c.resize((48, 48), Image.Resampling.BILINEAR), dtype=np.float64)
            assert np.abs(resized - np.asarray(a, dtype=np.float64)).mean() < 25  # the same crop, resampled


def test_score_folder_equals_the_engine_on_the_decoded_files(load_script, tmp_path: Path) -> None:
    common = load_script("benchmarks/engine_common.py")
    files = common.make_photo_folder(tmp_path, 10, (30, 50), seed=0)
    seconds, scores = common.score_folder(files, "sharpness,entropy", workers=0, batch_size=4)
    assert seconds > 0 and set(scores) == {"sharpness", "entropy"}
    expected = ScoringEngine("sharpness,entropy").score([load_image(path) for path in files]).scores
    for name, values in expected.items():
        torch.testing.assert_close(scores[name], values)
    _, decoded = common.score_folder(files, None, workers=0, batch_size=4)
    assert decoded == {}

"""tools/fit_calibrations.py writes a loadable profile whose calibration, domain and held-out figures are real."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from qualoader.metrics import create_metric
from qualoader.profiles import load_profile


@pytest.mark.slow
def test_writes_a_profile_that_builds_the_default_metric(load_script, tmp_path: Path, capsys) -> None:
    tool = load_script("tools/fit_calibrations.py")
    torch.set_num_threads(1)
    assert (
        tool.main(["--metrics", "bn-shift", "--max-images", "12", "--held-out-images", "6", "--out", str(tmp_path), "--source", "auto"])
        == 0
    )
    report = json.loads(capsys.readouterr().out)
    profile = load_profile(tmp_path / "profile_fashion-mnist_bn-shift.json")
    assert profile.calibration is not None and profile.calibration.info["n_fit"] == 12 * (1 + 17 * 5)
    assert profile.provenance["held_out"]["n_images"] == 6 == report["bn-shift"]["held_out"]["n_images"]
    assert profile.reference.domain.image_mean_range is not None
    metric = create_metric("bn-shift", profile=profile)
    assert metric.fingerprint() == create_metric("bn-shift").fingerprint()  # same scores as the shipped default

"""The flags-vs-CleanVision benchmark on a tiny folder: it runs without CleanVision, says so, and its figures are sound."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_tiny_run_without_cleanvision(tmp_path: Path) -> None:
    out = tmp_path / "flags.json"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "benchmarks")])}
    argv = [sys.executable, str(ROOT / "benchmarks" / "flags_vs_cleanvision.py"), "--clean", "8", "--per-cell", "1", "--severities", "5",
            "--out", str(out)]
    done = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=300, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "CleanVision skipped: pass --cleanvision-python" in done.stderr
    figures = json.loads(out.read_text())
    assert figures["images"] == 14 and figures["cleanvision_seconds"] is None
    rows = {(row["degradation"], row["severity"]): row for row in figures["rows"]}
    assert rows[("clean", 0)]["n"] == 8 and len(rows) == 7
    for row in rows.values():
        assert "cleanvision_match" not in row and 0.0 <= row["qualoader_any"] <= 1.0
    # JPEG at severity 5 is flagged against clean photos (blockiness far above theirs), as in the full run
    assert rows[("jpeg", 5)]["qualoader_match"] == 1.0
    assert "| jpeg | 5 | 1 | jpeg | 100% |" in done.stdout


@pytest.mark.slow
def test_held_out_fashion_mnist_source(tmp_path: Path) -> None:
    """The held-out check builds its folder from the first Fashion-MNIST TEST images (the same with either copy)."""
    out = tmp_path / "flags.json"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "benchmarks")])}
    argv = [sys.executable, str(ROOT / "benchmarks" / "flags_vs_cleanvision.py"), "--source", "fashion-mnist", "--clean", "20",
            "--per-cell", "2", "--severities", "5", "--out", str(out)]
    done = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=300, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "32 Fashion-MNIST TEST PNGs of 28 px" in done.stdout
    figures = json.loads(out.read_text())
    assert figures["images"] == 32 and figures["args"]["source"] == "fashion-mnist"
    assert {row["degradation"] for row in figures["rows"]} == {"clean", "gaussian_blur", "gaussian_noise", "jpeg", "brightness",
                                                                  "low_light", "contrast"}

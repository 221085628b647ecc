"""``--strict``: images far outside an aligned metric's reference domain stop a command with one line (exit 2).

Real data: scikit-image photos at 224 px RGB, fed to the embedded 28 px grey Fashion-MNIST reference.
"""

from __future__ import annotations

import os
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch
from PIL import Image

from qualoader.cli import main
from qualoader.data import ScoreStore
from qualoader.metrics import create_metric
from qualoader.profiles import DomainWarning
from qualoader.webdataset import write_image_shards


@pytest.fixture(scope="module")
def photo_folder(tmp_path_factory: pytest.TempPathFactory, photos_224: torch.Tensor) -> Path:
    """An ImageFolder ``root/photos/*.png`` of five real RGB photos at 224 px."""
    root = tmp_path_factory.mktemp("strict") / "images"
    (root / "photos").mkdir(parents=True)
    for index, photo in enumerate((photos_224 * 255).round().to(torch.uint8)):
        Image.fromarray(photo.permute(1, 2, 0).numpy()).save(root / "photos" / f"photo{index}.png")
    return root


@pytest.fixture(scope="module")
def photo_shard(tmp_path_factory: pytest.TempPathFactory, photos_224: torch.Tensor) -> str:
    folder = tmp_path_factory.mktemp("strict-shards")
    images = (photos_224 * 255).round().to(torch.uint8)
    return str(write_image_shards(images, str(folder / "photos-%06d.tar"), labels=torch.zeros(len(images), dtype=torch.int64))[0])


def _qualoader(*argv: str) -> subprocess.CompletedProcess[str]:
    # a real process, so what the user sees on stderr (warnings included) is what is checked
    env = {**os.environ, "PYTHONWARNINGS": ""}
    return subprocess.run([sys.executable, "-m", "qualoader", *argv], capture_output=True, text=True, timeout=300, env=env, check=False)


@pytest.mark.slow
def test_precompute_strict_end_to_end(tmp_path: Path, photo_folder: Path) -> None:
    argv = ["precompute", str(photo_folder), "--metric", "bn-shift", "--batch-size", "2", "--no-progress"]
    strict = _qualoader(*argv, "--store", str(tmp_path / "strict"), "--strict")
    assert strict.returncode == 2, strict.stderr
    lines = strict.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("qualoader precompute: error: ")
    assert "far outside the input domain of metric 'bn-shift'" in lines[0] and "colour (RGB) input for a grey network" in lines[0]
    assert "size 224x224 against the native 28x28" in lines[0] and "qualoader calibrate" in lines[0]
    assert ScoreStore(tmp_path / "strict").table(create_metric("bn-shift")).num_scored == 0  # stopped before any score was stored
    # without --strict: the run goes on, warns once (3 batches of out-of-domain photos), and stores every score
    lenient = _qualoader(*argv, "--store", str(tmp_path / "lenient"))
    assert lenient.returncode == 0, lenient.stderr
    warned = [line for line in lenient.stderr.splitlines() if line.startswith("qualoader precompute: warning: ")]
    assert len(warned) == 1 and "far outside the input domain of metric 'bn-shift'" in warned[0], lenient.stderr
    assert "(5/5 scored, 0 skipped)" in lenient.stdout
    table = ScoreStore(tmp_path / "lenient").table(create_metric("bn-shift"))
    assert table.num_scored == 5 and table.complete


@pytest.mark.parametrize("command", ["score", "tag", "report"])
def test_strict_on_every_scoring_command(
    command: str, tmp_path: Path, photo_folder: Path, photo_shard: str, capsys: pytest.CaptureFixture[str]
) -> None:
    out = str(tmp_path / "out")
    argv = {
        "score": ["score", photo_shard, "--out", out],
        "tag": ["tag", photo_shard, out],
        "report": ["report", str(photo_folder), "--out", out, "--examples", "1"],
    }[command]
    argv += ["--metric", "bn-shift", "--metric", "sharpness", "--no-progress"]
    assert main([*argv, "--strict"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"qualoader {command}: error: ") and "\n" not in err
    assert "far outside the input domain of metric 'bn-shift'" in err
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert main(argv) == 0
    assert [type(w.message) for w in caught if issubclass(w.category, DomainWarning)] == [DomainWarning]


def test_strict_leaves_in_domain_data_and_classical_metrics_alone(
    tmp_path: Path, photo_folder: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = tmp_path / "fmnist"
    assert (
        main(["precompute", "fashion-mnist", "--limit", "32", "--store", str(store), "--metric", "bn-shift", "--strict", "--no-progress"])
        == 0
    )
    assert "32/32" in capsys.readouterr().out
    # a classical metric has no reference domain: --strict changes nothing for it
    assert (
        main(["precompute", str(photo_folder), "--store", str(tmp_path / "sharp"), "--metric", "sharpness", "--strict", "--no-progress"])
        == 0
    )


def test_strict_refused_with_ray(photo_shard: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["score", photo_shard, "--out", str(tmp_path), "--metric", "bn-shift", "--engine", "ray", "--strict"]) == 2
    assert "--strict should be used with --engine local" in capsys.readouterr().err

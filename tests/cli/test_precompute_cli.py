"""``qualoader precompute``: Fashion-MNIST and ImageFolder sources into a score store."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from qualoader.cli import main
from qualoader.data import ScoreStore, StoreError
from qualoader.metrics import create_metric
from tests.helpers import precompute_argv


def test_fashion_mnist_into_store(
    tmp_path: Path, fashion_mnist_test: tuple[torch.Tensor, torch.Tensor], capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["precompute", "fashion-mnist", "--store", str(tmp_path / "s"), "--metric", "brightness", "--limit", "64", "--batch-size", "16"]
    argv.append("--no-progress")
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "64/64" in out and "brightness" in out
    metric = create_metric("brightness")
    scores = ScoreStore(tmp_path / "s").table(metric).scores()
    assert np.array_equal(scores, metric(fashion_mnist_test[0][:64]).double().numpy())
    assert main(argv) == 0  # already complete: resumes with nothing to do
    capsys.readouterr()
    assert main([*argv[:-5], "--limit", "32", "--no-progress"]) == 2
    assert "qualoader precompute: error: length should be the store's dataset length 64" in capsys.readouterr().err
    assert main([*argv, "--size", "32"]) == 2
    assert "dataset_id should be the store's" in capsys.readouterr().err
    with pytest.raises(ValueError, match="dataset_id should be the store's") as raised:
        main(["--debug", *argv, "--size", "32"])
    assert isinstance(raised.value.__cause__, StoreError)


def test_image_folder_variable_sizes(tmp_path: Path, photos: torch.Tensor, capsys: pytest.CaptureFixture[str]) -> None:
    arrays = []
    for k in range(6):
        side = 48 if k % 2 else 64
        array = (photos[k, :, :side, :side].permute(1, 2, 0) * 255).round().to(torch.uint8).numpy()
        folder = tmp_path / "images" / ("a" if k < 3 else "b")
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(array).save(folder / f"{k}.png")
        arrays.append(array)
    assert main(precompute_argv(tmp_path / "images", tmp_path / "s")) == 0
    metric = create_metric("sharpness")
    expected = np.array([float(metric(torch.from_numpy(a).permute(2, 0, 1)[None])[0]) for a in arrays])
    assert np.allclose(ScoreStore(tmp_path / "s").table(metric).scores(), expected, rtol=1e-5, atol=0)
    assert "6/6" in capsys.readouterr().out


def test_bad_arguments(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["precompute", str(tmp_path / "nowhere"), "--store", str(tmp_path / "s"), "--metric", "sharpness"]) == 2
    assert "SOURCE should be an existing folder or shard" in capsys.readouterr().err
    assert main(["precompute", "fashion-mnist", "--store", str(tmp_path / "s"), "--metric", "sharpness", "--limit", "0"]) == 2
    assert "--limit should be a positive int" in capsys.readouterr().err
    assert main(["precompute", "fashion-mnist", "--store", str(tmp_path / "s"), "--metric", "sharpnes", "--limit", "4"]) == 2
    err = capsys.readouterr().err
    assert "--metric should be a registered metric" in err and "sharpness" in err
    assert not (tmp_path / "s").exists()  # nothing was created for a command that was refused


def test_unreadable_image_named_or_skipped(tmp_path: Path, photos: torch.Tensor, capsys: pytest.CaptureFixture[str]) -> None:
    for k in range(5):
        array = (photos[k, :, :32, :32].permute(1, 2, 0) * 255).round().to(torch.uint8).numpy()
        (tmp_path / "images" / "c").mkdir(parents=True, exist_ok=True)
        Image.fromarray(array).save(tmp_path / "images" / "c" / f"{k}.jpg")
    bad = tmp_path / "images" / "c" / "2.jpg"
    bad.write_bytes(bad.read_bytes()[:400])
    argv = precompute_argv(tmp_path / "images", tmp_path / "s")
    argv += ["--batch-size", "2"]
    assert main([*argv, "--num-workers", "2"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"dataset[2] (file '{bad}') should be a readable sample" in err and "--on-error skip" in err
    assert main([*argv, "--num-workers", "2", "--on-error", "skip"]) == 0
    out = capsys.readouterr().out
    assert "4/5 scored, 1 skipped" in out and f"skipped 2: dataset[2] (file '{bad}')" in out and "skipped    1 unreadable" in out
    for k in (0, 4):  # rewritten in place: the next run rescores exactly these
        Image.open(tmp_path / "images" / "c" / f"{k}.jpg").rotate(90).save(tmp_path / "images" / "c" / f"{k}.jpg")
    assert main([*argv, "--on-error", "skip"]) == 0
    out = capsys.readouterr().out
    assert "2 sample(s) changed since the last run" in out and "4/5 scored, 1 skipped" in out


def test_several_metrics_one_pass(
    tmp_path: Path, fashion_mnist_test: tuple[torch.Tensor, torch.Tensor], capsys: pytest.CaptureFixture[str]
) -> None:
    store = tmp_path / "s"
    argv = ["precompute", "fashion-mnist", "--store", str(store), "--limit", "48", "--batch-size", "16", "--no-progress"]
    assert main([*argv, "--metric", "sharpness,noise"]) == 0
    out = capsys.readouterr().out
    assert out.count("48/48 scored") == 2 and "sharpness" in out and "noise" in out
    assert main([*argv, "--metric", "classical"]) == 0  # adds the seven missing measures; the two tables stay
    capsys.readouterr()
    from qualoader.engine import METRIC_SUITES

    images = fashion_mnist_test[0][:48]
    tables = {table.metric_name: table for table in ScoreStore(store).tables()}
    assert sorted(tables) == sorted(METRIC_SUITES["classical"])
    for name, table in tables.items():
        np.testing.assert_allclose(table.scores(), create_metric(name)(images).double().numpy(), rtol=1e-6, atol=1e-9)
    assert main([*argv, "--metric", "classical", "--calibration", str(tmp_path / "c.json")]) == 2
    assert "--calibration should come with one metric, but got 9 metrics" in capsys.readouterr().err
    assert main([*argv, "--metric", "sharpnes"]) == 2
    assert "did you mean 'sharpness'" in capsys.readouterr().err


def test_store_inside_the_image_folder_is_refused(tmp_path: Path, photos: torch.Tensor, capsys: pytest.CaptureFixture[str]) -> None:
    """A store inside the dataset pollutes it (its files would be read as images next time): refused before anything is written."""
    from tests.helpers import save_photo_crops

    save_photo_crops(tmp_path / "images" / "c", photos, count=3, side=16)
    for store in (tmp_path / "images" / "store", tmp_path / "images", tmp_path):
        capsys.readouterr()
        assert main(precompute_argv(tmp_path / "images", store)) == 2
        assert "--store should not overwrite or lie inside an input" in capsys.readouterr().err
    assert sorted(path.name for path in (tmp_path / "images").rglob("*")) == ["0.png", "1.png", "2.png", "c"]


def test_flat_folder_and_repeated_metric_options(tmp_path: Path, photos: torch.Tensor, capsys: pytest.CaptureFixture[str]) -> None:
    """A flat folder of images is scored as ``report`` reads it; --metric given twice scores both (it used to keep the last)."""
    from tests.helpers import save_photo_crops

    paths = save_photo_crops(tmp_path / "flat", photos, count=4, side=20)
    store = tmp_path / "s"
    assert main(precompute_argv(tmp_path / "flat", store, "--metric", "noise")) == 0
    assert capsys.readouterr().out.count("4/4 scored") == 2
    tables = {table.metric_name: table for table in ScoreStore(store).tables()}
    assert sorted(tables) == ["noise", "sharpness"]
    from qualoader.decoding import load_image

    images = torch.stack([load_image(str(path)) for path in paths])
    np.testing.assert_allclose(tables["noise"].scores(), create_metric("noise")(images).double().numpy(), rtol=1e-6, atol=1e-9)


def test_size_too_large_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["precompute", "fashion-mnist", "--store", str(tmp_path / "s"), "--metric", "sharpness", "--size", "100000"]) == 2
    assert "--size should be at most 4096" in capsys.readouterr().err and not (tmp_path / "s").exists()


def test_summary_names_each_weak_profile_in_use(copied_default: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A weak profile says so in the summary (one line, the rule of ``profile show``); a strong one and a replaced calibration do not."""
    from dataclasses import replace

    from qualoader.profiles import WeakProfileWarning, load_profile, save_profile

    strong = load_profile(copied_default)
    held_out = {**strong.provenance["held_out"], "auroc": 0.55, "auroc_ci": [0.47, 0.63]}
    weak = save_profile(replace(strong, name="mine\x1b[31m", provenance={**strong.provenance, "held_out": held_out}, path=None),
                        tmp_path / "weak.json")
    argv = ["precompute", "fashion-mnist:test", "--limit", "8", "--no-progress"]
    with pytest.warns(WeakProfileWarning):
        assert main([*argv, "--store", str(tmp_path / "s1"), "--profile", str(weak), "--metric", "brightness"]) == 0
    lines = [line for line in capsys.readouterr().out.splitlines() if "is weak" in line]
    assert lines == [
        "profile 'mine\\x1b[31m' (bn-shift) is weak: held-out AUROC 0.550 [0.470, 0.630] does not clear chance (0.5) by 0.05; "
        "its difficulty may rank images no better than chance"
    ]
    assert main([*argv, "--store", str(tmp_path / "s2"), "--profile", str(copied_default)]) == 0
    assert "is weak" not in capsys.readouterr().out
    calibration = tmp_path / "calibration.json"
    strong.calibration.save(calibration)
    with pytest.warns(WeakProfileWarning):  # loading still warns; the summary describes the calibration in use, which is not the profile's
        assert main([*argv, "--store", str(tmp_path / "s3"), "--profile", str(weak), "--calibration", str(calibration)]) == 0
    assert "is weak" not in capsys.readouterr().out


def test_scoring_threads_leave_the_decoding_workers_their_cores(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Default: the cores this process may use, less --num-workers (at least 1); --threads wins; OMP_NUM_THREADS is kept."""
    import os

    from qualoader.data.precompute import scoring_threads

    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    cores = len(os.sched_getaffinity(0))
    assert scoring_threads("auto", 0) == cores and scoring_threads("auto", cores + 3) == 1
    assert scoring_threads("auto", 1) == max(1, cores - 1) and scoring_threads(3, 8) == 3 and scoring_threads(None, 0) is None
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert scoring_threads("auto", 0) is None and scoring_threads(2, 0) == 2
    argv = ["precompute", "fashion-mnist:test", "--limit", "8", "--metric", "brightness", "--no-progress", "--store", str(tmp_path / "s")]
    assert main([*argv, "--threads", "0"]) == 2
    assert "--threads should be" in capsys.readouterr().err
    from qualoader.metrics.classical.brightness import MeanBrightness

    seen: list[int] = []
    original = MeanBrightness.score_features

    def recording(self: MeanBrightness, features: object) -> torch.Tensor:
        seen.append(torch.get_num_threads())
        return original(self, features)

    monkeypatch.setattr(MeanBrightness, "score_features", recording)
    before = torch.get_num_threads()
    assert main([*argv, "--threads", str(before + 1)]) == 0  # scored under that many threads, and the caller's setting is back after
    assert seen and set(seen) == {before + 1} and torch.get_num_threads() == before and "8/8 scored" in capsys.readouterr().out


@pytest.mark.slow  # a process of its own (torch's import)
def test_classical_precompute_imports_no_fitting_or_filter_library(tmp_path: Path) -> None:
    """scipy.optimize (calibration fits), kornia (aligned features, SSIM) and matplotlib cost start-up the classical path never uses."""
    import subprocess
    import sys

    code = (
        "import atexit, sys\n"
        "atexit.register(lambda: print('loaded:', sorted(m for m in ('kornia', 'scipy.optimize', 'matplotlib') if m in sys.modules)))\n"
        "from qualoader.cli import main\n"
        "sys.exit(main(sys.argv[1:]))\n"
    )
    argv = ["precompute", "fashion-mnist:test", "--limit", "4", "--metric", "classical", "--store", str(tmp_path / "s"), "--no-progress"]
    root = Path(__file__).resolve().parents[2]
    result = subprocess.run([sys.executable, "-c", code, *argv], cwd=tmp_path, env={"PYTHONPATH": str(root), "PATH": "/usr/bin:/bin"},
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "4/4 scored" in result.stdout and result.stdout.strip().endswith("loaded: []")


@pytest.mark.slow  # a process of its own (torch's import), with the head start that only runs there
def test_a_fifo_named_like_an_image_is_an_error_not_a_hang(tmp_path: Path, write_image_folder) -> None:
    """Opening a FIFO for reading waits for a writer: every reader opens without blocking and refuses anything but a file."""
    import os
    import subprocess
    import sys

    folder = write_image_folder({"Trouser": 1}, per_class=6)
    os.mkfifo(folder / "Trouser" / "003b.png")
    root = Path(__file__).resolve().parents[2]
    command = [sys.executable, "-m", "qualoader", "precompute", str(folder), "--metric", "sharpness", "--no-progress", "--store"]
    env = {**os.environ, "PYTHONPATH": str(root)}
    result = subprocess.run([*command, str(tmp_path / "s")], capture_output=True, text=True, timeout=120, env=env, check=False)
    assert result.returncode == 2 and "003b.png" in result.stderr and "Traceback" not in result.stderr
    result = subprocess.run([*command, str(tmp_path / "t"), "--on-error", "skip"], capture_output=True, text=True, timeout=120, env=env,
                            check=False)
    assert result.returncode == 0, result.stderr
    table = ScoreStore(tmp_path / "t").table(create_metric("sharpness"))
    assert table.num_scored == 6 and list(table.skipped()) == [4]  # 003b.png sorts after 003.png

"""``qualoader precompute`` killed (SIGKILL), terminated (SIGTERM) or interrupted (SIGINT) at seeded
random points of its run: the store left behind reads as valid (or not at all), and a resumed run
ends with exactly the scores of a clean run."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from qualoader.cli import main
from qualoader.data import ScoreStore
from qualoader.metrics import create_metric

IMAGES = 240
OPTIONS = ["--metric", "sharpness", "--batch-size", "4", "--no-progress"]


@pytest.fixture(scope="module")
def fault_folder(tmp_path_factory: pytest.TempPathFactory, photos: torch.Tensor) -> Path:
    """An ImageFolder of 240 real photo crops (40x40 PNG) in 3 classes."""
    root = tmp_path_factory.mktemp("precompute-faults") / "images"
    for k in range(IMAGES):
        photo = photos[k % len(photos)]
        top, left = (k * 5) % 88, (k * 11) % 88
        array = (photo[:, top : top + 40, left : left + 40].permute(1, 2, 0) * 255).round().to(torch.uint8).numpy()
        path = root / f"class{k % 3}" / f"{k:04d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(array).save(path)
    return root


def _command(folder: Path, store: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "qualoader", "precompute", str(folder), "--store", str(store), *OPTIONS, *extra]


def _scores(store: Path) -> np.ndarray:
    return ScoreStore(store).table(create_metric("sharpness")).scores()


@pytest.fixture(scope="module")
def clean_scores(fault_folder: Path, tmp_path_factory: pytest.TempPathFactory) -> np.ndarray:
    store = tmp_path_factory.mktemp("clean") / "s"
    result = subprocess.run(_command(fault_folder, store), capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, result.stderr
    scores = _scores(store)
    assert np.isfinite(scores).all() and scores.shape == (IMAGES,)
    return scores


def _scored_count(store: Path) -> int:
    """Scores flagged so far, read straight from the arrays the running process writes (0 before they exist)."""
    for path in store.glob("sharpness-*/scored.npy"):
        try:
            return int(np.count_nonzero(np.load(path, mmap_mode="r") == 1))
        except (ValueError, OSError):
            return 0
    return 0


def _interrupts_default() -> None:
    # a runner started in the background has SIGINT ignored, which its children inherit
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("sig", "seed"),
    [(signal.SIGKILL, 0), (signal.SIGKILL, 1), (signal.SIGTERM, 0), (signal.SIGINT, 1)],
    ids=["SIGKILL-0", "SIGKILL-1", "SIGTERM-0", "SIGINT-1"],
)
def test_signal_then_resume_equals_clean_run(
    sig: signal.Signals, seed: int, tmp_path: Path, fault_folder: Path, clean_scores: np.ndarray, capsys: pytest.CaptureFixture[str]
) -> None:
    rng = random.Random(f"{sig.name}-{seed}")  # seeded: the same kill points on every run
    target = rng.choice([0, rng.randrange(1, IMAGES)])  # 0: during start-up / store creation
    store = tmp_path / "s"
    process = subprocess.Popen(
        _command(fault_folder, store), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=_interrupts_default
    )  # noqa: PLW1509
    try:
        deadline = time.monotonic() + 240
        if target == 0:
            # somewhere in imports (the head start decoding meanwhile), identity, store or table creation: the whole
            # run of these 240 small images takes about 2 s on 2 cores, start-up about 1.3 s
            time.sleep(rng.uniform(0.2, 1.2))
        else:
            while process.poll() is None and _scored_count(store) < target and time.monotonic() < deadline:
                time.sleep(0.002)
        process.send_signal(sig)
        _, stderr = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate(timeout=60)
    # the signal met a running process: SIGKILL kills it; once scoring runs, SIGTERM and SIGINT end it
    # with one line and 143 / 130 (during start-up, before the command runs, they kill it or raise)
    expected = {signal.SIGKILL: {-9}, signal.SIGTERM: {143} if target else {143, -15}, signal.SIGINT: {130} if target else {130, 1}}[sig]
    assert process.returncode in expected, (process.returncode, stderr[-2000:])
    if process.returncode in (130, 143):
        assert f"qualoader precompute: interrupted by {sig.name}; the scores of every finished batch are stored" in stderr
    assert not list(store.glob(".tmp-*")) or sig == signal.SIGKILL or sig == signal.SIGTERM  # only a hard kill can strand a temp folder
    if (store / "store.json").exists():
        interrupted = ScoreStore(store)  # what is there reads as a valid store
        for table in interrupted.tables():
            done = table.scored()
            assert np.array_equal(table.scores()[done], clean_scores[done])  # every flagged score is right
    assert main(_command(fault_folder, store)[3:]) == 0  # resumed in this process (a subprocess start costs seconds)
    assert f"{IMAGES}/{IMAGES} scored" in capsys.readouterr().out
    assert np.array_equal(_scores(store), clean_scores)  # identical, bit for bit


@pytest.mark.slow
def test_resume_ignores_stranded_temp_folders(tmp_path: Path, fault_folder: Path, clean_scores: np.ndarray) -> None:
    """A table folder left under its temporary name by a kill during creation is ignored, never read."""
    store = tmp_path / "s"
    store.mkdir()
    (store / ".tmp-sharpness-0123-1-abcd").mkdir()
    (store / ".tmp-sharpness-0123-1-abcd" / "scores.npy").write_bytes(b"partial")
    (store / f".store.json.{os.getpid()}.tmp").write_text('{"format": "qualoader.sc')
    assert main(_command(fault_folder, store)[3:]) == 0
    assert np.array_equal(_scores(store), clean_scores)

"""``qualoader export --flags`` on a full disk (RLIMIT_FSIZE in the child): no table, and no thresholds file without its table."""

from __future__ import annotations

import os
import resource
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from qualoader.data import ScoreStore
from qualoader.metrics import create_metric

ROOT = Path(__file__).resolve().parents[2]


def _files_at_most(limit: int) -> Callable[[], None]:
    def preexec() -> None:  # runs in the child, before exec
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit then fails with EFBIG instead of killing
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return preexec


@pytest.mark.slow
def test_full_disk_leaves_neither_table_nor_thresholds(tmp_path: Path) -> None:
    # 3000 rows: the CSV is about 150 kB, its thresholds file under 1 kB, so the limit falls between them
    root = tmp_path / "store"
    brightness = np.random.default_rng(0).uniform(0.0, 1.0, 3000)
    ScoreStore(root, length=brightness.size).table(create_metric("brightness"), create=True).write(list(range(brightness.size)),
                                                                                                   brightness.tolist())
    output = tmp_path / "scores.csv"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    argv = [sys.executable, "-m", "qualoader", "export", str(root), "-o", str(output), "--flags"]
    done = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=300, preexec_fn=_files_at_most(20_000))
    assert done.returncode != 0 and "File too large" in done.stderr, done.stderr
    assert sorted(path.name for path in tmp_path.iterdir()) == ["store"]  # no table, no thresholds, no temporary file
    # the same command with room to write leaves both
    done = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr
    assert output.exists() and Path(f"{output}.flags.json").exists()

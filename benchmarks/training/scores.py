"""Scores of the training images: each metric filled into a ``ScoreStore`` by ``precompute`` and read back.

Each metric is precomputed on its own, so its wall time is the scoring cost of the arms that use
it (a shared pass would decode once for all and be cheaper, but could not be split between arms).
The store is resumable: a re-run reads the stored scores and the recorded time of the first pass.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
from torch import Tensor
from torch.utils.data import TensorDataset

from qualoader._atomic import write_json_atomic
from qualoader._json import read_json
from qualoader.data import precompute
from qualoader.metrics import create_metric

__all__ = ["DEFAULT_SCORES", "score_training_set"]

#: Three DNN-aligned scores and one classical measure.
DEFAULT_SCORES = ("task-guided", "confidence", "bn-shift", "sharpness")


def score_training_set(
    images: Tensor, names: Sequence[str], folder: Path, dataset_id: str, *, batch_size: int = 500, log: Callable[[str], None] = print,
) -> tuple[dict[str, Tensor], dict[str, bool], dict[str, float]]:
    """Fill ``folder`` (a ``ScoreStore``) with every metric of ``names`` over float images :math:`(N, 1, 28, 28)`.

    Returns ``(scores, higher_is_better, seconds)``: float64 scores :math:`(N,)`, each metric's
    direction, and the wall seconds its ``precompute`` took (recorded in ``folder/seconds.json``
    so a resumed run reports the first pass's cost, not the near-zero cost of reading it back).
    """
    folder.mkdir(parents=True, exist_ok=True)
    timing_path = folder / "seconds.json"
    seconds: dict[str, float] = read_json(timing_path, what="score timings") if timing_path.is_file() else {}
    dataset = TensorDataset(images)
    scores, directions = {}, {}
    for name in names:
        metric = create_metric(name)
        started = time.perf_counter()
        table = precompute(dataset, metric, folder, batch_size=batch_size, progress=False, dataset_id=dataset_id)
        elapsed = time.perf_counter() - started
        if name not in seconds:
            seconds[name] = round(elapsed, 2)
            write_json_atomic(timing_path, seconds)
        scores[name] = torch.from_numpy(table.scores()).double()
        directions[name] = bool(table.higher_is_better)
        log(f"scores {name}: {len(dataset)} images in {seconds[name]:.1f} s (higher_is_better={directions[name]})")
    return scores, directions, {name: seconds[name] for name in names}


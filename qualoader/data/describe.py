"""``describe``: a dataset quality summary (count, quantiles, histogram, difficulty buckets) from a store."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor

from qualoader._validation import check_positive_int, check_type
from qualoader.data.store import ScoreStore, ScoreTable

__all__ = ["DEFAULT_DIFFICULTY_EDGES", "DEFAULT_QUANTILES", "MetricSummary", "StoreSummary", "describe", "summarize_table"]

DEFAULT_QUANTILES: tuple[float, ...] = (0.0, 0.05, 0.25, 0.5, 0.75, 0.95, 1.0)
#: Difficulty buckets (expected error of the reference network): easy, medium, hard, very hard.
DEFAULT_DIFFICULTY_EDGES: tuple[float, ...] = (0.0, 0.25, 0.5, 0.75, 1.0)


@dataclass(frozen=True)
class MetricSummary:
    """Summary of one metric's scores over a dataset.

    Attributes:
        metric: metric name.
        fingerprint: the metric configuration's fingerprint.
        config: the metric's constructor parameters.
        length: samples in the dataset.
        count: samples scored.
        quantiles: ``{q: score}`` over the scored samples (NaN when none).
        histogram: ``(counts, edges)``: ``bins`` counts and ``bins + 1`` edges over the score range.
        difficulty: ``{"[lo, hi)": fraction}`` of scored samples per difficulty bucket, or ``None``
            when the metric has no calibration.
        skipped: samples skipped as unreadable (``precompute(on_error="skip")``), not in ``count``.
    """

    metric: str
    fingerprint: str
    config: dict[str, Any]
    length: int
    count: int
    quantiles: dict[float, float]
    histogram: tuple[tuple[int, ...], tuple[float, ...]]
    difficulty: dict[str, float] | None = field(default=None)
    skipped: int = 0

    def __str__(self) -> str:
        lines = [f"{self.metric} [{self.fingerprint}] {self.config or ''}".rstrip(), f"  scored     {self.count}/{self.length} ({self.count / self.length:.1%})"]
        if self.skipped:
            lines.append(f"  skipped    {self.skipped} unreadable sample(s)")
        lines.append("  quantiles  " + "  ".join(f"q{q:g}={v:.4g}" for q, v in self.quantiles.items()))
        counts, edges = self.histogram
        if counts:
            peak = max(counts) or 1
            for k, count in enumerate(counts):
                bar = "#" * round(30 * count / peak)
                lines.append(f"  [{edges[k]:>10.4g}, {edges[k + 1]:>10.4g}) {count:>8d} {bar}")
        if self.difficulty is not None:
            lines.append("  difficulty " + "  ".join(f"{bucket}: {fraction:.1%}" for bucket, fraction in self.difficulty.items()))
        return "\n".join(lines)


@dataclass(frozen=True)
class StoreSummary:
    """Summary of every metric in a store (see :class:`MetricSummary`)."""

    root: str
    length: int
    metrics: tuple[MetricSummary, ...]

    def __str__(self) -> str:
        head = f"score store {self.root!r}: {self.length} samples, {len(self.metrics)} metric configuration(s)"
        return "\n".join([head, *(str(summary) for summary in self.metrics)])


def _calibration_of(table: ScoreTable) -> Callable[[Tensor], Tensor] | None:
    state = table.calibration_state
    if state is None:
        return None
    from qualoader.calibration import DifficultyCalibration

    return DifficultyCalibration.from_state_dict(state)


def summarize_table(
    table: ScoreTable,
    *,
    bins: int = 10,
    quantiles: Sequence[float] = DEFAULT_QUANTILES,
    difficulty_edges: Sequence[float] = DEFAULT_DIFFICULTY_EDGES,
    calibration: Callable[[Tensor], Tensor] | None = None,
) -> MetricSummary:
    """Summarise one :class:`ScoreTable` (arguments as in :func:`describe`)."""
    values = table.scores()
    values = values[np.isfinite(values)]
    if values.size:
        qs = {float(q): float(v) for q, v in zip(quantiles, np.quantile(values, list(quantiles)))}
        counts, edges = np.histogram(values, bins=bins)
        histogram = (tuple(int(c) for c in counts), tuple(float(e) for e in edges))
    else:
        qs = {float(q): float("nan") for q in quantiles}
        histogram = ((), ())
    calibration = calibration if calibration is not None else _calibration_of(table)
    difficulty = None
    if calibration is not None:
        edges_d = np.asarray(difficulty_edges, dtype=np.float64)
        prior = calibration(torch.from_numpy(values)).double().numpy() if values.size else np.empty(0)
        counts_d, _ = np.histogram(prior, bins=edges_d)
        total = max(values.size, 1)
        difficulty = {f"[{lo:g}, {hi:g}{']' if k == len(edges_d) - 2 else ')'}": float(c) / total for k, (lo, hi, c) in enumerate(zip(edges_d[:-1], edges_d[1:], counts_d))}
    return MetricSummary(table.metric_name, table.fingerprint, table.config, table.length, int(values.size), qs, histogram, difficulty, table.num_skipped)


def describe(
    store: ScoreStore | ScoreTable | str | os.PathLike[str],
    *,
    bins: int = 10,
    quantiles: Sequence[float] = DEFAULT_QUANTILES,
    difficulty_edges: Sequence[float] = DEFAULT_DIFFICULTY_EDGES,
    calibrations: Mapping[str, Callable[[Tensor], Tensor]] | None = None,
) -> StoreSummary:
    """Dataset quality summary: per metric, count, quantiles, histogram and difficulty buckets.

    Difficulty uses the calibration saved with the table (the metric's ``calibration`` when the
    table was created) or ``calibrations[metric_name]``; metrics without one get ``difficulty=None``.

    Args:
        store: a :class:`ScoreStore`, a single :class:`ScoreTable`, or a store folder.
        bins: histogram bins over each metric's score range.
        quantiles: quantile levels in [0, 1].
        difficulty_edges: increasing bucket edges in [0, 1] for the expected error.
        calibrations: optional ``{metric name: scores (N,) -> expected error (N,)}`` overrides.

    Returns:
        A :class:`StoreSummary`; ``print(summary)`` shows a readable report.

    Raises:
        TypeError: wrong argument types.
        ValueError: bad ``bins``, quantiles outside [0, 1], edges not increasing in [0, 1].
        StoreError: a corrupt store.

    Example:
        >>> import tempfile
        >>> from qualoader.data import ScoreStore
        >>> from qualoader.metrics import create_metric
        >>> root = tempfile.mkdtemp()
        >>> ScoreStore(root, length=4).table(create_metric("brightness"), create=True).write([0, 1, 2, 3], [0.1, 0.2, 0.3, 0.4])
        >>> print(describe(root).metrics[0].count)
        4
    """
    check_positive_int(bins, "bins")
    q = np.asarray(quantiles, dtype=np.float64)
    if q.ndim != 1 or q.size == 0 or (q < 0).any() or (q > 1).any():
        raise ValueError(f"quantiles should be a non-empty sequence in [0, 1], but got quantiles={list(quantiles)!r}")
    e = np.asarray(difficulty_edges, dtype=np.float64)
    if e.ndim != 1 or e.size < 2 or (np.diff(e) <= 0).any() or e[0] < 0 or e[-1] > 1:
        raise ValueError(f"difficulty_edges should be at least 2 increasing values in [0, 1], but got difficulty_edges={list(difficulty_edges)!r}")
    if calibrations is not None:
        check_type(calibrations, "calibrations", Mapping, "a mapping of metric name to calibration, or None")
    if isinstance(store, (str, os.PathLike)):
        store = ScoreStore(store)
    check_type(store, "store", (ScoreStore, ScoreTable), "a ScoreStore, a ScoreTable or a store folder")
    tables = [store] if isinstance(store, ScoreTable) else store.tables()
    root = str(store.path if isinstance(store, ScoreTable) else store.root)
    summaries = tuple(
        summarize_table(t, bins=bins, quantiles=quantiles, difficulty_edges=difficulty_edges, calibration=(calibrations or {}).get(t.metric_name))
        for t in tables
    )
    return StoreSummary(root, store.length, summaries)

"""``describe``: a dataset quality summary (count, quantiles, histogram, difficulty buckets) from a store.

Two things a store cannot know by itself come from the caller:

* **The current calibration.** A table's header keeps the calibration its metric had when the
  table was created (the fingerprint leaves calibrations out, so re-calibrating never rescores);
  with ``metrics=[...]`` the difficulty is computed at read time from each matching metric's
  *current* ``calibration``, so a re-calibrated metric gets new difficulties from the same scores.
* **The input domain.** The store holds scores, not images; with ``metrics=`` and ``dataset=``,
  each aligned metric (one with an ``input_domain``) also reports how much of the dataset lies
  outside its reference network's domain (:func:`qualoader.profiles.out_of_domain_fraction`),
  counted on the images themselves, so the figure holds whatever scored them and whenever.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from qualoader._validation import check_positive_int, check_type
from qualoader.data.export import Calibration, _check_sources, table_calibration
from qualoader.data.store import ScoreStore, ScoreTable
from qualoader.metrics.base import QualityMetric

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
        calibration_source: where ``difficulty`` came from: ``"override"`` (``calibrations=``),
            ``"metric"`` (the current calibration of a metric given in ``metrics=``), ``"table"``
            (the one saved when the table was created) or ``None`` (no difficulty).
        domain: for an aligned metric given with ``dataset=``, the output of
            :func:`~qualoader.profiles.out_of_domain_fraction` (``out_of_domain``, ``channels``,
            ``size``, ``intensity`` fractions and ``n_images``); else ``None``.
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
    calibration_source: str | None = None
    domain: dict[str, float] | None = None

    def __str__(self) -> str:
        lines = [
            f"{self.metric} [{self.fingerprint}] {self.config or ''}".rstrip(),
            f"  scored     {self.count}/{self.length} ({self.count / self.length:.1%})",
        ]
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
        if self.domain is not None:
            lines.append(_domain_line(self.domain))
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


def _domain_line(domain: Mapping[str, float]) -> str:
    """``  domain     62.5% of 16 images out of the reference's domain (channels 62.5%, size 62.5%; atypical intensity 0.0%)``."""
    return (
        f"  domain     {domain['out_of_domain']:.1%} of {int(domain['n_images'])} images out of the reference's domain "
        f"(channels {domain['channels']:.1%}, size {domain['size']:.1%}; atypical intensity {domain['intensity']:.1%})"
    )


def summarize_table(
    table: ScoreTable,
    *,
    bins: int = 10,
    quantiles: Sequence[float] = DEFAULT_QUANTILES,
    difficulty_edges: Sequence[float] = DEFAULT_DIFFICULTY_EDGES,
    calibration: Calibration | None = None,
    calibration_source: str | None = "override",
    domain: dict[str, float] | None = None,
) -> MetricSummary:
    """Summarise one :class:`ScoreTable` (arguments as in :func:`describe`).

    ``calibration`` (labelled ``calibration_source``) wins over the one saved in the table's
    header (:func:`~qualoader.data.export.table_calibration`); ``domain`` is passed through to
    :attr:`MetricSummary.domain`.
    """
    values = table.scores()
    values = values[np.isfinite(values)]
    if values.size:
        qs = {float(q): float(v) for q, v in zip(quantiles, np.quantile(values, list(quantiles)))}
        counts, edges = np.histogram(values, bins=bins)
        histogram = (tuple(int(c) for c in counts), tuple(float(e) for e in edges))
    else:
        qs = {float(q): float("nan") for q in quantiles}
        histogram = ((), ())
    if calibration is None:
        calibration, calibration_source = table_calibration(table)
    difficulty = None
    if calibration is not None:
        edges_d = np.asarray(difficulty_edges, dtype=np.float64)
        prior = calibration(torch.from_numpy(values)).double().numpy() if values.size else np.empty(0)
        counts_d, _ = np.histogram(prior, bins=edges_d)
        total = max(values.size, 1)
        difficulty = {
            f"[{lo:g}, {hi:g}{']' if k == len(edges_d) - 2 else ')'}": float(c) / total
            for k, (lo, hi, c) in enumerate(zip(edges_d[:-1], edges_d[1:], counts_d))
        }
    source = calibration_source if difficulty is not None else None
    return MetricSummary(
        table.metric_name,
        table.fingerprint,
        table.config,
        table.length,
        int(values.size),
        qs,
        histogram,
        difficulty,
        table.num_skipped,
        source,
        domain,
    )


def describe(
    store: ScoreStore | ScoreTable | str | os.PathLike[str],
    *,
    bins: int = 10,
    quantiles: Sequence[float] = DEFAULT_QUANTILES,
    difficulty_edges: Sequence[float] = DEFAULT_DIFFICULTY_EDGES,
    calibrations: Mapping[str, Calibration] | None = None,
    metrics: Sequence[QualityMetric] | None = None,
    dataset: Any = None,
    max_domain_images: int | None = None,
) -> StoreSummary:
    """Dataset quality summary: per metric, count, quantiles, histogram, difficulty buckets and input domain.

    Difficulty is computed at read time from the stored scores, with the calibration that
    :func:`~qualoader.data.export.table_calibration` picks for each table (as exports do): an
    override in ``calibrations``, else the current one of the matching metric in ``metrics`` (so
    re-calibrating a metric changes the difficulties without rescoring), else the table header's.
    Metrics without any get ``difficulty=None``.

    Args:
        store: a :class:`ScoreStore`, a single :class:`ScoreTable`, or a store folder.
        bins: histogram bins over each metric's score range.
        quantiles: quantile levels in [0, 1].
        difficulty_edges: increasing bucket edges in [0, 1] for the expected error.
        calibrations: optional ``{metric name: scores (N,) -> expected error (N,)}`` overrides.
        metrics: the metrics that scored the store (matched to tables by fingerprint): their
            current calibrations and, for aligned metrics, their input domains are used.
        dataset: the store's images, for the input-domain figures of the aligned metrics in
            ``metrics``: images :math:`(N, C, H, W)`, or a dataset / ``DataLoader`` yielding image
            tensors :math:`(C, H, W)` or batches :math:`(B, C, H, W)`, bare or first in a tuple
            (e.g. ``(image, label)``) or under ``"image"`` in a dict.
        max_domain_images: count the domain on at most the first this many images (``None``: all).

    Returns:
        A :class:`StoreSummary`; ``print(summary)`` shows a readable report.

    Raises:
        TypeError: wrong argument types (``metrics`` not metrics, dataset items not tensors).
        ValueError: bad ``bins``, quantiles outside [0, 1], edges not increasing in [0, 1],
            ``dataset`` without ``metrics``, bad ``max_domain_images``.
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
        raise ValueError(
            f"difficulty_edges should be at least 2 increasing values in [0, 1], but got difficulty_edges={list(difficulty_edges)!r}"
        )
    _check_sources(metrics, calibrations)  # before any table is read: a bad argument fails on an empty store too
    if dataset is not None and not metrics:
        raise ValueError(
            f"metrics should name the aligned metrics whose input domain to check when dataset is given, but got metrics={metrics!r}"
        )
    if max_domain_images is not None:
        check_positive_int(max_domain_images, "max_domain_images")
    if isinstance(store, (str, os.PathLike)):
        store = ScoreStore(store)
    check_type(store, "store", (ScoreStore, ScoreTable), "a ScoreStore, a ScoreTable or a store folder")
    tables = [store] if isinstance(store, ScoreTable) else store.tables()
    root = str(store.path if isinstance(store, ScoreTable) else store.root)
    by_fingerprint = {metric.fingerprint(): metric for metric in metrics or ()}
    domains: dict[Any, dict[str, float]] = {}  # metrics sharing a reference share one pass over the images
    summaries = []
    for table in tables:
        calibration, source = table_calibration(table, metrics, calibrations)
        metric = by_fingerprint.get(table.fingerprint)
        domain = None
        input_domain = getattr(metric, "input_domain", None)
        if dataset is not None and input_domain is not None:
            if input_domain not in domains:
                from qualoader.profiles.domain import out_of_domain_fraction

                domains[input_domain] = out_of_domain_fraction(dataset, input_domain, max_images=max_domain_images)
            domain = dict(domains[input_domain])
        summaries.append(
            summarize_table(
                table,
                bins=bins,
                quantiles=quantiles,
                difficulty_edges=difficulty_edges,
                calibration=calibration,
                calibration_source=source,
                domain=domain,
            )
        )
    return StoreSummary(root, store.length, tuple(summaries))

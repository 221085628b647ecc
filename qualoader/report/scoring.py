"""Score every sample of a report source with the requested metrics (or read their shard tags)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import torch
from tqdm.auto import tqdm

from qualoader._validation import check_positive_int
from qualoader.engine import ScoringEngine
from qualoader.metrics.base import QualityMetric
from qualoader.report.sources import Sample, Source

__all__ = ["ScoreTable", "score_source"]


@dataclass
class ScoreTable:
    """Scores of the kept samples of a source.

    Attributes:
        samples: the samples that could be scored, in source order.
        scores: metric name -> float64 array :math:`(N,)` (raw scores, the metric's own direction).
        difficulty: metric name -> expected error :math:`(N,)` for calibrated metrics only.
        from_tags: metric name -> how many scores were read from ``quality.json`` tags.
        problems: samples dropped (undecodable images), with the reason.
    """

    samples: list[Sample]
    scores: dict[str, np.ndarray]
    difficulty: dict[str, np.ndarray]
    from_tags: dict[str, int]
    problems: list[str] = field(default_factory=list)


def _flush(
    batch: list[tuple[int, torch.Tensor]],
    needed: tuple[str, ...],
    engine: ScoringEngine,
    keys: dict[str, str],
    scores: dict[str, np.ndarray],
) -> None:
    """Score one batch of images (any sizes) that all need the metrics ``needed`` (engine names)."""
    result = engine.score([image for _, image in batch], names=list(needed), difficulty=False)
    rows = [index for index, _ in batch]
    for name, values in result.scores.items():
        scores[keys[name]][rows] = values.numpy()


def score_source(
    source: Source,
    metrics: Mapping[str, QualityMetric],
    batch_size: int = 64,
    device: str | torch.device = "cpu",
    progress: bool = False,
) -> ScoreTable:
    """Score a source: tags from ``quality.json`` are used when present, images are decoded otherwise.

    Images are scored by one :class:`~qualoader.engine.ScoringEngine` for all metrics, in batches
    of up to ``batch_size`` (the engine groups sizes and shares work between metrics).

    Args:
        source: from :func:`~qualoader.report.sources.load_source`.
        metrics: name -> no-reference metric (already on ``device``).
        batch_size: images per metric call.
        device: where images are sent for scoring.
        progress: show a tqdm progress bar over the samples (on stderr).

    Returns:
        A :class:`ScoreTable` without the samples whose image could not be decoded.

    Raises:
        ValueError: a metric needs a reference image, or ``metrics`` is empty.
    """
    check_positive_int(batch_size, "batch_size")
    if not metrics:
        raise ValueError("metrics should name at least one metric, but got metrics={}")
    for key, metric in metrics.items():
        if not isinstance(metric, QualityMetric):
            raise TypeError(f"metrics[{key!r}] should be a QualityMetric, but got metrics[{key!r}] of type {type(metric).__name__}")
    # The engine checks once that every metric is no-reference (a report has no clean reference).
    engine = ScoringEngine(list(metrics.values()), device)
    keys = {metric.name: key for key, metric in metrics.items()}  # engine name -> caller's key
    count = len(source.samples)
    scores = {key: np.full(count, np.nan) for key in metrics}
    from_tags = dict.fromkeys(metrics, 0)
    failed: set[int] = set()
    problems: list[str] = []
    # Samples are batched by the set of metrics they still need (all of them unless tagged);
    # the engine groups each batch by image size itself.
    pending: dict[tuple[str, ...], list[tuple[int, torch.Tensor]]] = {}
    # checked per image at decode time: one too-small or NaN image is listed, never fails its batch
    min_size = max(metric.min_size for metric in metrics.values())
    for index, sample in enumerate(tqdm(source.samples, disable=not progress, unit="img", desc=f"report {', '.join(metrics)}")):
        needed = []
        for key, metric in metrics.items():
            if key in sample.tags:
                scores[key][index] = sample.tags[key]
                from_tags[key] += 1
            else:
                needed.append(metric.name)
        if not needed:
            continue
        try:
            image = sample.decode(min_size)
        except (ValueError, OSError) as error:
            failed.add(index)
            problems.append(f"{sample.shard + '/' if sample.shard else ''}{sample.key}: {error}")
            continue
        group = pending.setdefault(tuple(needed), [])
        group.append((index, image))
        if len(group) >= batch_size:
            _flush(group, tuple(needed), engine, keys, scores)
            pending[tuple(needed)] = []
    for needed_names, group in pending.items():
        if group:
            _flush(group, needed_names, engine, keys, scores)
    keep = np.array([i for i in range(count) if i not in failed], dtype=np.int64)
    if keep.size == 0:
        raise ValueError(f"source should have at least one decodable image, but got none of {count}: {'; '.join(problems[:3])}")
    kept_scores = {name: values[keep] for name, values in scores.items()}
    difficulty = {}
    for key, metric in metrics.items():
        if metric.calibration is not None:
            finite = np.nan_to_num(kept_scores[key], nan=0.0)
            prior = metric.difficulty(torch.from_numpy(finite)).to("cpu", torch.float64).numpy()
            difficulty[key] = np.where(np.isnan(kept_scores[key]), np.nan, prior)
    return ScoreTable([source.samples[i] for i in keep], kept_scores, difficulty, from_tags, problems)

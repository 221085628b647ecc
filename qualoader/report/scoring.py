"""Score every sample of a report source with the requested metrics (or read their shard tags)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import torch
from tqdm.auto import tqdm

from qualoader._validation import check_positive_int
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
    batch: list[tuple[int, torch.Tensor, list[str]]],
    metrics: Mapping[str, QualityMetric],
    scores: dict[str, np.ndarray],
    device: torch.device,
) -> None:
    images = torch.stack([image for _, image, _ in batch]).to(device)
    for name, metric in metrics.items():
        rows = [k for k, (_, _, needed) in enumerate(batch) if name in needed]
        if rows:
            with torch.no_grad():
                values = metric(images[rows]).detach().to("cpu", torch.float64).numpy()
            scores[name][[batch[k][0] for k in rows]] = values


def score_source(
    source: Source,
    metrics: Mapping[str, QualityMetric],
    batch_size: int = 64,
    device: str | torch.device = "cpu",
    progress: bool = False,
) -> ScoreTable:
    """Score a source: tags from ``quality.json`` are used when present, images are decoded otherwise.

    Images of equal shape are scored together in batches of up to ``batch_size``.

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
    for name, metric in metrics.items():
        if not isinstance(metric, QualityMetric):
            raise TypeError(f"metrics[{name!r}] should be a QualityMetric, but got metrics[{name!r}] of type {type(metric).__name__}")
        if metric.requires_reference:
            raise ValueError(f"metrics should be no-reference metrics (a report has no clean reference), but got the full-reference metric {name!r}")
    device = torch.device(device)
    count = len(source.samples)
    scores = {name: np.full(count, np.nan) for name in metrics}
    from_tags = dict.fromkeys(metrics, 0)
    failed: set[int] = set()
    problems: list[str] = []
    pending: dict[tuple[int, ...], list[tuple[int, torch.Tensor, list[str]]]] = {}
    for index, sample in enumerate(tqdm(source.samples, disable=not progress, unit="img", desc=f"report {', '.join(metrics)}")):
        needed = []
        for name in metrics:
            if name in sample.tags:
                scores[name][index] = sample.tags[name]
                from_tags[name] += 1
            else:
                needed.append(name)
        if not needed:
            continue
        try:
            image = sample.decode()
        except (ValueError, OSError) as error:
            failed.add(index)
            problems.append(f"{sample.shard + '/' if sample.shard else ''}{sample.key}: {error}")
            continue
        group = pending.setdefault(tuple(image.shape), [])
        group.append((index, image, needed))
        if len(group) >= batch_size:
            _flush(group, metrics, scores, device)
            pending[tuple(image.shape)] = []
    for group in pending.values():
        if group:
            _flush(group, metrics, scores, device)
    keep = np.array([i for i in range(count) if i not in failed], dtype=np.int64)
    if keep.size == 0:
        raise ValueError(f"source should have at least one decodable image, but got none of {count}: {'; '.join(problems[:3])}")
    kept_scores = {name: values[keep] for name, values in scores.items()}
    difficulty = {}
    for name, metric in metrics.items():
        if metric.calibration is not None:
            finite = np.nan_to_num(kept_scores[name], nan=0.0)
            prior = metric.difficulty(torch.from_numpy(finite).to(device, torch.float32)).to("cpu", torch.float64).numpy()
            difficulty[name] = np.where(np.isnan(kept_scores[name]), np.nan, prior)
    return ScoreTable([source.samples[i] for i in keep], kept_scores, difficulty, from_tags, problems)

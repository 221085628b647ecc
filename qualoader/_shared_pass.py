"""Running the aligned metrics of one reference network from a single forward pass per batch.

Each aligned metric hands over its hooks and a finishing step (``ReferenceMetric.tap``, a
:class:`~qualoader.reference.ForwardTap`) instead of running the network itself; metrics whose
networks compute the same function (equal config, weights hash included) read one pass. The
scoring engine (:mod:`qualoader.engine`) and the calibration sweep of several metrics
(:mod:`qualoader.calibration.joint`) both run their batches through :func:`run_shared_pass`, so a
metric scores the same in a sweep as it does when it scores a dataset.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from torch import Tensor

from qualoader.metrics.base import QualityMetric
from qualoader.reference import ForwardTap, ReferenceNetwork

__all__ = ["check_domain", "network_key", "run_shared_pass", "score_by_network"]


def network_key(metric: QualityMetric) -> str | None:
    """Identity of an aligned metric's reference network (its config, weights hash included), or ``None``."""
    from qualoader.metrics.aligned._reference_metric import ReferenceMetric

    if not isinstance(metric, ReferenceMetric):
        return None
    return json.dumps(metric.network.get_config(), sort_keys=True)


def check_domain(metric: QualityMetric, images: Tensor) -> None:
    """Run a reference metric's input-domain guard on the images as given (before any resize).

    ``ReferenceMetric.forward`` runs this guard; the engine calls ``score`` on resized batches, so
    it runs the guard itself, on the original sizes (a shape test, no host sync, once warned).
    """
    from qualoader.metrics.aligned._reference_metric import ReferenceMetric

    if isinstance(metric, ReferenceMetric):
        metric.check_domain(images)


def run_shared_pass(
    network: ReferenceNetwork, metrics: Sequence[QualityMetric], batch: Tensor, extra: Sequence[ForwardTap] = ()
) -> tuple[list[Tensor], list[Any]]:
    """Scores of ``metrics`` on ``batch`` and the results of the ``extra`` taps, from one pass of ``network``.

    Args:
        network: computes what every metric's own network computes (equal config and weights).
        metrics: aligned metrics of ``network``; one whose ``tap`` is ``None`` scores alone.
        batch: validated images :math:`(B, C, H, W)` already at the network's input size.
        extra: further consumers of the same pass (e.g. the network's errors in a calibration sweep).

    Returns:
        ``(scores, extras)``: scores :math:`(B,)` per metric in order, and ``[tap.finish(logits)]`` per extra tap.
    """
    taps = [getattr(metric, "tap", lambda *_: None)(network, batch) for metric in metrics]
    shared = [tap for tap in taps if tap is not None]
    outputs = network.run_taps(batch, [*shared, *extra]) if shared or extra else []
    finished = iter(outputs[: len(shared)])
    scores = [next(finished) if tap is not None else metric.score(batch) for metric, tap in zip(metrics, taps, strict=True)]
    return scores, list(outputs[len(shared) :])


def score_by_network(
    metrics: Sequence[tuple[int, QualityMetric]], batch: Tensor, keys: Mapping[str, str | None]
) -> list[tuple[int, Tensor]]:
    """``(row, scores)`` of metrics that read ``batch`` at their network's input size; one forward per network.

    Metrics of the same network (equal ``keys[metric.name]``, see :func:`network_key`) read one pass
    of the first one's network; any other metric, or one alone on its network, scores by itself.
    """
    results: list[tuple[int, Tensor]] = []
    sharing: dict[str, list[tuple[int, QualityMetric]]] = {}
    for i, metric in metrics:
        key = keys[metric.name]
        if key is None:
            results.append((i, metric.score(batch)))
        else:
            sharing.setdefault(key, []).append((i, metric))
    for group in sharing.values():
        if len(group) == 1:  # nothing to share
            results.append((group[0][0], group[0][1].score(batch)))
            continue
        network = group[0][1].network  # type: ignore[attr-defined]
        scores, _ = run_shared_pass(network, [metric for _, metric in group], batch)
        results.extend((i, score) for (i, _), score in zip(group, scores, strict=True))
    return results

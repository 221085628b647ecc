"""One scoring engine: many metrics per decode, shared work, one host synchronisation per batch.

Every path that scores images (``QualityLoader``/``precompute``, the webdataset stages and
``tag``/``score``, the report, Ray) hands its batches to a :class:`ScoringEngine`. For each batch
the engine

1. checks once that every metric is a no-reference metric (at construction) and the images once
   (shape and dtype at once, the [0, 1] range as a device-side flag read with the scores);
2. groups the images by shape and dtype once, and moves each group to the device once;
3. scores the classical measures of :mod:`qualoader.metrics.classical` from one shared
   :class:`~qualoader.metrics.classical.BatchFeatures` per group (luma, gradients, histograms
   computed once, in cache-sized chunks on CPU);
4. resizes images to a reference network's input size *before* batching them for the metrics
   that would resize anyway (the ``ReferenceMetric`` family: ``bn-shift``,
   ``feature-distance``, or any metric with a ``resizes_to`` attribute), so a folder of mixed
   sizes makes one network call per batch instead of one per size;
5. runs every aligned metric of one reference network (``bn-shift``, ``confidence``,
   ``task-guided`` on the same weights) from a single forward pass per batch: each metric hands
   over its hooks and a finishing step (``ReferenceMetric.tap``,
   :class:`~qualoader.reference.ForwardTap`) instead of running the network itself;
6. gathers every score on the device and copies them to the host in one transfer, then maps
   scores to difficulties on the host for calibrated metrics.

Networks are "the same" when their configs are equal, weights hash included: each metric owns
its own copy of the network (so metrics stay independent objects), and the hash makes sure that
reading one copy's pass for all of them gives exactly the scores each would compute alone.

Metric specifications are parsed in one place, :func:`parse_metric_spec`: ``"a,b,c"``, a named
suite such as ``"classical"`` (:data:`METRIC_SUITES`), or a list of them. The engine's grouping of a batch lives in
:mod:`qualoader._engine_batches`, its shared forward pass in :mod:`qualoader._shared_pass`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from qualoader._engine_batches import as_groups, check_on_host, out_of_range, put, resize_batch, rows_of
from qualoader._metric_spec import METRIC_SUITES, MetricSpec, parse_metric_spec, resize_target, resolve_metrics
from qualoader._shared_pass import check_domain, network_key, score_by_network
from qualoader._validation import check_min_size, check_positive_int, check_type
from qualoader.metrics.base import QualityMetric
from qualoader.metrics.classical import BatchFeatures, ClassicalMetric

__all__ = [
    "METRIC_SUITES",
    "EngineScores",
    "MetricSpec",
    "ScoringEngine",
    "parse_metric_spec",
    "resize_target",
    "resolve_metrics",
    "score_batch",
]

# Pixels per BatchFeatures chunk on CPU (4 images of 256 px): about 1 MB of float32 per
# intermediate plane keeps the chained element-wise passes of the classical kernels in cache.
# Measured in CPU time per image on the 2-core machine against whole batches of 64: 0.77x for the
# nine measures at 224 px, 0.6x for sharpness at 256 px; chunks of 1 pay Python overhead instead.
_CHUNK_PIXELS = 1 << 18


@dataclass
class EngineScores:
    """Scores of one batch, per metric.

    Attributes:
        scores: metric name -> float64 CPU tensor :math:`(B,)` in input order (the metric's own
            direction).
        difficulty: metric name -> expected error :math:`(B,)` float64 CPU, for calibrated metrics
            only.
    """

    scores: dict[str, Tensor]
    difficulty: dict[str, Tensor] = field(default_factory=dict)


class ScoringEngine:
    """Score batches with several no-reference metrics at once.

    Args:
        metrics: a name, ``"a,b,c"``, a suite (``"classical"``), a :class:`QualityMetric`, or a
            sequence of them (see :func:`parse_metric_spec`); names must be distinct.
        device: where to score; metrics are moved there. ``None``: the first metric's device.
        check_values: check that float images are finite and in [0, 1] (read with the scores,
            so it costs no extra synchronisation); ``uint8`` images need no check.
        chunk_size: images per shared :class:`~qualoader.metrics.classical.BatchFeatures`;
            ``None`` picks a cache-sized chunk on CPU and whole groups on other devices.

    Raises:
        TypeError, ValueError, KeyError: see :func:`resolve_metrics`.

    Example:
        >>> engine = ScoringEngine("sharpness,brightness")
        >>> result = engine.score(torch.rand(4, 3, 32, 32))
        >>> sorted(result.scores), result.scores["brightness"].shape
        (['brightness', 'sharpness'], torch.Size([4]))
    """

    def __init__(
        self,
        metrics: MetricSpec,
        device: str | torch.device | None = None,
        *,
        check_values: bool = True,
        chunk_size: int | None = None,
    ) -> None:
        if device is not None:
            check_type(device, "device", (str, torch.device), "a device name, a torch.device or None")
        check_type(check_values, "check_values", bool, "a bool")
        if chunk_size is not None:
            check_positive_int(chunk_size, "chunk_size")
        resolved = resolve_metrics(metrics)
        target = torch.device(device) if device is not None else next(iter(resolved.values())).device
        self.metrics: dict[str, QualityMetric] = {name: metric.to(target).eval() for name, metric in resolved.items()}
        self.device = target
        self.check_values = check_values
        self.chunk_size = chunk_size
        # How each metric consumes a batch, decided once: shared classical features, the images
        # as they are, or the images resized to a reference network's input.
        self._targets = {
            name: None if isinstance(metric, ClassicalMetric) else resize_target(metric) for name, metric in self.metrics.items()
        }
        # Aligned metrics whose networks compute the same function (equal config, weights hash
        # included) share one forward pass per batch; the key is read once, as hashing the
        # weights costs a pass over them.
        self._network_keys = {name: network_key(metric) for name, metric in self.metrics.items()}

    @property
    def names(self) -> list[str]:
        """Metric names, in the order scores are returned."""
        return list(self.metrics)

    @property
    def calibrated(self) -> list[str]:
        """Names of the metrics that carry a calibration (and so give a difficulty)."""
        return [name for name, metric in self.metrics.items() if metric.calibration is not None]

    def fingerprints(self) -> dict[str, str]:
        """``{name: metric.fingerprint()}``."""
        return {name: metric.fingerprint() for name, metric in self.metrics.items()}

    def _chunk(self, height: int, width: int) -> int | None:
        if self.chunk_size is not None:
            return self.chunk_size
        if self.device.type != "cpu":
            return None
        return max(1, _CHUNK_PIXELS // max(1, height * width))

    @torch.no_grad()
    def score_on_device(self, images: Tensor | Sequence[Tensor], names: Sequence[str] | None = None) -> tuple[Tensor, Tensor | None]:
        """Scores of every metric as one device tensor, without any host synchronisation.

        Args:
            images: a tensor :math:`(B, C, H, W)` (or :math:`(B, H, W)`), ``uint8`` or float in
                [0, 1], or a sequence of :math:`B` tensors :math:`(C, H, W)` of any sizes.
            names: score only these metrics (default: all, in :attr:`names` order).

        Returns:
            ``(scores, bad)``: float64 :math:`(k, B)` on the engine's device (row ``i`` is
            ``names[i]``), and a 0-d bool tensor that is ``True`` when some float image was out of
            [0, 1] or not finite (``None`` when nothing was checked).
        """
        active = self._select(names)
        count, groups = as_groups(images)
        out = torch.empty(len(active), count, dtype=torch.float64, device=self.device)
        classical = [(i, m) for i, m in enumerate(active) if isinstance(m, ClassicalMetric)]
        native = [(i, m) for i, m in enumerate(active) if not isinstance(m, ClassicalMetric) and self._targets[m.name] is None]
        resized: dict[tuple[int, int], list[tuple[int, QualityMetric]]] = {}
        for i, metric in enumerate(active):
            if (size := self._targets[metric.name]) is not None:
                resized.setdefault(size, []).append((i, metric))
        pending: dict[tuple[int, int], list[tuple[Tensor | None, Tensor]]] = {size: [] for size in resized}
        flags: list[Tensor] = []
        # Every metric's smallest accepted size, checked on every group before any work is done:
        # the engine calls score()/score_features(), which skip forward()'s checks.
        for _, stack in groups:
            for _, metric in (*classical, *native):
                check_min_size(stack, metric.min_size, owner=f"metric {metric.name!r}")
        floats = self._floats(groups) if (native or resized) else {}
        for position, (rows, stack) in enumerate(groups):
            images_on_device = stack if stack.device == self.device else stack.to(self.device, non_blocking=True)
            index = None if rows is None else torch.tensor(rows, dtype=torch.int64).to(self.device, non_blocking=True)
            as_float = images_on_device
            if images_on_device.dtype == torch.uint8:
                as_float = None  # converted lazily: classical measures convert per chunk
            elif self.check_values:
                flags.append(out_of_range(images_on_device))
            if classical:
                for chunk_index, chunk in self._chunks(images_on_device, index):
                    # one BatchFeatures per resolution the measures ask for (normally just one)
                    shared: dict[int, BatchFeatures] = {}
                    for i, metric in classical:
                        factor = metric.downscale  # type: ignore[attr-defined]
                        if factor not in shared:
                            shared[factor] = BatchFeatures(chunk, factor)
                        features = shared[factor]
                        put(out[i], chunk_index, metric.score_features(features))  # type: ignore[attr-defined]
            for _, metric in (*native, *(pair for pairs in resized.values() for pair in pairs)):
                check_domain(metric, images_on_device)
            if native or resized:
                if as_float is None:
                    as_float = floats[position]
                for i, metric in native:
                    put(out[i], index, metric.score(as_float))
                for size in resized:
                    pending[size].append((index, resize_batch(as_float, size)))
        for size, metrics in resized.items():
            parts = pending[size]
            channels = {part.shape[1] for _, part in parts}
            if len(channels) > 1:  # grey and colour images in one batch: RGB for all (what the network sees either way)
                parts = [(rows, part.expand(-1, 3, -1, -1) if part.shape[1] == 1 else part) for rows, part in parts]
            batch = parts[0][1] if len(parts) == 1 else torch.cat([part.float() for _, part in parts])
            index = parts[0][0] if len(parts) == 1 else torch.cat([rows_of(rows, part) for rows, part in parts])
            for i, scores in score_by_network(metrics, batch, self._network_keys):
                put(out[i], index, scores)
        bad = torch.stack(flags).any() if flags else None
        return out, bad

    def _floats(self, groups: list[tuple[list[int] | None, Tensor]]) -> dict[int, Tensor]:
        """The ``uint8`` groups as floats in [0, 1] on the device, converted in one operation.

        A batch of mixed sizes is mostly groups of one image; converting each costs a call into
        the intra-op thread pool, which waits milliseconds for a core when DataLoader workers keep
        them busy. One concatenated conversion, then views per group, pays that once per batch.
        """
        positions = [i for i, (_, stack) in enumerate(groups) if stack.dtype == torch.uint8]
        if not positions:
            return {}
        parts = [groups[i][1].to(self.device, non_blocking=True).reshape(-1) for i in positions]
        flat = torch.div(parts[0] if len(parts) == 1 else torch.cat(parts), 255.0)  # bit-identical to .float().div_(255.0)
        pieces = flat.split([part.numel() for part in parts])
        return {i: piece.view(groups[i][1].shape) for i, piece in zip(positions, pieces, strict=True)}

    def _chunks(self, images: Tensor, index: Tensor | None) -> Any:
        """``(rows, chunk)`` pairs of at most :meth:`_chunk` images."""
        size = self._chunk(images.shape[-2], images.shape[-1])
        count = images.shape[0]
        if size is None or size >= count:
            yield index, images
            return
        for start in range(0, count, size):
            stop = min(count, start + size)
            rows = slice(start, stop) if index is None else index[start:stop]
            yield rows, images[start:stop]

    def _select(self, names: Sequence[str] | None) -> list[QualityMetric]:
        if names is None:
            return list(self.metrics.values())
        unknown = [name for name in names if name not in self.metrics]
        if unknown or not names:
            raise ValueError(f"names should be a non-empty subset of the engine's metrics {self.names}, but got names={list(names)!r}")
        return [self.metrics[name] for name in names]

    def score(self, images: Tensor | Sequence[Tensor], names: Sequence[str] | None = None, *, difficulty: bool = True) -> EngineScores:
        """Score a batch: one host transfer for all metrics, then difficulties on the host.

        Args:
            images: a tensor :math:`(B, C, H, W)` (or :math:`(B, H, W)`), ``uint8`` or float in
                [0, 1], or a sequence of :math:`B` tensors :math:`(C, H, W)` of any sizes.
            names: score only these metrics (default: all).
            difficulty: also map scores to difficulties for calibrated metrics.

        Returns:
            :class:`EngineScores` with float64 CPU tensors :math:`(B,)` in input order.

        Raises:
            TypeError: images of the wrong type or dtype.
            ValueError: wrong shapes or channel counts, or float values outside [0, 1] / not finite.
        """
        active = list(self.metrics) if names is None else list(names)
        try:
            out, bad = self.score_on_device(images, active)
        except (RuntimeError, IndexError):
            if self.check_values:  # a kernel can fail on NaN before the deferred range flag is read
                check_on_host(images)
            raise
        if bad is not None:  # the range flag travels with the scores: one transfer
            packed = torch.cat([out.flatten(), bad.to(torch.float64).reshape(1)]).cpu()
            host, failed = packed[:-1].view_as(out), bool(packed[-1])
        else:
            host, failed = out.cpu(), False
        if failed:
            check_on_host(images)
            raise ValueError("images should have finite float values in [0, 1], but got values outside")  # the host check names them first
        scores = {name: host[i] for i, name in enumerate(active)}
        priors = {}
        if difficulty:
            for name in active:
                metric = self.metrics[name]
                if metric.calibration is not None:
                    priors[name] = metric.difficulty(scores[name]).to(torch.float64)
        return EngineScores(scores, priors)

    __call__ = score

    def __repr__(self) -> str:
        return f"ScoringEngine(metrics={self.names}, device={str(self.device)!r})"


def score_batch(
    images: Tensor | Sequence[Tensor],
    metrics: MetricSpec,
    device: str | torch.device | None = None,
) -> dict[str, Tensor]:
    """Score a batch with several metrics in one pass; the function form of :class:`ScoringEngine`.

    Args:
        images: a tensor :math:`(B, C, H, W)`, ``uint8`` or float in [0, 1], or a sequence of
            tensors :math:`(C, H, W)` of any sizes.
        metrics: see :class:`ScoringEngine`.
        device: where to score (``None``: the first metric's device).

    Returns:
        ``{name: scores}``, float64 CPU tensors :math:`(B,)`.

    Example:
        >>> score_batch(torch.ones(2, 1, 8, 8), "brightness,contrast")
        {'brightness': tensor([1., 1.], dtype=torch.float64), 'contrast': tensor([0., 0.], dtype=torch.float64)}
    """
    return ScoringEngine(metrics, device).score(images, difficulty=False).scores

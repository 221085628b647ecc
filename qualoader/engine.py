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
suite such as ``"classical"`` (:data:`METRIC_SUITES`), or a list of them.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from qualoader._validation import check_min_size, check_positive_int, check_type
from qualoader.metrics.base import QualityMetric
from qualoader.metrics.classical import BatchFeatures, ClassicalMetric
from qualoader.metrics.classical._common import check_batch_structure
from qualoader.metrics.registry import create_metric, list_metrics

__all__ = [
    "METRIC_SUITES",
    "EngineScores",
    "ScoringEngine",
    "parse_metric_spec",
    "resize_target",
    "score_batch",
]

#: Named suites accepted wherever metric names are (``--metric classical``, ``metrics="classical"``).
METRIC_SUITES: Mapping[str, tuple[str, ...]] = {
    "classical": (
        "sharpness",
        "gradient-energy",
        "noise",
        "contrast",
        "brightness",
        "colorfulness",
        "blockiness",
        "clipping",
        "entropy",
    ),
}
# Pixels per BatchFeatures chunk on CPU (4 images of 256 px): about 1 MB of float32 per
# intermediate plane keeps the chained element-wise passes of the classical kernels in cache.
# Measured in CPU time per image on the 2-core machine against whole batches of 64: 0.77x for the
# nine measures at 224 px, 0.6x for sharpness at 256 px; chunks of 1 pay Python overhead instead.
_CHUNK_PIXELS = 1 << 18

MetricSpec = str | QualityMetric | Sequence[str | QualityMetric]


def parse_metric_spec(spec: str | Sequence[str]) -> list[str]:
    """Expand a metric specification into distinct metric names, in order.

    Args:
        spec: ``"sharpness"``, ``"sharpness,noise"``, a suite name from :data:`METRIC_SUITES`
            (``"classical"``), a mix (``"classical,bn-shift"``), or a list of such strings.
            Names with a prefix (``"pyiqa:niqe"``) are passed through to
            :func:`~qualoader.metrics.create_metric`.

    Returns:
        The metric names, duplicates dropped (first occurrence kept).

    Raises:
        TypeError: ``spec`` is neither a string nor a sequence of strings.
        ValueError: ``spec`` names no metric (empty, or only commas).
        KeyError: an unknown name; the message suggests close registered names and suites.

    Example:
        >>> parse_metric_spec("noise,classical")[:3]
        ['noise', 'sharpness', 'gradient-energy']
    """
    parts: list[str] = []
    items = [spec] if isinstance(spec, str) else spec
    if isinstance(items, (bytes, bytearray)) or not isinstance(items, Sequence):
        raise TypeError(f"spec should be a metric name, 'a,b,c' or a sequence of them, but got spec of type {type(spec).__name__}")
    for item in items:
        check_type(item, "spec[i]", str, "a metric name or suite (str)")
        parts.extend(part.strip() for part in item.split(","))
    parts = [part for part in parts if part]
    if not parts:
        raise ValueError(f"spec should name at least one metric or suite, but got spec={spec!r}")
    known = set(list_metrics())
    names: list[str] = []
    for part in parts:
        if part in METRIC_SUITES:
            expanded: Sequence[str] = METRIC_SUITES[part]
        elif ":" in part or part in known:
            expanded = (part,)
        else:
            close = difflib.get_close_matches(part, [*known, *METRIC_SUITES], n=3)
            hint = f"; did you mean {', '.join(map(repr, close))}?" if close else f"; suites: {', '.join(sorted(METRIC_SUITES))}"
            raise KeyError(f"spec should be a registered metric or suite (or a comma-separated list of them), but got spec={part!r}{hint}")
        names.extend(name for name in expanded if name not in names)
    return names


def resize_target(metric: QualityMetric) -> tuple[int, int] | None:
    """The input size a metric resizes every image to before scoring, or ``None`` (native size).

    Metrics computed through a :class:`~qualoader.reference.ReferenceNetwork` (the
    ``ReferenceMetric`` family) resize to the network's ``input_size`` with antialiased bilinear
    interpolation; any other metric can declare the same with a ``resizes_to`` attribute
    ``(height, width)``. The engine resizes such images once, before batching them.
    """
    declared = getattr(metric, "resizes_to", None)
    if declared is not None:
        return (int(declared[0]), int(declared[1]))
    from qualoader.metrics.aligned._reference_metric import ReferenceMetric

    if isinstance(metric, ReferenceMetric):
        height, width = metric.network.input_size
        return (int(height), int(width))
    return None


def resolve_metrics(metrics: MetricSpec, device: torch.device | None = None) -> dict[str, QualityMetric]:
    """``{name: metric}`` for a specification; every metric checked to be no-reference, in eval mode, on ``device``.

    Raises:
        TypeError: an item is neither a name nor a :class:`QualityMetric`.
        ValueError: a full-reference metric, two metrics of the same name, or no metric.
        KeyError: an unknown name.
    """
    if isinstance(metrics, (str, QualityMetric)):
        items: list[Any] = [metrics]
    elif isinstance(metrics, Sequence) and not isinstance(metrics, (bytes, bytearray)):
        items = list(metrics)
    else:
        raise TypeError(
            "metrics should be a metric name, 'a,b,c', a QualityMetric or a sequence of them, but got metrics of type "
            f"{type(metrics).__name__}"
        )
    if not items:
        raise ValueError("metrics should name at least one metric, but got metrics=[]")
    resolved: dict[str, QualityMetric] = {}
    for item in items:
        if isinstance(item, str):
            built = [create_metric(name) for name in parse_metric_spec(item)]
        elif isinstance(item, QualityMetric):
            built = [item]
        else:
            raise TypeError(f"metrics should hold metric names or QualityMetric instances, but got an item of type {type(item).__name__}")
        for metric in built:
            if metric.requires_reference:
                raise ValueError(
                    f"metrics should be no-reference metrics, but got the full-reference metric {metric.name!r}, which needs a clean "
                    "reference image"
                )
            if metric.name in resolved:
                if isinstance(item, str):
                    continue  # a name or suite repeating an earlier name: keep the first
                raise ValueError(f"metrics should have distinct names, but got {metric.name!r} twice")
            resolved[metric.name] = metric
    for name, metric in resolved.items():
        resolved[name] = (metric if device is None else metric.to(device)).eval()
    return resolved


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


def _as_groups(images: Tensor | Sequence[Tensor]) -> tuple[int, list[tuple[list[int] | None, Tensor]]]:
    """``(B, [(rows or None for all, stack (b, C, H, W))])``: the batch split by shape and dtype."""
    if isinstance(images, Tensor):
        if images.ndim == 3:  # (B, H, W): grey images without a channel axis
            images = images.unsqueeze(1)
        check_batch_structure(images, "images")
        return images.shape[0], [(None, images)]
    if isinstance(images, (str, bytes)) or not isinstance(images, Sequence):
        raise TypeError(
            f"images should be a tensor (B, C, H, W) or a sequence of tensors (C, H, W), but got images of type {type(images).__name__}"
        )
    if not images:
        raise ValueError("images should hold at least one image, but got an empty sequence")
    groups: dict[tuple[Any, ...], list[int]] = {}
    for row, image in enumerate(images):
        if not isinstance(image, Tensor):
            raise TypeError(f"images[{row}] should be a tensor (C, H, W), but got images[{row}] of type {type(image).__name__}")
        if image.ndim == 2:
            image = image.unsqueeze(0)
        if image.ndim != 3:
            raise ValueError(f"images[{row}] should have shape (C, H, W), but got images[{row}].shape={tuple(image.shape)}")
        groups.setdefault((*image.shape, image.dtype), []).append(row)
    out = []
    for rows in groups.values():
        members = [images[r] if images[r].ndim == 3 else images[r].unsqueeze(0) for r in rows]
        # One image: a view, not a copy (mixed-size batches are mostly groups of one, and every
        # small op costs a thread-pool round trip on a busy CPU).
        stack = members[0].unsqueeze(0) if len(members) == 1 else torch.stack(members)
        check_batch_structure(stack, f"images[{rows[0]}]")
        out.append((rows if len(rows) < len(images) else None, stack))
    return len(images), out


def _out_of_range(images: Tensor) -> Tensor:
    """0-d bool on the images' device: some value is NaN, infinite or outside [0, 1]."""
    low, high = images.aminmax()
    return ~((low >= 0) & (high <= 1))  # NaN fails both comparisons


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
        self._network_keys = {name: _network_key(metric) for name, metric in self.metrics.items()}

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
        count, groups = _as_groups(images)
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
                flags.append(_out_of_range(images_on_device))
            if classical:
                for chunk_index, chunk in self._chunks(images_on_device, index):
                    # one BatchFeatures per resolution the measures ask for (normally just one)
                    shared: dict[int, BatchFeatures] = {}
                    for i, metric in classical:
                        factor = metric.downscale  # type: ignore[attr-defined]
                        if factor not in shared:
                            shared[factor] = BatchFeatures(chunk, factor)
                        features = shared[factor]
                        _put(out[i], chunk_index, metric.score_features(features))  # type: ignore[attr-defined]
            for _, metric in (*native, *(pair for pairs in resized.values() for pair in pairs)):
                _check_domain(metric, images_on_device)
            if native or resized:
                if as_float is None:
                    as_float = floats[position]
                for i, metric in native:
                    _put(out[i], index, metric.score(as_float))
                for size in resized:
                    small = as_float
                    if tuple(as_float.shape[-2:]) != size:
                        source = as_float if as_float.dtype == torch.float32 else as_float.float()
                        small = F.interpolate(source, size=size, mode="bilinear", align_corners=False, antialias=True)
                    pending[size].append((index, small))
        for size, metrics in resized.items():
            parts = pending[size]
            channels = {part.shape[1] for _, part in parts}
            if len(channels) > 1:  # grey and colour images in one batch: RGB for all (what the network sees either way)
                parts = [(rows, part.expand(-1, 3, -1, -1) if part.shape[1] == 1 else part) for rows, part in parts]
            batch = parts[0][1] if len(parts) == 1 else torch.cat([part.float() for _, part in parts])
            index = parts[0][0] if len(parts) == 1 else torch.cat([_rows(rows, part) for rows, part in parts])
            for i, scores in self._score_resized(metrics, batch):
                _put(out[i], index, scores)
        bad = torch.stack(flags).any() if flags else None
        return out, bad

    def _score_resized(self, metrics: list[tuple[int, QualityMetric]], batch: Tensor) -> list[tuple[int, Tensor]]:
        """``(row, scores)`` of metrics that read ``batch`` at their network's input size; one forward per network.

        Metrics of the same network (see :meth:`ReferenceMetric.tap`) register their hooks on
        one of them and read one pass; any other metric, or one that cannot share, scores alone.
        """
        results: list[tuple[int, Tensor]] = []
        sharing: dict[str, list[tuple[int, QualityMetric]]] = {}
        for i, metric in metrics:
            key = self._network_keys[metric.name]
            if key is None:
                results.append((i, metric.score(batch)))
            else:
                sharing.setdefault(key, []).append((i, metric))
        for group in sharing.values():
            if len(group) == 1:  # nothing to share
                results.append((group[0][0], group[0][1].score(batch)))
                continue
            network = group[0][1].network  # type: ignore[attr-defined]
            taps = [(i, metric, metric.tap(network, batch)) for i, metric in group]  # type: ignore[attr-defined]
            shared = [(i, tap) for i, _, tap in taps if tap is not None]
            if shared:
                outputs = network.run_taps(batch, [tap for _, tap in shared])
                results.extend((i, scores) for (i, _), scores in zip(shared, outputs, strict=True))
            results.extend((i, metric.score(batch)) for i, metric, tap in taps if tap is None)
        return results

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
                _check_on_host(images)
            raise
        if bad is not None:  # the range flag travels with the scores: one transfer
            packed = torch.cat([out.flatten(), bad.to(torch.float64).reshape(1)]).cpu()
            host, failed = packed[:-1].view_as(out), bool(packed[-1])
        else:
            host, failed = out.cpu(), False
        if failed:
            _check_on_host(images)
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


def _network_key(metric: QualityMetric) -> str | None:
    """Identity of an aligned metric's reference network (its config, weights hash included), or ``None``."""
    from qualoader.metrics.aligned._reference_metric import ReferenceMetric

    if not isinstance(metric, ReferenceMetric):
        return None
    return json.dumps(metric.network.get_config(), sort_keys=True)


def _check_domain(metric: QualityMetric, images: Tensor) -> None:
    """Run a reference metric's input-domain guard on the images as given (before any resize).

    ``ReferenceMetric.forward`` runs this guard; the engine calls ``score`` on resized batches, so
    it runs the guard itself, on the original sizes (a shape test, no host sync, once warned).
    """
    from qualoader.metrics.aligned._reference_metric import ReferenceMetric

    if isinstance(metric, ReferenceMetric):
        metric.check_domain(images)


def _rows(rows: Tensor | None, part: Tensor) -> Tensor:
    return torch.arange(part.shape[0], device=part.device) if rows is None else rows


def _put(target: Tensor, rows: Tensor | slice | None, values: Tensor) -> None:
    """``target[rows] = values`` (``None``: every row)."""
    if rows is None:
        target.copy_(values)
    elif isinstance(rows, slice):
        target[rows] = values
    else:
        target.index_copy_(0, rows, values.to(target.dtype))


def _check_on_host(images: Tensor | Sequence[Tensor]) -> None:
    """Run the full value check of the float images on the host, raising the ``ValueError`` that names the problem (error path only)."""
    from qualoader._validation import check_images

    if isinstance(images, Tensor):
        stacks = [images.unsqueeze(1) if images.ndim == 3 else images]
    else:
        stacks = [image.reshape(1, -1, *image.shape[-2:]) for image in images if isinstance(image, Tensor)]
    for position, stack in enumerate(stacks):
        if stack.is_floating_point() and stack.ndim == 4:
            check_images(stack.detach().cpu(), "images" if isinstance(images, Tensor) else f"images[{position}]", check_values=True)


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

"""Scoring stage for webdataset pipelines: :func:`annotate_quality`.

The stage takes the raw samples of ``wds.WebDataset(...)`` (image members still encoded),
decodes the image member, scores the images in batches with one or more
:class:`~qualoader.metrics.QualityMetric` and adds ``sample["quality"] = {metric: score}`` (and
``sample["difficulty"] = {metric: expected error}`` for calibrated metrics). Every original
member is left untouched, so it can sit before ``.decode(...)`` or before a tag writer.

Variable image sizes: samples are buffered ``batch_size`` at a time; inside a buffer, images
of the same shape (and dtype) are stacked and scored together, so mixed sizes cost one metric
call per distinct shape in the buffer, never a resize. Output order is input order.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import torch
from torch import Tensor

from qualoader._validation import check_positive_int, check_type
from qualoader.metrics.base import QualityMetric
from qualoader.webdataset._common import (
    DEFAULT_IMAGE_KEYS,
    Handler,
    check_image_keys,
    decode_image,
    find_image,
    resolve_handler,
)
from qualoader.webdataset.tag_format import TAG_MEMBER, MissingTagError, encode_tag, parse_tag  # encode_tag re-exported

__all__ = ["AnnotateQuality", "ParseQualityTags", "annotate_quality", "encode_tag", "parse_quality_tags"]


def _resolve_metrics(metric: Any, device: torch.device) -> tuple[QualityMetric, ...]:
    from qualoader.metrics import create_metric

    items = [metric] if isinstance(metric, (str, QualityMetric)) else metric
    if isinstance(items, (str, bytes)) or not isinstance(items, Sequence) or not items:
        raise TypeError(f"metric should be a QualityMetric, a registered name or a non-empty sequence of them, but got metric of type {type(metric).__name__}")
    metrics = []
    for item in items:
        if isinstance(item, str):
            item = create_metric(item, device=device)
        if not isinstance(item, QualityMetric):
            raise TypeError(f"metric should be a QualityMetric or a registered name, but got metric of type {type(item).__name__}")
        if item.requires_reference:
            raise ValueError(f"metric should be a no-reference metric, but got metric={item.name!r}, which needs a reference image")
        metrics.append(item.to(device).eval())
    names = [m.name for m in metrics]
    if len(set(names)) != len(names):
        raise ValueError(f"metric should hold distinct metric names, but got names {names}")
    return tuple(metrics)


class AnnotateQuality:
    """Picklable pipeline stage that scores images in batches; build it with :func:`annotate_quality`.

    Calling it on an iterator of raw webdataset samples returns a generator of the same samples
    with ``quality`` (and ``difficulty``) entries added. Samples whose image is missing or does
    not decode, and batches whose scoring fails, go to ``handler``: ``True`` skips them,
    ``False`` stops the stream, raising propagates.
    """

    def __init__(
        self,
        metrics: tuple[QualityMetric, ...],
        batch_size: int,
        device: torch.device,
        image_keys: tuple[str, ...],
        handler: Handler,
        quality_key: str,
        difficulty_key: str,
    ) -> None:
        self.metrics = metrics
        self.batch_size = batch_size
        self.device = device
        self.image_keys = image_keys
        self.handler = handler
        self.quality_key = quality_key
        self.difficulty_key = difficulty_key

    @property
    def fingerprints(self) -> dict[str, str]:
        """``{metric name: metric.fingerprint()}`` of the metrics this stage applies."""
        return {metric.name: metric.fingerprint() for metric in self.metrics}

    def __call__(self, source: Iterable[dict[str, Any]]) -> Iterator[dict[str, Any]]:
        buffer: list[tuple[dict[str, Any], Tensor]] = []
        for sample in source:
            try:
                image = decode_image(find_image(sample, self.image_keys))
            except Exception as exn:  # noqa: BLE001 - every error goes to the explicit handler
                if self.handler(exn):
                    continue
                break
            buffer.append((sample, image))
            if len(buffer) >= self.batch_size:
                scored, go_on = self._score(buffer)
                yield from scored
                if not go_on:
                    return
                buffer = []
        if buffer:
            yield from self._score(buffer)[0]

    @torch.inference_mode()
    def _score(self, buffer: list[tuple[dict[str, Any], Tensor]]) -> tuple[list[dict[str, Any]], bool]:
        """Score one buffer; returns the annotated samples (input order) and whether to go on."""
        groups: dict[tuple[Any, ...], list[int]] = {}
        for index, (_, image) in enumerate(buffer):
            groups.setdefault((*image.shape, image.dtype), []).append(index)
        annotated: dict[int, dict[str, Any]] = {}
        go_on = True
        for indices in groups.values():
            try:
                images = torch.stack([buffer[i][1] for i in indices]).to(self.device)
                quality: dict[str, list[float]] = {}
                difficulty: dict[str, list[float]] = {}
                for metric in self.metrics:
                    scores = metric(images)
                    quality[metric.name] = scores.float().cpu().tolist()
                    if metric.calibration is not None:
                        difficulty[metric.name] = metric.difficulty(scores).float().cpu().tolist()
            except Exception as exn:  # noqa: BLE001 - every error goes to the explicit handler
                if self.handler(exn):
                    continue
                go_on = False
                break
            for row, index in enumerate(indices):
                sample = buffer[index][0]
                sample[self.quality_key] = {name: values[row] for name, values in quality.items()}
                if difficulty:
                    sample[self.difficulty_key] = {name: values[row] for name, values in difficulty.items()}
                annotated[index] = sample
        return [annotated[index] for index in sorted(annotated)], go_on

    def __repr__(self) -> str:
        names = [metric.name for metric in self.metrics]
        return f"AnnotateQuality(metrics={names}, batch_size={self.batch_size}, device={str(self.device)!r})"


def annotate_quality(
    metric: QualityMetric | str | Sequence[QualityMetric | str],
    batch_size: int = 32,
    device: str | torch.device = "cpu",
    *,
    image_keys: Sequence[str] = DEFAULT_IMAGE_KEYS,
    handler: str | Handler = "raise",
    quality_key: str = "quality",
    difficulty_key: str = "difficulty",
) -> AnnotateQuality:
    """A picklable webdataset stage adding quality scores to raw samples.

    Args:
        metric: a no-reference :class:`~qualoader.metrics.QualityMetric`, a registered name, or a
            sequence of them (distinct names). Metrics are moved to ``device`` and set to eval.
        batch_size: images per metric call (before grouping by shape).
        device: where the images are scored.
        image_keys: member extensions tried in order to find the image (``"png"``, ``"jpg"``, ...).
        handler: ``"raise"``, ``"skip"`` (a :class:`SkipAndCount`) or a webdataset-style handler
            ``(exception) -> bool`` for missing/undecodable images and scoring errors.
        quality_key: sample entry receiving ``{metric name: score}``.
        difficulty_key: sample entry receiving ``{metric name: difficulty}`` for the metrics with
            a calibration (absent when none is calibrated).

    Returns:
        The stage: ``stage(samples) -> samples``; use ``dataset.compose(stage)`` or put it in a
        ``wds.DataPipeline``.

    Example:
        >>> import webdataset as wds
        >>> dataset = wds.WebDataset(urls, shardshuffle=False).compose(annotate_quality("sharpness"))  # doctest: +SKIP
        >>> next(iter(dataset))["quality"]  # doctest: +SKIP
        {'sharpness': 0.0123}
    """
    check_positive_int(batch_size, "batch_size")
    check_type(device, "device", (str, torch.device), "a device name or torch.device")
    device = torch.device(device)
    for name, value in (("quality_key", quality_key), ("difficulty_key", difficulty_key)):
        if not isinstance(value, str) or not value:
            raise TypeError(f"{name} should be a non-empty str, but got {name}={value!r}")
    if quality_key == difficulty_key:
        raise ValueError(f"difficulty_key should differ from quality_key, but got difficulty_key={difficulty_key!r}")
    return AnnotateQuality(
        _resolve_metrics(metric, device),
        batch_size,
        device,
        check_image_keys(image_keys),
        resolve_handler(handler),
        quality_key,
        difficulty_key,
    )


class ParseQualityTags:
    """Picklable stage parsing each sample's ``quality.json`` into ``quality``/``difficulty``/``fingerprints`` entries."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler

    def __call__(self, source: Iterable[dict[str, Any]]) -> Iterator[dict[str, Any]]:
        for sample in source:
            try:
                member = sample.get(TAG_MEMBER)
                if member is None:
                    raise MissingTagError(f"sample {sample.get('__key__')!r} should carry a {TAG_MEMBER} member, but got members {sorted(k for k in sample if not k.startswith('_'))}")
                sample.update(parse_tag(member))
            except Exception as exn:  # noqa: BLE001 - every error goes to the explicit handler
                if self.handler(exn):
                    continue
                break
            yield sample

    def __repr__(self) -> str:
        return "ParseQualityTags()"


def parse_quality_tags(handler: str | Handler = "raise") -> ParseQualityTags:
    """A stage turning the ``quality.json`` member of tagged samples into dict entries.

    Adds ``sample["quality"]``, ``sample["difficulty"]`` (``{metric: value}``) and
    ``sample["fingerprints"]``; the ``quality.json`` bytes stay in the sample. The filters of
    :mod:`qualoader.webdataset.filters` parse tags on their own, so this stage is optional.

    Args:
        handler: ``"raise"``, ``"skip"`` or a handler for untagged or malformed samples.
    """
    return ParseQualityTags(resolve_handler(handler))

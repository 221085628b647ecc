"""Scoring stage for webdataset pipelines (:func:`annotate_quality`) and tag parsing (:func:`parse_quality_tags`).

The scoring stage takes the samples of ``wds.WebDataset(...)``, finds the image member (raw
bytes, or already decoded by ``.decode(...)`` to a tensor, a numpy array or a PIL image), scores
the images in batches with one or more :class:`~qualoader.metrics.QualityMetric` and adds
``sample["__quality__"] = {metric: score}`` (and ``sample["__difficulty__"] = {metric: expected
error}`` for calibrated metrics). Double-underscore keys are the ones webdataset's decoder
passes through, so the stage can sit before or after ``.decode(...)``; every original member is
left untouched, so it can also sit before a tag writer.

Variable image sizes: samples are buffered ``batch_size`` at a time and each buffer goes to one
:class:`~qualoader.engine.ScoringEngine` pass for all metrics (it groups shapes, shares the
classical intermediates and copies scores to the host once). Output order is input order.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import KW_ONLY, dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor
from webdataset.filters import FilterFunction, pipelinefilter

from qualoader._validation import check_positive_int, check_type
from qualoader.decoding import check_scorable, decode_image, pil_to_tensor
from qualoader.engine import ScoringEngine
from qualoader.metrics.base import QualityMetric
from qualoader.webdataset._common import (
    DEFAULT_IMAGE_KEYS,
    Handler,
    check_image_keys,
    find_image,
    resolve_handler,
)
from qualoader.webdataset._stage import DIFFICULTY_KEY, FINGERPRINTS_KEY, QUALITY_KEY, read_values
from qualoader.webdataset.tag_format import TAG_MEMBER, MissingTagError, encode_tag, parse_tag  # encode_tag re-exported

__all__ = ["AnnotateQuality", "ParseQualityTags", "annotate_quality", "encode_tag", "image_tensor", "parse_quality_tags"]

#: Type of the stage :func:`parse_quality_tags` returns (webdataset's picklable curried function).
ParseQualityTags = FilterFunction


def image_tensor(value: Any) -> Tensor:
    """An image member, encoded or decoded by webdataset, as a tensor :math:`(C, H, W)`, ``C`` in {1, 3}.

    Accepted: encoded bytes (decoded by :func:`qualoader.decoding.decode_image`); a PIL image; a
    tensor :math:`(C, H, W)` or :math:`(H, W)` (webdataset's ``torch*`` decoders); a numpy array
    :math:`(H, W, C)` or :math:`(H, W)` (its ``rgb8``/``l``/... decoders). Alpha is dropped, as
    the decoder does; ``uint8`` and float (in [0, 1]) values are kept as they are.

    Raises:
        TypeError: another type, or a dtype other than uint8 or floating.
        ValueError: a shape with no 1, 3 or 4 channels where they should be.

    Example:
        >>> image_tensor(np.zeros((4, 5, 3), dtype=np.uint8)).shape
        torch.Size([3, 4, 5])
    """
    if isinstance(value, (bytes, bytearray, memoryview)):
        return decode_image(value)
    from PIL import Image

    if isinstance(value, Image.Image):
        return pil_to_tensor(value)
    if isinstance(value, np.ndarray):
        layout = "(H, W, C) or (H, W)"
        tensor = torch.tensor(value)  # a copy: decoders may hand out read-only arrays torch would warn about
        tensor = tensor[None] if tensor.ndim == 2 else tensor.permute(2, 0, 1) if tensor.ndim == 3 else tensor
    elif isinstance(value, Tensor):
        layout = "(C, H, W) or (H, W)"
        tensor = value[None] if value.ndim == 2 else value
    else:
        raise TypeError(
            f"image should be encoded bytes, a tensor, a numpy array or a PIL image, but got image of type {type(value).__name__}"
        )
    if tensor.ndim != 3 or tensor.shape[0] not in (1, 3, 4):
        raise ValueError(f"image should have shape {layout} with 1, 3 or 4 channels, but got image.shape={tuple(value.shape)}")
    if tensor.dtype != torch.uint8 and not tensor.is_floating_point():
        raise TypeError(f"image should have dtype uint8 or floating, but got image.dtype={tensor.dtype}")
    return tensor[:3] if tensor.shape[0] == 4 else tensor


def _resolve_metrics(metric: Any, device: torch.device) -> tuple[QualityMetric, ...]:
    from qualoader.metrics import create_metric

    items = [metric] if isinstance(metric, (str, QualityMetric)) else metric
    if isinstance(items, (str, bytes)) or not isinstance(items, Sequence) or not items:
        raise TypeError(
            "metric should be a QualityMetric, a registered name or a non-empty sequence of them, but got metric of type "
            f"{type(metric).__name__}"
        )
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
    # Scores are stored by metric name, so two metrics of one name would overwrite each other's tags.
    if len(set(names)) != len(names):
        raise ValueError(f"metric should hold distinct metric names, but got names {names}")
    return tuple(metrics)


@dataclass(eq=False)
class AnnotateQuality:
    """Picklable webdataset stage adding quality scores to samples; :func:`annotate_quality` is the same class.

    Calling it on an iterator of webdataset samples returns a generator of the same samples with
    ``__quality__`` (and ``__difficulty__``) entries added. Samples whose image is missing or does
    not decode, and batches whose scoring fails, go to ``handler``: ``True`` skips them,
    ``False`` stops the stream, raising propagates.

    Args:
        metric: a no-reference :class:`~qualoader.metrics.QualityMetric`, a registered name, or a
            sequence of them (distinct names). Metrics are moved to ``device`` and set to eval;
            the resolved tuple is the ``metrics`` attribute.
        batch_size: images per metric call (before grouping by shape).
        device: where the images are scored.
        image_keys: member extensions tried in order to find the image (``"png"``, ``"jpg"``, ...);
            the member may hold bytes or an image decoded by ``.decode(...)`` (see :func:`image_tensor`).
        handler: ``"raise"``, ``"skip"`` (a :class:`~qualoader.webdataset.SkipAndCount`) or a
            webdataset-style handler ``(exception) -> bool`` for missing/undecodable images and
            scoring errors.
        quality_key: sample entry receiving ``{metric name: score}`` (default ``"__quality__"``,
            where the filters look; keep a ``"__"`` prefix so ``.decode`` passes it through).
        difficulty_key: sample entry receiving ``{metric name: difficulty}`` for the metrics with
            a calibration (absent when none is calibrated).

    Example:
        >>> import webdataset as wds
        >>> from qualoader.datasets import load_fashion_mnist
        >>> from qualoader.webdataset import write_image_shards
        >>> urls = [str(path) for path in write_image_shards(load_fashion_mnist("test")[0][:8], "data-%06d.tar")]
        >>> dataset = wds.WebDataset(urls, shardshuffle=False).compose(annotate_quality("sharpness"))
        >>> next(iter(dataset))["__quality__"]
        {'sharpness': ...}
    """

    metric: QualityMetric | str | Sequence[QualityMetric | str]
    batch_size: int = 32
    device: str | torch.device = "cpu"
    _: KW_ONLY
    image_keys: Sequence[str] = DEFAULT_IMAGE_KEYS
    handler: str | Handler = "raise"
    quality_key: str = QUALITY_KEY
    difficulty_key: str = DIFFICULTY_KEY
    metrics: tuple[QualityMetric, ...] = dataclasses.field(init=False, repr=False)
    engine: ScoringEngine = dataclasses.field(init=False, repr=False)

    def __post_init__(self) -> None:
        check_positive_int(self.batch_size, "batch_size")
        check_type(self.device, "device", (str, torch.device), "a device name or torch.device")
        self.device = torch.device(self.device)
        for name, value in (("quality_key", self.quality_key), ("difficulty_key", self.difficulty_key)):
            if not isinstance(value, str) or not value:
                raise TypeError(f"{name} should be a non-empty str, but got {name}={value!r}")
        if self.quality_key == self.difficulty_key:
            raise ValueError(f"difficulty_key should differ from quality_key, but got difficulty_key={self.difficulty_key!r}")
        self.image_keys = check_image_keys(self.image_keys)
        self.handler = resolve_handler(self.handler)
        self.metrics = _resolve_metrics(self.metric, self.device)
        self.engine = ScoringEngine(list(self.metrics), self.device)  # one pass per buffer for every metric

    @property
    def fingerprints(self) -> dict[str, str]:
        """``{metric name: metric.fingerprint()}`` of the metrics this stage applies."""
        return {metric.name: metric.fingerprint() for metric in self.metrics}

    def _read_image(self, sample: dict[str, Any]) -> Tensor:
        # Checked per image (size, finite values), so a bad image is its own sample's error, not its batch's.
        image = image_tensor(find_image(sample, self.image_keys))
        return check_scorable(image, "image", min_size=max(metric.min_size for metric in self.metrics))

    def __call__(self, source: Iterable[dict[str, Any]]) -> Iterator[dict[str, Any]]:
        buffer: list[tuple[dict[str, Any], Tensor]] = []
        # Each image is decoded as its sample is pulled, so a decode error concerns the last sample pulled.
        for item in read_values(source, self._read_image, self.handler):  # type: ignore[arg-type]
            buffer.append(item)
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
        """Score one buffer with the engine (every metric, one pass); returns the annotated samples (input order) and whether to go on.

        When the whole buffer fails, each group of one image shape is retried on its own, so an
        error only drops the samples of the shape that caused it (as the handler decides).
        """
        with contextlib.suppress(Exception):  # retried per shape below, where errors go to the handler
            return self._annotate(buffer, range(len(buffer))), True
        groups: dict[tuple[Any, ...], list[int]] = {}
        for index, (_, image) in enumerate(buffer):
            groups.setdefault((*image.shape, image.dtype), []).append(index)
        annotated: dict[int, dict[str, Any]] = {}
        for indices in groups.values():
            try:
                samples = self._annotate(buffer, indices)
            except Exception as exn:  # noqa: BLE001 - every error goes to the explicit handler
                if self.handler(exn):  # type: ignore[operator]
                    continue
                return [annotated[index] for index in sorted(annotated)], False
            annotated.update(zip(indices, samples, strict=True))
        return [annotated[index] for index in sorted(annotated)], True

    def _annotate(self, buffer: list[tuple[dict[str, Any], Tensor]], indices: Sequence[int]) -> list[dict[str, Any]]:
        """Score the images ``buffer[i]`` for ``i`` in ``indices`` and add their entries to the samples."""
        result = self.engine.score([buffer[i][1] for i in indices])
        quality = {name: values.float().tolist() for name, values in result.scores.items()}  # float32 values, as tags always held
        difficulty = {name: values.float().tolist() for name, values in result.difficulty.items()}
        samples = []
        for row, index in enumerate(indices):
            sample = buffer[index][0]
            sample[self.quality_key] = {name: values[row] for name, values in quality.items()}
            if difficulty:
                sample[self.difficulty_key] = {name: values[row] for name, values in difficulty.items()}
            samples.append(sample)
        return samples


annotate_quality = AnnotateQuality


def _read_tag(sample: dict[str, Any]) -> dict[str, Any]:
    member = sample.get(TAG_MEMBER)
    if member is None:
        raise MissingTagError(
            f"sample {sample.get('__key__')!r} should carry a {TAG_MEMBER} member, but got members "
            f"{sorted(k for k in sample if not k.startswith('_'))}"
        )
    return parse_tag(member)


def _parse_quality_tags(source: Iterable[dict[str, Any]], handler: Handler) -> Iterator[dict[str, Any]]:
    for sample, tag in read_values(source, _read_tag, handler):
        sample[QUALITY_KEY], sample[DIFFICULTY_KEY], sample[FINGERPRINTS_KEY] = tag["quality"], tag["difficulty"], tag["fingerprints"]
        yield sample


_parse_stage = pipelinefilter(_parse_quality_tags)


def parse_quality_tags(handler: str | Handler = "raise") -> FilterFunction:
    """A stage turning the ``quality.json`` member of tagged samples into ``__quality__``-style entries.

    Adds ``sample["__quality__"]``, ``sample["__difficulty__"]`` (``{metric: value}``) and
    ``sample["__fingerprints__"]``; the ``quality.json`` member stays in the sample. It works before
    or after ``.decode(...)`` (which turns the member into a dict). The filters parse tags on their
    own, so this stage is optional.

    Args:
        handler: ``"raise"``, ``"skip"`` or a handler for untagged or malformed samples.

    Example:
        >>> tagged = {"__key__": "a", "quality.json": b'{"quality": {"sharpness": 0.5}}'}
        >>> next(parse_quality_tags()([tagged]))["__quality__"]
        {'sharpness': 0.5}
    """
    return _parse_stage(resolve_handler(handler))

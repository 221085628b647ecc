"""Quality-tagged WebDataset streams (built on the ``webdataset`` package).

* Scoring: :func:`annotate_quality` (a picklable pipeline stage, batched scoring).
* Tagging: :func:`tag_shards` writes shards with a ``quality.json`` member per sample and a
  ``<shard>.quality.json`` sidecar index, atomically and losing no member; :func:`score_shard`
  builds the sidecar alone. The tag format (:func:`encode_tag`, :func:`parse_tag`,
  :func:`merge_tag`, :class:`SidecarIndex`) lives in :mod:`qualoader.webdataset.tag_format`.
* Reading tagged shards: :func:`filter_quality`, :func:`reweight`, :func:`stratify`,
  :func:`curriculum` (with :class:`TrainingProgress`), :func:`parse_quality_tags`.
* Writing image tensors as shards: :func:`write_image_shards`.
* Resuming: :func:`track_position`, :class:`StreamPosition`, :func:`resumable_pipeline`.
* Strict reading (truncated shards raise): :func:`read_shards`.
* Errors: :class:`SkipAndCount` or ``"raise"``/``"skip"`` as ``handler``; corrupt inputs raise
  :class:`CorruptShardError`, :class:`MissingImageError`, :class:`ImageDecodeError`, :class:`MissingTagError`.

Tags travel in the sample under ``__quality__`` / ``__difficulty__`` (:data:`QUALITY_KEY`,
:data:`DIFFICULTY_KEY`), keys webdataset's decoder passes through, so the stages work before or
after ``.decode(...)``, on raw or decoded images.

Example:
    >>> import webdataset as wds
    >>> from qualoader.datasets import load_fashion_mnist
    >>> from qualoader.webdataset import annotate_quality, filter_quality, write_image_shards
    >>> urls = [str(path) for path in write_image_shards(load_fashion_mnist("test")[0][:64], "data-%06d.tar", maxcount=32)]
    >>> dataset = (
    ...     wds.WebDataset(urls, shardshuffle=False, nodesplitter=wds.split_by_node)
    ...     .compose(annotate_quality("sharpness", batch_size=64), filter_quality("sharpness", low=0.002))
    ...     .decode("torchrgb")
    ... )
    >>> image, quality = next(iter(dataset.to_tuple("png", "__quality__")))
    >>> image.shape, quality["sharpness"] >= 0.002
    (torch.Size([3, 28, 28]), True)
"""

from qualoader.webdataset._common import (
    DEFAULT_IMAGE_KEYS,
    ImageDecodeError,
    MissingImageError,
    SkipAndCount,
    SkippedSampleWarning,
    decode_image,
)
from qualoader.webdataset._stage import DIFFICULTY_KEY, FINGERPRINTS_KEY, QUALITY_KEY
from qualoader.webdataset.filtering import FilterQuality, filter_quality
from qualoader.webdataset.pacing import Curriculum, StreamLosses, TrainingProgress, curriculum
from qualoader.webdataset.quantile_sketch import QuantileSketch
from qualoader.webdataset.reading import CorruptShardError, DuplicateKeyError, ReadShards, UnsupportedMemberError, read_shards
from qualoader.webdataset.resume import (
    StreamPosition,
    TrackPosition,
    resumable_pipeline,
    track_position,
)
from qualoader.webdataset.reweighting import QualityWeight, Reweight, reweight
from qualoader.webdataset.stages import (
    AnnotateQuality,
    ParseQualityTags,
    annotate_quality,
    image_tensor,
    parse_quality_tags,
)
from qualoader.webdataset.stratification import Stratify, stratify
from qualoader.webdataset.tag_format import (
    TAG_MEMBER,
    MissingTagError,
    SidecarIndex,
    SkippedSample,
    encode_tag,
    merge_tag,
    parse_tag,
    read_sidecar,
    sidecar_path,
)
from qualoader.webdataset.tagging import TagReport, expand_shards, score_shard, tag_shards
from qualoader.webdataset.writing import encode_image, write_image_shards

__all__ = [
    "DEFAULT_IMAGE_KEYS",
    "DIFFICULTY_KEY",
    "FINGERPRINTS_KEY",
    "QUALITY_KEY",
    "TAG_MEMBER",
    "AnnotateQuality",
    "CorruptShardError",
    "Curriculum",
    "DuplicateKeyError",
    "FilterQuality",
    "ImageDecodeError",
    "MissingImageError",
    "MissingTagError",
    "ParseQualityTags",
    "QualityWeight",
    "QuantileSketch",
    "ReadShards",
    "Reweight",
    "SidecarIndex",
    "SkipAndCount",
    "SkippedSampleWarning",
    "SkippedSample",
    "Stratify",
    "StreamLosses",
    "StreamPosition",
    "TagReport",
    "TrackPosition",
    "TrainingProgress",
    "UnsupportedMemberError",
    "annotate_quality",
    "curriculum",
    "decode_image",
    "encode_image",
    "encode_tag",
    "expand_shards",
    "filter_quality",
    "image_tensor",
    "merge_tag",
    "parse_quality_tags",
    "parse_tag",
    "read_shards",
    "read_sidecar",
    "resumable_pipeline",
    "reweight",
    "score_shard",
    "sidecar_path",
    "stratify",
    "tag_shards",
    "track_position",
    "write_image_shards",
]

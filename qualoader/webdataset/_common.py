"""Shared pieces of the WebDataset stages: errors, handlers, image lookup, seeding (decoding is :mod:`qualoader.decoding`,
the tag format :mod:`qualoader.webdataset.tag_format`, tag reading :mod:`qualoader.webdataset._stage`).

Nothing here is public on its own; :mod:`qualoader.webdataset` re-exports what users need.
"""

from __future__ import annotations

import warnings
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import numpy as np

from qualoader._validation import check_choice, check_positive_int, check_type
from qualoader.decoding import ImageDecodeError, decode_image  # the one decoder, re-exported here
from qualoader.webdataset.tag_format import TAG_FORMAT, TAG_MEMBER, MissingTagError, parse_tag  # the tag format's one home

__all__ = [
    "DEFAULT_IMAGE_KEYS",
    "ERROR_POLICIES",
    "TAG_FORMAT",
    "TAG_MEMBER",
    "Handler",
    "ImageDecodeError",
    "MissingImageError",
    "MissingTagError",
    "SkipAndCount",
    "SkippedSampleWarning",
    "UniformStream",
    "check_image_keys",
    "decode_image",
    "find_image",
    "make_rng",
    "parse_tag",
    "reraise",
    "resolve_handler",
    "worker_identity",
]

#: Member extensions tried, in order, to find a sample's image.
DEFAULT_IMAGE_KEYS: tuple[str, ...] = ("png", "jpg", "jpeg", "webp", "bmp", "tif", "tiff", "ppm", "pgm")
#: Accepted string spellings of an error handler.
ERROR_POLICIES = frozenset({"raise", "skip"})


class MissingImageError(KeyError):
    """A sample has none of the image members looked for."""


def reraise(exn: Exception) -> bool:
    """The ``"raise"`` policy: re-raise every error (webdataset's ``reraise_exception``)."""
    raise exn


class SkippedSampleWarning(RuntimeWarning):
    """A sample or shard was skipped after an error (first of each error type, see :class:`SkipAndCount`)."""


class SkipAndCount:
    """Error handler that skips the failing sample (or shard) and counts the error.

    Follows webdataset's handler protocol: called with the exception, returns ``True`` to go on.
    The counts are per process: with DataLoader workers each worker has its own copy.

    Args:
        max_errors: re-raise the error that would exceed this many (``None``: never).
        warn: emit a :class:`SkippedSampleWarning` (a ``RuntimeWarning``) for the first error of each type.

    Example:
        >>> handler = SkipAndCount(warn=False)
        >>> handler(ValueError("bad"))
        True
        >>> handler.counts
        Counter({'ValueError': 1})
    """

    def __init__(self, max_errors: int | None = None, *, warn: bool = True) -> None:
        if max_errors is not None:
            check_positive_int(max_errors, "max_errors", allow_zero=True)
        check_type(warn, "warn", bool, "a bool")
        self.max_errors = max_errors
        self.warn = warn
        self.counts: Counter[str] = Counter()
        self.messages: list[str] = []

    @property
    def total(self) -> int:
        """Number of errors skipped so far."""
        return sum(self.counts.values())

    def __call__(self, exn: Exception) -> bool:
        if self.max_errors is not None and self.total >= self.max_errors:
            raise exn
        kind = type(exn).__name__
        if self.warn and kind not in self.counts:
            warnings.warn(f"skipping after {kind}: {exn}", SkippedSampleWarning, stacklevel=2)
        self.counts[kind] += 1
        # Capped: a stream of corrupt shards must not grow memory without bound; counts keep the totals.
        if len(self.messages) < 100:
            self.messages.append(f"{kind}: {exn}")
        return True

    def __repr__(self) -> str:
        return f"SkipAndCount(max_errors={self.max_errors}, counts={dict(self.counts)})"


Handler = Callable[[Exception], bool]


def resolve_handler(handler: str | Handler, name: str = "handler") -> Handler:
    """Turn ``"raise"`` / ``"skip"`` into a handler; callables are returned unchanged."""
    if isinstance(handler, str):
        check_choice(handler, name, ERROR_POLICIES)
        return reraise if handler == "raise" else SkipAndCount()
    if not callable(handler):
        raise TypeError(
            f"{name} should be 'raise', 'skip' or a callable (exception) -> bool, but got {name} of type {type(handler).__name__}"
        )
    return handler


def check_image_keys(image_keys: Any) -> tuple[str, ...]:
    """Validate a non-empty sequence of member extensions."""
    if isinstance(image_keys, str) or not isinstance(image_keys, Iterable):
        raise TypeError(f"image_keys should be a sequence of member extensions, but got image_keys of type {type(image_keys).__name__}")
    keys = tuple(image_keys)
    if not keys or not all(isinstance(key, str) and key for key in keys):
        raise ValueError(f"image_keys should be non-empty strings, but got image_keys={keys!r}")
    return keys


def find_image(sample: Mapping[str, Any], image_keys: tuple[str, ...]) -> Any:
    """The first member of ``sample`` whose extension is in ``image_keys``: bytes, or an image ``.decode`` made.

    Raises:
        MissingImageError: none of them is there.
    """
    for key in image_keys:
        value = sample.get(key)
        # `is not None`, not truthiness: an empty member is returned and fails to decode under the handler,
        # instead of silently falling back to another image member.
        if value is not None:
            return value
    members = sorted(k for k in sample if not k.startswith("_"))
    raise MissingImageError(
        f"sample {sample.get('__key__')!r} of {sample.get('__url__')!r} should have one of the image members {list(image_keys)}, but got "
        f"members {members}"
    )


def worker_identity() -> tuple[int, int]:
    """``(rank, worker)`` of this process, as webdataset's ``split_by_node``/``split_by_worker`` see it."""
    from webdataset.utils import pytorch_worker_info

    rank, _, worker, _ = pytorch_worker_info()
    return rank, worker


def make_rng(seed: int, epoch: int) -> np.random.Generator:
    """A numpy generator seeded from ``(seed, epoch, rank, worker)`` only."""
    rank, worker = worker_identity()
    # SeedSequence of the tuple, not seed + epoch: (seed 1, epoch 0) and (seed 0, epoch 1) would collide.
    # Rank and worker are in it because each process reads different shards and must not repeat the others' draws.
    return np.random.default_rng(np.random.SeedSequence([seed, epoch, rank, worker]))


class UniformStream:
    """Uniform draws in [0, 1) from a generator, fetched in blocks (cheap per-sample draws)."""

    def __init__(self, rng: np.random.Generator, block: int = 1024) -> None:
        self.rng = rng
        self.block = block
        # One rng.random() call per sample costs more than the draw; a block amortises the call overhead.
        self._values = rng.random(block)
        self._next = 0

    def __call__(self) -> float:
        if self._next == self.block:
            self._values = self.rng.random(self.block)
            self._next = 0
        value = float(self._values[self._next])
        self._next += 1
        return value

"""Write image tensors as webdataset shards (PNG members), with webdataset's ``ShardWriter``."""

from __future__ import annotations

import io
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import webdataset as wds
from torch import Tensor

from qualoader._validation import (
    check_choice,
    check_images,
    check_positive_int,
    check_type,
)

__all__ = ["encode_image", "write_image_shards"]

_FORMATS = frozenset({"png", "jpg", "webp"})
_PIL_FORMAT = {"png": "PNG", "jpg": "JPEG", "webp": "WEBP"}


def encode_image(image: Tensor, image_format: str = "png") -> bytes:
    """Encode one image :math:`(C, H, W)` (``uint8``, or float in [0, 1]), ``C`` in {1, 3}.

    Returns:
        The encoded file bytes (PNG is lossless: decoding gives the ``uint8`` pixels back).
    """
    from PIL import Image

    check_choice(image_format, "image_format", _FORMATS)
    check_type(image, "image", Tensor, "a torch.Tensor of shape (C, H, W)")
    pixels = check_images(image.unsqueeze(0) if image.ndim == 3 else image, "image")[0]
    array = (pixels.detach().cpu().double() * 255.0).round().clamp(0, 255).to(torch.uint8).permute(1, 2, 0).numpy()
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(array[:, :, 0] if array.shape[2] == 1 else array)).save(buffer, format=_PIL_FORMAT[image_format])
    return buffer.getvalue()


def write_image_shards(
    images: Tensor | Sequence[Tensor],
    pattern: str | os.PathLike[str],
    *,
    labels: Tensor | Sequence[int] | None = None,
    keys: Sequence[str] | None = None,
    maxcount: int = 1000,
    image_format: str = "png",
) -> list[Path]:
    """Write images (and labels) as webdataset shards: members ``<key>.png`` (and ``<key>.cls``).

    Args:
        images: :math:`(N, C, H, W)` tensor, or a sequence of :math:`(C, H, W)` tensors of any
            sizes; ``uint8`` or float in [0, 1], ``C`` in {1, 3}.
        pattern: ``ShardWriter`` pattern with one ``%d`` field, e.g. ``"out/data-%06d.tar"``.
        labels: one int per image (written as ASCII ``cls`` members), or ``None``.
        keys: one sample key per image (default ``"%08d" % i``); no dots.
        maxcount: samples per shard.
        image_format: ``"png"`` (lossless), ``"jpg"`` or ``"webp"``.

    Returns:
        The written shard paths, in order.

    Example:
        >>> images, labels = load_fashion_mnist("test")  # doctest: +SKIP
        >>> write_image_shards(images[:100], "/tmp/fm-%06d.tar", labels=labels[:100], maxcount=50)  # doctest: +SKIP
        [PosixPath('/tmp/fm-000000.tar'), PosixPath('/tmp/fm-000001.tar')]
    """
    pattern = os.fspath(pattern)
    check_type(pattern, "pattern", str, "a ShardWriter pattern (str)")
    try:
        pattern % 0
    except TypeError as error:
        raise ValueError(f"pattern should contain one %d field, but got pattern={pattern!r}") from error
    check_positive_int(maxcount, "maxcount")
    check_choice(image_format, "image_format", _FORMATS)
    count = len(images)
    if labels is not None and len(labels) != count:
        raise ValueError(f"labels should have one entry per image ({count}), but got len(labels)={len(labels)}")
    if keys is not None and (len(keys) != count or len(set(keys)) != count or any("." in k or not k for k in keys)):
        raise ValueError(f"keys should be {count} distinct non-empty keys without '.', but got keys={list(keys)[:5]!r}...")
    written: list[str] = []
    with wds.ShardWriter(pattern, maxcount=maxcount, verbose=0, post=written.append) as writer:
        for i in range(count):
            sample = {"__key__": keys[i] if keys is not None else f"{i:08d}", image_format: encode_image(images[i], image_format)}
            if labels is not None:
                sample["cls"] = str(int(labels[i])).encode("ascii")
            writer.write(sample)
    return [Path(name) for name in written]

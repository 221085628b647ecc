"""Sample-structure handling: find the image in a sample, convert it, add fields, group by size.

A *sample* is what a map-style dataset returns: a tuple or list with the image at an integer
position, a dict (any :class:`~collections.abc.Mapping`) with the image under a string key, or a
bare image. An *image* is a :class:`PIL.Image.Image`, a tensor :math:`(C, H, W)` or :math:`(H, W)`
(``uint8`` in [0, 255] or floating in [0, 1]), or a numpy array :math:`(H, W)` / :math:`(H, W, C)`
(the numpy/PIL layout).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from qualoader.decoding import check_scorable, pil_to_tensor

__all__ = [
    "OUTPUTS",
    "SampleLoadError",
    "add_fields",
    "batch_image",
    "folder_files",
    "group_by_size",
    "image_to_tensor",
    "is_image",
    "load_image_tensor",
    "load_sample",
    "pop_index",
    "sample_file",
    "sample_image",
]

#: Accepted values of ``output``: match the input structure, or force dict / tuple samples.
OUTPUTS = frozenset({"auto", "dict", "tuple"})
_EXPECTED_SAMPLE = (
    "a tuple/list (image at position image_key), a dict (image under image_key) or an image (PIL.Image, tensor (C, H, W) or (H, W), "
    "numpy (H, W[, C]))"
)
_EXPECTED_IMAGE = "a PIL.Image, a tensor (C, H, W) or (H, W) with C in {1, 3}, or a numpy array (H, W) or (H, W, C)"


_IMAGE_TYPES = (Tensor, np.ndarray, Image.Image)


def _is_pil(value: Any) -> bool:
    return isinstance(value, Image.Image)


class SampleLoadError(OSError):
    """A sample of a dataset could not be read (an unreadable or truncated image file).

    The message names the sample index and, for folder datasets, the file. ``index`` and ``path``
    are also attributes (``None`` after the error crossed a DataLoader worker boundary, which
    rebuilds exceptions from their message alone).
    """

    def __init__(self, message: str, index: int | None = None, path: str | None = None) -> None:
        super().__init__(message)
        self.index = index
        self.path = path

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""

    def __reduce__(self) -> tuple[Any, ...]:
        # Default exception pickling calls type(*args) with the message only; this keeps index and path through
        # process pools (DataLoader's own wrapper still rebuilds from the text, hence the docstring's caveat).
        return (type(self), (str(self), self.index, self.path))


def _unreadable_types() -> tuple[type[BaseException], ...]:
    """Exceptions that mean "this file does not decode": PIL raises OSError (truncated, unidentified),
    SyntaxError (broken PNG chunks) or EOFError; the project's decoder raises ImageDecodeError."""
    types: list[type[BaseException]] = [OSError, SyntaxError, EOFError]
    try:
        from qualoader.decoding import ImageDecodeError
    except ImportError:  # pragma: no cover - older trees without the shared decoder
        pass
    else:
        types.append(ImageDecodeError)
    return tuple(types)


_UNREADABLE = _unreadable_types()


def folder_files(dataset: Any) -> tuple[Path, list[str]] | None:
    """The image files of a folder dataset, in dataset order, or ``None`` for other datasets.

    A folder dataset is one with torchvision's ``DatasetFolder`` attributes (``root`` and a
    ``samples`` list of ``(path, target)``), such as ``ImageFolder``, optionally inside (nested)
    ``Subset`` s, whose indices select the files.

    Returns:
        ``(root, paths)``: the folder and one absolute path per sample.
    """
    from torch.utils.data import Subset

    chain: list[Sequence[int]] = []
    inner = dataset
    while isinstance(inner, Subset):
        chain.append(inner.indices)
        inner = inner.dataset
    samples = getattr(inner, "samples", None)
    root = getattr(inner, "root", None)
    if not isinstance(samples, list) or not isinstance(root, (str, os.PathLike)):
        return None
    if not all(isinstance(item, tuple) and item and isinstance(item[0], (str, os.PathLike)) for item in samples):
        return None
    paths = [os.path.abspath(os.fspath(item[0])) for item in samples]
    for indices in reversed(chain):  # the outermost Subset indexes the result of the inner ones
        paths = [paths[int(i)] for i in indices]
    return Path(os.path.abspath(os.fspath(root))), paths


def sample_file(dataset: Any, index: int) -> str | None:
    """The file behind ``dataset[index]`` for folder datasets (see :func:`folder_files`), else ``None``."""
    files = folder_files(dataset)
    if files is None or not 0 <= index < len(files[1]):
        return None
    return files[1][index]


def load_sample(dataset: Any, index: int, files: list[str] | None = None) -> Any:
    """``dataset[index]``, with load errors that name the sample and its file.

    An unreadable image (``OSError``, ``SyntaxError`` or ``EOFError`` from PIL, or
    :class:`~qualoader.decoding.ImageDecodeError`) becomes a :class:`SampleLoadError` naming the index
    and file, so that callers can skip exactly those samples. Any other error keeps its type and
    gains a note naming the sample (a bug in a transform must not be mistaken for a bad file).

    Args:
        dataset: a map-style dataset.
        index: the sample index.
        files: ``folder_files(dataset)[1]`` when the caller already has it (avoids a lookup per sample).

    Raises:
        SampleLoadError: the image of the sample could not be read.
    """
    try:
        return dataset[index]
    except (IndexError, SampleLoadError):
        raise  # IndexError ends the old iteration protocol; a SampleLoadError already names its sample
    except _UNREADABLE as error:
        path = files[index] if files is not None and 0 <= index < len(files) else sample_file(dataset, index)
        where = f"dataset[{index}]" + (f" (file {path!r})" if path is not None else "")
        raise SampleLoadError(f"{where} should be a readable sample, but got {type(error).__name__}: {error}", index, path) from error
    except Exception as error:
        path = files[index] if files is not None and 0 <= index < len(files) else sample_file(dataset, index)
        error.add_note(f"while loading dataset[{index}]" + (f" from file {path!r}" if path is not None else ""))
        raise


def load_image_tensor(dataset: Any, index: int, image_key: int | str | None, min_size: int = 1) -> Tensor:
    """The image of ``dataset[index]`` as a tensor :math:`(C, H, W)` (:func:`load_sample`, :func:`sample_image`, :func:`image_to_tensor`).

    A PIL image that a dataset returns still undecoded (``Image.open`` without ``load``) fails only
    when its pixels are read here: that failure is a :class:`SampleLoadError` naming the file too.

    Raises:
        SampleLoadError: the image could not be read.
        TypeError, ValueError: an unsupported sample structure or image shape.
    """
    image = sample_image(load_sample(dataset, index), image_key, f"dataset[{index}]")
    try:
        # checked per image (qualoader.decoding): too small, too large or NaN is this sample's error, not its batch's
        return check_scorable(image_to_tensor(image, f"dataset[{index}] image"), f"dataset[{index}] image", min_size=min_size)
    except _UNREADABLE as error:
        path = sample_file(dataset, index) or getattr(image, "filename", None) or None
        where = f"dataset[{index}]" + (f" (file {path!r})" if path else "")
        raise SampleLoadError(f"{where} should be a readable sample, but got {type(error).__name__}: {error}", index, path) from error


def is_image(value: Any) -> bool:
    """Whether ``value`` looks like one image (tensor, numpy array or PIL image), not a sample."""
    return isinstance(value, _IMAGE_TYPES)


def sample_image(sample: Any, image_key: int | str | None, name: str = "sample") -> Any:
    """Return the image of ``sample`` (not converted).

    Raises:
        TypeError: ``sample`` is none of the supported structures, or ``image_key`` has the wrong
            type for it (an ``int`` for tuples and lists, a ``str`` for dicts).
        ValueError: ``image_key`` is out of range or missing from the dict.
    """
    if isinstance(sample, (tuple, list)):
        key = 0 if image_key is None else image_key
        if isinstance(key, bool) or not isinstance(key, int):
            raise TypeError(f"image_key should be an int for tuple/list samples, but got image_key={key!r}")
        if not -len(sample) <= key < len(sample):
            raise ValueError(f"image_key should index a sample of length {len(sample)}, but got image_key={key}")
        return sample[key]
    if isinstance(sample, _IMAGE_TYPES):
        return sample
    if isinstance(sample, Mapping):
        key = "image" if image_key is None else image_key
        if not isinstance(key, str):
            raise TypeError(f"image_key should be a str for dict samples, but got image_key={key!r}")
        if key not in sample:
            raise ValueError(f"image_key should be a key of the dict samples {sorted(map(str, sample))}, but got image_key={key!r}")
        return sample[key]
    raise TypeError(f"{name} should be {_EXPECTED_SAMPLE}, but got {name} of type {type(sample).__name__}")


def image_to_tensor(image: Any, name: str = "image") -> Tensor:
    """Convert one image to a tensor :math:`(C, H, W)`, ``uint8`` or floating, ``C`` in {1, 3}.

    PIL images follow :func:`qualoader.decoding.pil_to_tensor` (grey stays one channel, 16-bit
    grey becomes ``float32`` in [0, 1], everything else RGB ``uint8``). Numpy arrays are read as :math:`(H, W)` or
    :math:`(H, W, C)`; tensors as :math:`(C, H, W)` or :math:`(H, W)`. Values are not checked here
    (the metric validates them per batch).

    Raises:
        TypeError: not an image.
        ValueError: wrong rank or channel count.
    """
    if _is_pil(image):
        return pil_to_tensor(image)  # the one decoder's rules (16-bit, palette, EXIF, ...)
    if isinstance(image, np.ndarray):
        if image.ndim == 3 and image.shape[2] in (1, 3):
            # ascontiguousarray: torch.from_numpy refuses negative strides (a flipped array, e.g. BGR -> RGB by [..., ::-1]).
            return torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)
        if image.ndim == 2:
            return torch.from_numpy(np.ascontiguousarray(image)).unsqueeze(0)
        raise ValueError(
            f"{name} should be a numpy array of shape (H, W) or (H, W, C) with C in {{1, 3}}, but got {name}.shape={image.shape}"
        )
    if isinstance(image, Tensor):
        if image.ndim == 2:
            return image.unsqueeze(0)
        if image.ndim == 3 and image.shape[0] in (1, 3):
            return image
        raise ValueError(
            f"{name} should be a tensor of shape (C, H, W) with C in {{1, 3}} or (H, W), but got {name}.shape={tuple(image.shape)}"
        )
    raise TypeError(f"{name} should be {_EXPECTED_IMAGE}, but got {name} of type {type(image).__name__}")


def batch_image(images: Any, name: str = "images") -> Tensor | list[Tensor]:
    """Images of a collated batch: a tensor :math:`(B, C, H, W)` (``(B, H, W)`` gains ``C = 1``) or a list of :math:`(C, H, W)`.

    A list or tuple (from a custom ``collate_fn`` that keeps variable sizes) is converted element
    by element with :func:`image_to_tensor`.

    Raises:
        TypeError: neither a tensor nor a sequence of images.
        ValueError: wrong rank or channel count.
    """
    if isinstance(images, Tensor):
        # In a collated batch three dims can only be (B, H, W): default_collate stacked (H, W) grey images.
        if images.ndim == 3:
            return images.unsqueeze(1)
        if images.ndim == 4 and images.shape[1] in (1, 3):
            return images
        raise ValueError(
            f"{name} should be a tensor of shape (B, C, H, W) with C in {{1, 3}} or (B, H, W), but got {name}.shape={tuple(images.shape)}"
        )
    if isinstance(images, Sequence) and not isinstance(images, (str, bytes)):
        return [image_to_tensor(image, f"{name}[{i}]") for i, image in enumerate(images)]
    raise TypeError(f"{name} should be a tensor (B, C, H, W) or a list of images, but got {name} of type {type(images).__name__}")


def group_by_size(images: Tensor | list[Tensor]) -> list[tuple[Tensor, Tensor]]:
    """Split images into stacks of equal shape.

    Args:
        images: a tensor :math:`(B, C, H, W)` or a list of :math:`B` tensors :math:`(C, H, W)`.

    Returns:
        ``(rows, stack)`` pairs: ``rows`` are int64 positions :math:`(b,)` into the batch and
        ``stack`` the matching images :math:`(b, C, H, W)`; a tensor input gives one pair.
    """
    if isinstance(images, Tensor):
        return [(torch.arange(images.shape[0]), images)]
    groups: dict[tuple[tuple[int, ...], torch.dtype], list[int]] = {}
    for row, image in enumerate(images):
        # dtype is part of the key: stacking uint8 with float images would promote them to float with their
        # 0..255 values, which the metric would read as far outside [0, 1].
        groups.setdefault((tuple(image.shape), image.dtype), []).append(row)
    return [(torch.tensor(rows, dtype=torch.int64), torch.stack([images[r] for r in rows])) for rows in groups.values()]


def add_fields(sample: Any, fields: Sequence[tuple[str, Any]], output: str, image_key: int | str | None = None) -> Any:
    """Return ``sample`` with ``fields`` appended (tuple output) or added as keys (dict output).

    ``output="auto"`` keeps the structure: dicts gain keys, tuples and lists gain trailing
    elements (as a tuple), a bare image becomes ``(image, *values)``. ``"dict"`` turns a bare
    image into ``{"image": image, ...}`` and a tuple ``(image, *rest)`` into
    ``{"image": image, "target": rest}`` (the image taken at ``image_key``, default 0; ``rest`` the
    other elements in order, ``rest[0]`` when it has one element, omitted when empty). ``"tuple"``
    is only valid for tuples, lists and bare images.

    Raises:
        ValueError: a key already exists in a dict sample, or the structure cannot take ``output``
            (``output`` itself is validated by the caller, see :data:`OUTPUTS`).
    """
    if output != "dict" and isinstance(sample, (tuple, list)):
        return (*sample, *(value for _, value in fields))
    if isinstance(sample, Mapping):
        if output == "tuple":
            raise ValueError("output should be 'auto' or 'dict' for dict samples (their fields are named), but got output='tuple'")
        for key, _ in fields:
            if key in sample:
                raise ValueError(
                    f"sample should not already have the key {key!r} that the wrapper adds, but got sample keys {sorted(map(str, sample))}"
                )
        return {**sample, **dict(fields)}
    values = tuple(value for _, value in fields)
    if output == "dict":
        if is_image(sample):
            return {"image": sample, **dict(fields)}
        position = 0 if image_key is None else int(image_key)
        # Normalised so a negative image_key (e.g. -1) excludes the right element from `rest` below.
        position = position % len(sample)
        rest = tuple(value for k, value in enumerate(sample) if k != position)
        out: dict[str, Any] = {"image": sample[position]}
        if rest:
            out["target"] = rest[0] if len(rest) == 1 else rest
        return {**out, **dict(fields)}
    return (sample, *values)


def pop_index(batch: Any) -> tuple[Any, Tensor]:
    """Split a collated batch into (batch without its index, index tensor :math:`(B,)`).

    The index is the ``"index"`` key of a dict batch, or the last element of a sequence batch.

    Raises:
        TypeError: the batch carries no index (it does not come from an index-carrying dataset).
    """
    if isinstance(batch, Mapping) and "index" in batch:
        rest = {key: value for key, value in batch.items() if key != "index"}
        index = batch["index"]
    elif isinstance(batch, (tuple, list)) and len(batch) >= 2:
        rest, index = tuple(batch[:-1]), batch[-1]
    else:
        raise TypeError(
            f"batch should carry the sample indices (from a QualityDataset without metric), but got batch of type {type(batch).__name__}"
        )
    if not isinstance(index, Tensor) or index.ndim != 1 or index.dtype != torch.int64:
        raise TypeError(
            "batch should carry the sample indices as an int64 tensor (B,) (collate the QualityDataset's 'index' field with "
            "default_collate), "
            f"but got index of type {type(index).__name__}"
        )
    return rest, index

"""The one image decoder: encoded bytes, files and PIL images to tensors, the same way on every path.

Every path that turns an image file into pixels (the webdataset stages and ``tag``/``score``, the
report, ``precompute``'s ImageFolder loader, PIL images inside datasets) calls this module, so a
given file always gives the same tensor and therefore the same scores.

Rules (PIL-based; torchvision's decode functions are deprecated):

================================ ===========================================================
source                           result
================================ ===========================================================
EXIF orientation tag             applied first (the pixels are turned upright)
``1``, ``L``, ``LA``, ``La``     one channel, ``uint8`` (alpha dropped)
``I;16*``, ``I`` (16-bit grey)   one channel, ``float32`` in [0, 1] (value / 65535, clipped)
``F`` (32-bit float)             one channel, ``float32``, clipped to [0, 1]
``P`` / ``PA`` (palette)         three channels, ``uint8`` (palette expanded, alpha dropped)
``RGBA``, ``RGBX``, ``RGBa``     three channels, ``uint8`` (alpha dropped)
``CMYK``, ``YCbCr``, ``LAB``,    three channels, ``uint8`` (PIL's conversion to RGB)
``HSV``
``RGB``                          three channels, ``uint8``
================================ ===========================================================

Alpha is dropped, never composited: the colour stored under a transparent pixel is kept, so a
decoder never invents a background colour. 16-bit grey keeps its precision as ``float32``
(dividing by 65535 maps it to the same [0, 1] scale as ``uint8 / 255``).

Every decoded image is also checked on its own (:func:`check_scorable`), so that one bad file is
an error naming that file, which ``--on-error skip`` can skip, instead of a failed batch: at most
``MAX_PIXELS`` pixels (read from the header, before any pixel is allocated), at least ``min_size``
pixels per side when the caller gives its metrics' smallest input, and finite values (a float
TIFF may hold NaN or Inf).

Importing this module does not import torch: :func:`decode_array` gives the same pixels as a numpy
array, for a reader that runs before torch is loaded (the command line's head start).
"""

from __future__ import annotations

import io
import os
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

if TYPE_CHECKING:  # pragma: no cover
    from torch import Tensor

__all__ = ["MAX_PIXELS", "ImageDecodeError", "check_scorable", "decode_array", "decode_image", "load_image", "pil_to_tensor"]

_GREY_8BIT = frozenset({"1", "L", "LA", "La"})
_GREY_16BIT = frozenset({"I", "I;16", "I;16B", "I;16L", "I;16N"})
_16BIT_MAX = 65535.0
#: Most pixels (H * W) an image may have: 2**27 is 11585 x 11585, far above any training image, and
#: keeps one decode (and the float copies scoring makes) to a few GB.
MAX_PIXELS = 2**27


class ImageDecodeError(ValueError):
    """Bytes or a file that do not decode to an image."""


def pil_to_tensor(image: Image.Image) -> Tensor:
    """Convert a PIL image to a tensor :math:`(C, H, W)` by the rules of this module.

    The EXIF orientation is applied when the image still carries one (images opened by
    :func:`decode_image` / :func:`load_image` already had it applied).

    Args:
        image: any PIL image.

    Returns:
        ``uint8`` :math:`(C, H, W)` for 8-bit sources, ``float32`` in [0, 1] for 16-bit and float
        grey; ``C`` is 1 for grey sources and 3 for everything else.

    Raises:
        TypeError: ``image`` is not a PIL image.

    Example:
        >>> pil_to_tensor(Image.new("RGBA", (4, 2))).shape
        torch.Size([3, 2, 4])
    """
    if not isinstance(image, Image.Image):
        raise TypeError(f"image should be a PIL.Image.Image, but got image of type {type(image).__name__}")
    import torch

    return torch.from_numpy(_pil_to_array(image))


def _pil_to_array(image: Image.Image) -> np.ndarray:
    """:func:`pil_to_tensor`'s pixels as a writable, C-contiguous numpy array :math:`(C, H, W)`."""
    image = _upright(image)
    mode = image.mode
    if mode in _GREY_16BIT:
        # Mode "I" is signed 32-bit, so values outside 0..65535 are possible; the clip keeps [0, 1].
        array = (np.asarray(image, dtype=np.float32) / _16BIT_MAX).clip(0.0, 1.0)
        return np.ascontiguousarray(array)[None]
    if mode == "F":
        return np.ascontiguousarray(np.asarray(image, dtype=np.float32).clip(0.0, 1.0))[None]
    if mode in _GREY_8BIT:
        if mode != "L":
            image = image.convert("L")
        # np.array (a copy), not asarray: PIL exposes read-only memory, which torch.from_numpy warns about.
        return np.array(image, dtype=np.uint8)[None]
    if mode in ("P", "PA"):
        # RGBA first: PIL warns (and ignores the transparency) on a direct P -> RGB conversion.
        image = image.convert("RGBA")
    if image.mode != "RGB":
        image = image.convert("RGB")
    # numpy's single-threaded transpose: torch's parallel copy is slower for one small image
    return np.ascontiguousarray(np.asarray(image, dtype=np.uint8).transpose(2, 0, 1))


def _upright(image: Image.Image) -> Image.Image:
    """Apply the EXIF orientation tag (a no-op copy-free return when there is none)."""
    try:
        # 0x0112 is the EXIF Orientation tag; 1 (or no tag) means already upright, so no transposed copy.
        orientation = image.getexif().get(0x0112, 1)
    except Exception:  # noqa: BLE001 - a broken EXIF block must not make a readable image unreadable
        return image
    if orientation in (None, 1):
        return image
    return ImageOps.exif_transpose(image)


def _check_extent(height: int, width: int, label: str, min_size: int) -> None:
    if height * width > MAX_PIXELS:
        raise ImageDecodeError(f"{label} should be at most {MAX_PIXELS} pixels, but got {height}x{width} (H x W)")
    if min(height, width) < min_size:
        raise ImageDecodeError(
            f"{label} should be at least {min_size}x{min_size} pixels (the metrics' smallest input), "
            f"but got {height}x{width} (H x W)"
        )


def check_scorable(image: Tensor, label: str = "image", *, min_size: int = 1) -> Tensor:
    """Check one decoded image on its own, before it joins a batch; returns it unchanged.

    Args:
        image: :math:`(C, H, W)` tensor.
        label: what to name in the error (a file path, or shard and key).
        min_size: smallest ``H`` and ``W`` accepted (the largest ``min_size`` of the metrics that will score it).

    Raises:
        ImageDecodeError: (a ``ValueError``) more than :data:`MAX_PIXELS` pixels, a side under
            ``min_size``, or NaN/Inf values.

    Example:
        >>> import torch
        >>> check_scorable(torch.zeros(1, 2, 30000), "long.png", min_size=3)  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        qualoader.decoding.ImageDecodeError: long.png should be at least 3x3 pixels ..., but got 2x30000 (H x W)
    """
    _check_extent(int(image.shape[-2]), int(image.shape[-1]), label, min_size)
    if image.is_floating_point():
        bad = int((~image.isfinite()).sum())
        if bad:
            raise ImageDecodeError(f"{label} should have finite pixel values, but got {bad} NaN/Inf values")
    return image


def _open_array(source: Any, label: str) -> np.ndarray:
    try:
        with Image.open(source) as image:
            # The header gives the size: a huge image is refused before its pixels are allocated.
            _check_extent(image.height, image.width, label, 1)
            image.load()
            return _pil_to_array(image)
    except ImageDecodeError:
        raise  # already names the image (a ValueError, which the next clause would wrap a second time)
    # Pillow reports damage with several types: some plugins raise SyntaxError on a broken header, and
    # DecompressionBombError guards against images far beyond its pixel limit.
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError) as error:
        # Pillow's own text for an unknown format names its in-memory buffer object, which tells a user nothing.
        reason = "bytes in no image format Pillow can identify" if isinstance(error, UnidentifiedImageError) else str(error)
        raise ImageDecodeError(f"{label} should decode to an image, but got {reason}") from error


def _open(source: Any, label: str, min_size: int = 1) -> Tensor:
    import torch

    return check_scorable(torch.from_numpy(_open_array(source, label)), label, min_size=min_size)


def _check_bytes(data: Any) -> None:
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError(f"data should be encoded image bytes, but got data of type {type(data).__name__}")


def decode_array(data: bytes | bytearray | memoryview) -> np.ndarray:
    """Decode encoded image bytes to a numpy array by this module's rules, without importing torch.

    ``torch.from_numpy(decode_array(data))`` equals ``decode_image(data)``, except for the checks
    that :func:`check_scorable` makes on the tensor (a side under ``min_size``, NaN/Inf values); the
    header's pixel count is checked here, before any pixel is allocated.

    Returns:
        A writable, C-contiguous :math:`(C, H, W)` array, ``C`` in {1, 3}: ``uint8``, or ``float32``
        in [0, 1] for 16-bit and float grey.

    Raises:
        TypeError: ``data`` is not bytes.
        ImageDecodeError: (a ``ValueError``) the bytes are not an image Pillow can read, or it has
            more than :data:`MAX_PIXELS` pixels.

    Example:
        >>> buffer = io.BytesIO()
        >>> Image.new("RGB", (3, 2)).save(buffer, format="PNG")
        >>> decode_array(buffer.getvalue()).shape
        (3, 2, 3)
    """
    _check_bytes(data)
    return _open_array(io.BytesIO(data), f"data ({len(data)} bytes)")


def decode_image(data: bytes | bytearray | memoryview, *, min_size: int = 1) -> Tensor:
    """Decode encoded image bytes (PNG, JPEG, WebP, TIFF, ... via Pillow) to a tensor.

    Args:
        data: the encoded file content.
        min_size: smallest height and width accepted (see :func:`check_scorable`).

    Returns:
        :math:`(C, H, W)`, ``C`` in {1, 3}: ``uint8``, or ``float32`` in [0, 1] for 16-bit and float
        grey (see the module docstring for every mode).

    Raises:
        TypeError: ``data`` is not bytes.
        ImageDecodeError: (a ``ValueError``) the bytes are not an image Pillow can read, or the
            image fails :func:`check_scorable`.

    Example:
        >>> buffer = io.BytesIO()
        >>> Image.new("L", (3, 2), 128).save(buffer, format="PNG")
        >>> decode_image(buffer.getvalue()).shape
        torch.Size([1, 2, 3])
    """
    _check_bytes(data)
    return _open(io.BytesIO(data), f"data ({len(data)} bytes)", min_size)


def load_image(path: str | os.PathLike[str], *, min_size: int = 1) -> Tensor:
    """Read and decode an image file; same result as ``decode_image(Path(path).read_bytes())``.

    Usable as the ``loader`` of :class:`torchvision.datasets.ImageFolder` (it returns a tensor,
    which torchvision's tensor transforms such as ``Resize`` accept).

    Raises:
        TypeError: ``path`` is not a path.
        FileNotFoundError: the file does not exist.
        ImageDecodeError: the file is not an image Pillow can read, or the image fails
            :func:`check_scorable` (``min_size`` as there); the message names the file.
    """
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path should be a str or os.PathLike, but got path of type {type(path).__name__}")
    # Checked first: FileNotFoundError is an OSError, which _open would report as an undecodable image.
    if not os.path.isfile(path):
        raise FileNotFoundError(f"path should be an existing image file, but got path={str(path)!r}")
    return _open(os.fspath(path), f"path={str(path)!r}", min_size)

"""Argument checks shared by every public entry point.

All messages follow one template, ``"<arg> should be <expectation>, but got <arg>=<value>"``:
``TypeError`` for a wrong type, ``ValueError`` for a bad value. Nothing is coerced silently;
the only conversion is the documented ``uint8 -> float in [0, 1]`` of :func:`check_images`.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

import torch
from torch import Tensor

__all__ = [
    "check_choice",
    "check_images",
    "check_positive_int",
    "check_probability",
    "check_same_shape",
    "check_severity",
    "check_type",
]

_FLOAT_DTYPES = frozenset({torch.float16, torch.bfloat16, torch.float32, torch.float64})
#: Sizes of a last dimension that suggest channels-last input (grey, RGB, RGBA).
_LAST_DIM_CHANNELS = frozenset({1, 3, 4})


def _short(value: Any) -> str:
    text = repr(value)
    # A long list or a tensor in an error message would bury the sentence; 80 characters identify it.
    return text if len(text) <= 80 else text[:77] + "..."


def check_type(value: Any, name: str, expected: type | tuple[type, ...], expectation: str) -> None:
    """Raise ``TypeError`` unless ``value`` is an instance of ``expected``."""
    if not isinstance(value, expected):
        raise TypeError(f"{name} should be {expectation}, but got {name} of type {type(value).__name__}")


def check_choice(value: Any, name: str, choices: Collection[Any]) -> None:
    """Raise ``ValueError`` unless ``value`` is one of ``choices`` (listed, sorted, in the message)."""
    if value not in choices:
        # Sorted so the message does not change with set iteration order (PYTHONHASHSEED); key=str because
        # choices may mix types that do not compare (None and str).
        options = ", ".join(repr(c) for c in sorted(choices, key=str))
        raise ValueError(f"{name} should be one of {{{options}}}, but got {name}={_short(value)}")


def check_positive_int(value: Any, name: str, *, allow_zero: bool = False) -> int:
    """Return ``value`` if it is an ``int`` (not ``bool``) > 0 (or >= 0 with ``allow_zero``)."""
    # bool is a subclass of int: True would otherwise pass as 1.
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} should be an int, but got {name} of type {type(value).__name__}")
    if value < 0 or (value == 0 and not allow_zero):
        bound = "a non-negative int" if allow_zero else "a positive int"
        raise ValueError(f"{name} should be {bound}, but got {name}={value}")
    return value


def check_probability(value: Any, name: str, *, open_low: bool = False) -> float:
    """Return ``value`` as float if it is a real number in [0, 1] ((0, 1] with ``open_low``)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} should be a float, but got {name} of type {type(value).__name__}")
    low_ok = value > 0 if open_low else value >= 0
    if not (low_ok and value <= 1):
        interval = "(0, 1]" if open_low else "[0, 1]"
        raise ValueError(f"{name} should be in {interval}, but got {name}={value}")
    return float(value)


def check_severity(severity: Any, name: str = "severity") -> int:
    """Return ``severity`` if it is an int in 1..5 (the ImageNet-C scale)."""
    if isinstance(severity, bool) or not isinstance(severity, int):
        raise TypeError(f"{name} should be an int in 1..5, but got {name} of type {type(severity).__name__}")
    if not 1 <= severity <= 5:
        raise ValueError(f"{name} should be an int in 1..5, but got {name}={severity}")
    return severity


def _layout_hint(shape: tuple[int, ...], name: str) -> str:
    """A fix for a tensor that looks channels-last: last dim 1, 3 or 4 and the would-be channel dim not."""
    if shape[-1] not in _LAST_DIM_CHANNELS or shape[-3] in _LAST_DIM_CHANNELS:
        return ""
    alpha = "[..., :3]" if shape[-1] == 4 else ""  # drop alpha: metrics take grey or RGB
    if len(shape) == 4:
        return f"; it looks channels-last (B, H, W, C): pass {name}{alpha}.permute(0, 3, 1, 2)"
    return f"; it looks like one channels-last image (H, W, C): pass {name}{alpha}.permute(2, 0, 1).unsqueeze(0)"


def check_min_size(images: Tensor, min_size: int, name: str = "images", *, owner: str = "") -> None:
    """``ValueError`` unless both spatial sides of ``images`` :math:`(..., H, W)` are at least ``min_size``.

    ``owner`` (e.g. ``"metric 'ssim'"``) says who needs that size, for the message.
    """
    if min(images.shape[-2:]) < min_size:
        needed = f" for {owner}" if owner else ""
        shape = tuple(images.shape)
        raise ValueError(
            f"{name} should be at least {min_size}x{min_size} pixels (H, W >= {min_size}){needed}, but got {name}.shape={shape}"
        )


def check_images(
    images: Any,
    name: str = "images",
    *,
    check_values: bool = True,
    min_size: int = 1,
    owner: str = "",
) -> Tensor:
    """Validate a batch of images and return it as a floating tensor in [0, 1].

    Args:
        images: tensor of shape :math:`(B, C, H, W)` with ``C`` in {1, 3}; floating in [0, 1]
            or ``uint8`` in [0, 255] (converted to ``float32`` by dividing by 255).
        name: argument name used in error messages.
        check_values: also check that float values are finite and inside [0, 1]. This costs one
            device-to-host synchronisation; pass ``False`` on hot paths whose input is trusted.
        min_size: smallest ``H`` and ``W`` accepted (a metric's window or kernel size).
        owner: who needs ``min_size``, for the message (e.g. ``"metric 'ssim'"``).

    Returns:
        The images, shape :math:`(B, C, H, W)`, floating dtype, on the input's device.

    Raises:
        TypeError: not a tensor, or a dtype other than uint8 / float16 / bfloat16 / float32 / float64.
        ValueError: wrong rank or channel count (a channels-last layout is named, with the
            ``permute`` that fixes it), empty batch or spatial size, ``H`` or ``W`` below
            ``min_size``, NaN/Inf, out of [0, 1].

    Example:
        >>> check_images(torch.zeros(2, 3, 8, 8, dtype=torch.uint8)).dtype
        torch.float32
        >>> check_images(torch.zeros(2, 8, 8, 3))
        Traceback (most recent call last):
        ...
        ValueError: images should have C in {1, 3} channels, but got images.shape=(2, 8, 8, 3); it looks channels-last (B, H, W, C):
        pass images.permute(0, 3, 1, 2)
    """
    if not isinstance(images, Tensor):
        raise TypeError(f"{name} should be a torch.Tensor of shape (B, C, H, W), but got {name} of type {type(images).__name__}")
    shape = tuple(images.shape)
    if images.ndim != 4:
        hint = _layout_hint(shape, name) if images.ndim == 3 else ""
        if images.ndim == 3 and not hint and shape[0] in (1, 3):
            hint = f"; for one image (C, H, W) pass {name}.unsqueeze(0)"
        raise ValueError(f"{name} should have shape (B, C, H, W), but got {name}.shape={shape}{hint}")
    batch, channels, height, width = shape
    if channels not in (1, 3):
        raise ValueError(f"{name} should have C in {{1, 3}} channels, but got {name}.shape={shape}{_layout_hint(shape, name)}")
    if batch == 0 or height == 0 or width == 0:
        raise ValueError(f"{name} should be non-empty in B, H and W, but got {name}.shape={shape}")
    check_min_size(images, min_size, name, owner=owner)
    if images.dtype == torch.uint8:
        # float() makes a new tensor, so the in-place division never touches the caller's uint8 images; no range
        # check is needed since every uint8 value maps into [0, 1].
        return images.float().div_(255.0)
    if images.dtype not in _FLOAT_DTYPES:
        raise TypeError(f"{name} should have dtype uint8 or floating, but got {name}.dtype={images.dtype}")
    if check_values:
        finite = torch.isfinite(images)
        low, high = images.aminmax()
        # One bool() on the combined condition: a single device-to-host sync on the good path; the detailed
        # message is only worked out once something failed.
        if not bool(finite.all() & (low >= 0) & (high <= 1)):
            if not bool(finite.all()):
                raise ValueError(f"{name} should be finite, but got {name} with {int((~finite).sum())} NaN/Inf values")
            # values below 0 are what transforms.Normalize leaves: say where it belongs
            hint = (
                "; this looks normalised (transforms.Normalize): score the images in [0, 1] and normalise after scoring, e.g. after "
                "QualityLoader or in the training step"
                if low.item() < 0
                else ""
            )
            raise ValueError(f"{name} should have float values in [0, 1], but got {name} in [{low.item():.4g}, {high.item():.4g}]{hint}")
    return images


def check_same_shape(reference: Any, images: Tensor, name: str = "reference", *, check_values: bool = True) -> Tensor:
    """Validate ``reference`` like :func:`check_images` and require the shape of ``images``."""
    reference = check_images(reference, name, check_values=check_values)
    if reference.shape != images.shape:
        raise ValueError(f"{name} should have the shape of images {tuple(images.shape)}, but got {name}.shape={tuple(reference.shape)}")
    # Refused rather than moved: an implicit copy would hide a host-device transfer on every batch.
    if reference.device != images.device:
        raise ValueError(f"{name} should be on the device of images ({images.device}), but got {name}.device={reference.device}")
    return reference.to(images.dtype)

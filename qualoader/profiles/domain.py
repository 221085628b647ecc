"""The input domain of a reference network, and a guard that warns when images fall far outside it.

An aligned score means something only for images like those the reference network was trained on:
a 28 px grey Fashion-MNIST CNN fed 224 px colour photos ranks content, not quality. An
:class:`InputDomain` records what the network saw (channels, native size, intensity statistics of
its training images); :func:`domain_mismatch` says, per image, which of them an input breaks, and
:func:`out_of_domain_fraction` how much of a dataset is out of domain (for ``describe()`` and reports).

An image is out of domain when either holds:

* ``channels``: a colour image (chroma above ``chroma_tolerance``) for a grey network, or a grey
  image for a colour one;
* ``size``: height or width more than ``max_size_ratio`` times larger or smaller than the native size;
  or, for a domain measured on images of several sizes that the profile's transform resized
  (``source_size_range``), more than ``max_size_ratio`` times outside the range of those sizes: a
  network calibrated on 64-160 px images that it resizes to 64 px does not flag a 160 px image.

A third flag, ``intensity``, marks images whose mean or standard deviation (after conversion to the
network's channels) lies outside the range of the training images', widened by ``intensity_margin``.
It is reported (:func:`domain_mismatch`, :func:`out_of_domain_fraction`) but does not make an image
out of domain by itself: strong degradations (contrast, brightness, fog) move these statistics too,
and scoring degradations is what aligned metrics are for.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import Tensor

from qualoader._validation import check_type
from qualoader.profiles._guard_messages import (
    ERROR_ADVICE,
    PROFILE_ERROR_ADVICE,
    PROFILE_WARNING_ADVICE,
    WARNING_ADVICE,
    caller_stacklevel,
)

__all__ = [
    "MISMATCHES",
    "DomainError",
    "DomainGuard",
    "DomainWarning",
    "InputDomain",
    "domain_mismatch",
    "out_of_domain",
    "out_of_domain_fraction",
]

#: The ways an image can leave a reference network's domain (keys of :func:`domain_mismatch`).
MISMATCHES: tuple[str, ...] = ("channels", "size", "intensity")
_LUMA = (0.299, 0.587, 0.114)
class DomainWarning(UserWarning):
    """Images fall far outside the input domain of an aligned metric's reference network."""


class DomainError(ValueError):
    """Raised instead of :class:`DomainWarning` by a metric built with ``strict=True``."""


def _pair(value: Any, name: str) -> tuple[int, int]:
    if isinstance(value, int) and not isinstance(value, bool):
        value = (value, value)
    if not (
        isinstance(value, (tuple, list))
        and len(value) == 2
        and all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in value)
    ):
        raise ValueError(f"{name} should be a positive int or a (height, width) pair of them, but got {name}={value!r}")
    return int(value[0]), int(value[1])


def _range(value: Any, name: str) -> tuple[float, float] | None:
    if value is None:
        return None
    if (
        not (
            isinstance(value, (tuple, list))
            and len(value) == 2
            and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)
        )
        or value[0] > value[1]
    ):
        raise ValueError(f"{name} should be None or a (low, high) pair of numbers with low <= high, but got {name}={value!r}")
    return float(value[0]), float(value[1])


@dataclass(frozen=True)
class InputDomain:
    """What a reference network was trained on.

    Attributes:
        channels: 1 (grey) or 3 (RGB).
        size: native ``(height, width)``.
        mean: per-channel pixel mean of the training images (in [0, 1]).
        std: per-channel pixel standard deviation of the training images.
        image_mean_range: ``(low, high)`` of the per-image mean intensity over the training images
            (e.g. its 0.1% and 99.9% quantiles); ``None`` when unknown (no intensity check).
        image_std_range: the same for the per-image standard deviation.
        max_size_ratio: how many times larger or smaller than ``size`` an image may be.
        intensity_margin: how far outside the two ranges an image may be.
        chroma_tolerance: mean ``max(RGB) - min(RGB)`` below which an RGB image counts as grey.
        source_size_range: ``((min_height, min_width), (max_height, max_width))`` of the images the
            domain was measured on *before* the profile's transform resized them to ``size``;
            ``None``: they were all ``size`` (the size check then compares with ``size``).
        profile: the name of the user's profile this domain belongs to, set when a metric is built
            from it (never saved); the guard's message then does not suggest building a profile.
    """

    channels: int
    size: tuple[int, int]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    image_mean_range: tuple[float, float] | None = None
    image_std_range: tuple[float, float] | None = None
    max_size_ratio: float = 2.0
    intensity_margin: float = 0.05
    chroma_tolerance: float = 0.02
    source_size_range: tuple[tuple[int, int], tuple[int, int]] | None = None
    profile: str | None = field(default=None, compare=False)  # who uses the domain, not what it is

    def __post_init__(self) -> None:
        if self.channels not in (1, 3):
            raise ValueError(f"channels should be 1 or 3, but got channels={self.channels!r}")
        object.__setattr__(self, "size", _pair(self.size, "size"))
        for name in ("mean", "std"):
            values = getattr(self, name)
            if not (
                isinstance(values, (tuple, list)) and len(values) in (1, self.channels) and all(isinstance(v, (int, float)) for v in values)
            ):
                raise ValueError(f"{name} should be 1 or {self.channels} numbers, but got {name}={values!r}")
            object.__setattr__(self, name, tuple(float(v) for v in values))
        object.__setattr__(self, "image_mean_range", _range(self.image_mean_range, "image_mean_range"))
        object.__setattr__(self, "image_std_range", _range(self.image_std_range, "image_std_range"))
        for name in ("max_size_ratio", "intensity_margin", "chroma_tolerance"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value < (1.0 if name == "max_size_ratio" else 0.0):
                bound = ">= 1" if name == "max_size_ratio" else ">= 0"
                raise ValueError(f"{name} should be a number {bound}, but got {name}={value!r}")
            object.__setattr__(self, name, float(value))
        sizes = self.source_size_range
        if sizes is not None:
            if not (isinstance(sizes, (tuple, list)) and len(sizes) == 2):
                raise ValueError(
                    f"source_size_range should be None or ((min_height, min_width), (max_height, max_width)), but got "
                    f"source_size_range={sizes!r}"
                )
            low, high = _pair(sizes[0], "source_size_range[0]"), _pair(sizes[1], "source_size_range[1]")
            if low[0] > high[0] or low[1] > high[1]:
                raise ValueError(f"source_size_range should have its minimum below its maximum, but got source_size_range={sizes!r}")
            object.__setattr__(self, "source_size_range", (low, high))
        if self.profile is not None and not isinstance(self.profile, str):
            raise TypeError(f"profile should be None or a profile name (str), but got profile={self.profile!r}")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> InputDomain:
        """Rebuild from :meth:`to_dict` output (unknown keys are an error)."""
        check_type(data, "domain", Mapping, "a dict from InputDomain.to_dict()")
        known = set(cls.__dataclass_fields__) - {"profile"}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"domain should have keys among {sorted(known)}, but got unexpected keys {unknown}")
        return cls(**dict(data))

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON (lists instead of tuples); ``profile`` is left out, and ``source_size_range`` when ``None``.

        Left out when ``None`` so that the domains of profiles written before it existed keep their JSON
        (and with it the profile's identity).
        """
        data = asdict(self)
        del data["profile"]
        if data["source_size_range"] is None:
            del data["source_size_range"]
        else:
            data["source_size_range"] = [list(pair) for pair in data["source_size_range"]]
        return {key: list(value) if isinstance(value, tuple) else value for key, value in data.items()}

    @classmethod
    def measure(
        cls,
        images: Tensor | Iterable[Any],
        channels: int,
        size: int | tuple[int, int],
        *,
        quantile: float = 0.001,
        source_sizes: Iterable[tuple[int, int]] | None = None,
    ) -> InputDomain:
        """Measure the domain of a network from (a sample of) its training images.

        Args:
            images: :math:`(N, C, H, W)` in [0, 1] (or uint8), or an iterable of such batches
                (or of tuples / dicts whose first / ``"image"`` entry is one).
            channels: the network's input channels.
            size: the network's native input size.
            quantile: the ranges span the ``quantile`` and ``1 - quantile`` quantiles.
            source_sizes: the ``(height, width)`` of each image before it was resized to ``size``
                (``None``: they were all ``size``); their range becomes ``source_size_range``.

        Returns:
            The domain, with pixel statistics and per-image ranges filled in.
        """
        means, stds, pixel_sum, pixel_square, count = [], [], 0.0, 0.0, 0
        for batch in _batches(images):
            converted = _to_channels(batch, channels).double()
            means.append(converted.mean(dim=(1, 2, 3)))
            stds.append(converted.std(dim=(1, 2, 3), correction=0))
            pixel_sum = pixel_sum + converted.sum(dim=(0, 2, 3))
            pixel_square = pixel_square + converted.square().sum(dim=(0, 2, 3))
            count += converted.shape[0] * converted.shape[2] * converted.shape[3]
        if not means:
            raise ValueError("images should hold at least one image, but got an empty source")
        mean = pixel_sum / count
        std = (pixel_square / count - mean.square()).clamp_min(0).sqrt()
        image_means, image_stds = torch.cat(means), torch.cat(stds)
        q = torch.tensor([quantile, 1.0 - quantile], dtype=torch.float64)
        sizes = [_pair(tuple(pair), "source_sizes[i]") for pair in source_sizes] if source_sizes is not None else []
        size_range = None
        if sizes and any(pair != _pair(size, "size") for pair in sizes):
            size_range = (
                (min(h for h, _ in sizes), min(w for _, w in sizes)),
                (max(h for h, _ in sizes), max(w for _, w in sizes)),
            )
        return cls(
            channels=channels,
            size=_pair(size, "size"),
            mean=tuple(round(float(v), 6) for v in mean),
            std=tuple(round(float(v), 6) for v in std),
            image_mean_range=tuple(round(float(v), 6) for v in image_means.quantile(q)),  # type: ignore[arg-type]
            image_std_range=tuple(round(float(v), 6) for v in image_stds.quantile(q)),  # type: ignore[arg-type]
            source_size_range=size_range,
        )

    def describe(self) -> str:
        """One line, e.g. ``1x28x28 grey, pixel mean 0.286 std 0.353``."""
        kind = "grey" if self.channels == 1 else "RGB"
        stats = ", ".join(f"{m:.3g}" for m in self.mean)
        return f"{self.channels}x{self.size[0]}x{self.size[1]} {kind}, pixel mean {stats}"


def _to_float(images: Tensor) -> Tensor:
    if images.dtype == torch.uint8:
        return images.float() / 255.0
    return images.float() if images.dtype in (torch.float16, torch.bfloat16) else images


def _to_channels(images: Tensor, channels: int) -> Tensor:
    """Images converted to the network's channels the way :func:`~qualoader.reference.preprocess_images` does."""
    images = _to_float(images)
    if images.shape[1] == channels:
        return images
    if channels == 1:
        return (images * images.new_tensor(_LUMA).view(1, 3, 1, 1)).sum(1, keepdim=True)
    return images.expand(-1, channels, -1, -1)


def _check_batch(images: Any) -> Tensor:
    check_type(images, "images", Tensor, "a torch.Tensor (B, C, H, W)")
    if images.ndim != 4 or images.shape[1] not in (1, 3):
        raise ValueError(f"images should have shape (B, C, H, W) with C in {{1, 3}}, but got images.shape={tuple(images.shape)}")
    return images


def _size_ratio(height: int, width: int, domain: InputDomain) -> float:
    """How many times larger or smaller than the native size an image is (the worse of its two sides).

    With a ``source_size_range``, how many times outside that range it is (1 inside it): the profile's
    transform resized those images to the native size, so sizes among them are what the network was
    calibrated on.
    """
    if domain.source_size_range is not None:
        (low_h, low_w), (high_h, high_w) = domain.source_size_range
        return max(1.0, low_h / height, height / high_h, low_w / width, width / high_w)
    return max(height / domain.size[0], domain.size[0] / height, width / domain.size[1], domain.size[1] / width)


def domain_mismatch(images: Tensor, domain: InputDomain) -> dict[str, Tensor]:
    """Which images break which part of ``domain``.

    Args:
        images: :math:`(B, C, H, W)` in [0, 1] (or uint8), ``C`` in {1, 3}.
        domain: the reference network's input domain.

    Returns:
        ``{mismatch: bool mask (B,)}`` for each name in :data:`MISMATCHES`, on the images' device.

    Example:
        >>> domain = InputDomain(channels=1, size=(28, 28), mean=(0.29,), std=(0.35,))
        >>> {k: v.tolist() for k, v in domain_mismatch(torch.rand(2, 3, 224, 224), domain).items()}
        {'channels': [True, True], 'size': [True, True], 'intensity': [False, False]}
    """
    images = _check_batch(images)
    check_type(domain, "domain", InputDomain, "an InputDomain")
    batch, channels, height, width = images.shape
    floats = _to_float(images)
    if channels == domain.channels:
        channel_mask = torch.zeros(batch, dtype=torch.bool, device=images.device)
    elif channels == 3:  # colour into a grey network: only a real colour image loses information
        chroma = (floats.amax(1) - floats.amin(1)).mean(dim=(1, 2))
        channel_mask = chroma > domain.chroma_tolerance
    else:
        channel_mask = torch.ones(batch, dtype=torch.bool, device=images.device)
    ratio = _size_ratio(height, width, domain)
    size_mask = torch.full((batch,), ratio > domain.max_size_ratio, dtype=torch.bool, device=images.device)
    intensity_mask = torch.zeros(batch, dtype=torch.bool, device=images.device)
    if domain.image_mean_range is not None or domain.image_std_range is not None:
        converted = _to_channels(floats, domain.channels)
        margin = domain.intensity_margin
        for bounds, values in (
            (domain.image_mean_range, lambda: converted.mean(dim=(1, 2, 3))),
            (domain.image_std_range, lambda: converted.std(dim=(1, 2, 3), correction=0)),
        ):
            if bounds is not None:
                statistic = values()
                intensity_mask |= (statistic < bounds[0] - margin) | (statistic > bounds[1] + margin)
    return {"channels": channel_mask, "size": size_mask, "intensity": intensity_mask}


def out_of_domain(images: Tensor, domain: InputDomain) -> Tensor:
    """Bool mask :math:`(B,)`: ``True`` for the images with a ``channels`` or ``size`` mismatch (see the module docstring)."""
    masks = domain_mismatch(images, domain)
    return masks["channels"] | masks["size"]


def _batches(source: Any) -> Iterable[Tensor]:
    """Image batches :math:`(B, C, H, W)` from a tensor, an iterable of batches or a map-style dataset of images."""
    if isinstance(source, Tensor):
        yield _check_batch(source if source.ndim == 4 else source.unsqueeze(0))
        return
    for item in source:
        if isinstance(item, Mapping):
            item = item.get("image", item.get("images"))
        elif isinstance(item, (tuple, list)):
            item = item[0]
        check_type(item, "source items", Tensor, "image tensors (C, H, W) or batches (B, C, H, W), or tuples/dicts holding one first")
        yield _check_batch(item if item.ndim == 4 else item.unsqueeze(0))


def out_of_domain_fraction(source: Tensor | Iterable[Any], domain: InputDomain, *, max_images: int | None = None) -> dict[str, float]:
    """How much of a batch or dataset lies outside ``domain``.

    Args:
        source: images :math:`(B, C, H, W)`; or an iterable (a dataset, a ``DataLoader``) yielding
            images :math:`(C, H, W)` or batches :math:`(B, C, H, W)`, bare or as the first entry of
            a tuple or the ``"image"`` entry of a dict. Images of different sizes are fine.
        domain: the reference network's domain (``metric.input_domain`` of an aligned metric).
        max_images: stop after this many images (``None``: all).

    Returns:
        ``{"out_of_domain": fraction, "channels": fraction, "size": fraction, "intensity": fraction,
        "n_images": count}``: ``out_of_domain`` counts channel or size mismatches, ``intensity`` the
        images with atypical intensity statistics (see the module docstring); fractions are in
        [0, 1] (0 for an empty source).

    Example:
        >>> domain = InputDomain(channels=1, size=(28, 28), mean=(0.29,), std=(0.35,))
        >>> out_of_domain_fraction([torch.rand(1, 28, 28), torch.rand(3, 224, 224)], domain)["out_of_domain"]
        0.5
    """
    check_type(domain, "domain", InputDomain, "an InputDomain (metric.input_domain)")
    if max_images is not None and (isinstance(max_images, bool) or not isinstance(max_images, int) or max_images <= 0):
        raise ValueError(f"max_images should be None or a positive int, but got max_images={max_images!r}")
    counts = dict.fromkeys((*MISMATCHES, "out_of_domain"), 0)
    seen = 0
    for batch in _batches(source):
        if max_images is not None:
            batch = batch[: max_images - seen]
        masks = domain_mismatch(batch, domain)
        for name, mask in masks.items():
            counts[name] += int(mask.sum())
        counts["out_of_domain"] += int((masks["channels"] | masks["size"]).sum())
        seen += batch.shape[0]
        if max_images is not None and seen >= max_images:
            break
    return {**{name: (value / seen if seen else 0.0) for name, value in counts.items()}, "n_images": seen}


def _explain(images: Tensor, domain: InputDomain, masks: Mapping[str, Tensor]) -> str:
    reasons = []
    channels, height, width = images.shape[1:]
    if bool(masks["channels"].any()):
        given = "colour (RGB)" if channels == 3 else "grey"
        reasons.append(f"{given} input for a {'grey' if domain.channels == 1 else 'colour'} network")
    if bool(masks["size"].any()):
        if domain.source_size_range is not None:
            (low_h, low_w), (high_h, high_w) = domain.source_size_range
            against = f"the {low_h}x{low_w} to {high_h}x{high_w} of the profile's calibration images"
        else:
            against = f"the native {domain.size[0]}x{domain.size[1]}"
        reasons.append(f"size {height}x{width} against {against} (more than {domain.max_size_ratio:g}x apart)")
    return "; ".join(reasons)


class DomainGuard:
    """Checks batches against a domain, warning once (or raising with ``strict=True``).

    Picklable (DataLoader workers each warn at most once). Input with the domain's channel count
    and a size within ``max_size_ratio`` passes on its shape alone, and a guard that has warned
    stops checking unless it is strict, so the guard costs nothing on in-domain data.

    Args:
        domain: the reference network's input domain.
        strict: raise :class:`DomainError` instead of warning, on every out-of-domain batch.
        owner: what to name in the message, e.g. ``"metric 'bn-shift' (reference 'fashion-mnist-cnn')"``.
    """

    def __init__(self, domain: InputDomain, *, strict: bool = False, owner: str = "this metric") -> None:
        check_type(domain, "domain", InputDomain, "an InputDomain")
        check_type(strict, "strict", bool, "a bool")
        self.domain = domain
        self.strict = strict
        self.owner = owner
        self.warned = False

    def check(self, images: Tensor) -> None:
        """Warn (once) or raise when images :math:`(B, C, H, W)` leave the domain.

        Raises:
            DomainError: with ``strict=True``, for any out-of-domain image.
        """
        if self.warned and not self.strict:
            return
        _, channels, height, width = images.shape
        if channels == self.domain.channels and _size_ratio(height, width, self.domain) <= self.domain.max_size_ratio:
            return  # the usual case decides from the shape alone: no pixel is read, no host sync
        masks = domain_mismatch(images, self.domain)
        out = masks["channels"] | masks["size"]
        count = int(out.sum())  # one host sync per batch, only until the first warning
        if count == 0:
            return
        message = (
            f"{count} of {images.shape[0]} images are far outside the input domain of {self.owner} "
            f"({self.domain.describe()}): {_explain(images, self.domain, masks)}. Its scores and difficulties are only "
            "meaningful inside that domain; "
        )
        mine = self.domain.profile is not None  # the user's own profile is in use: do not tell them to build one
        if self.strict:
            raise DomainError(message + (PROFILE_ERROR_ADVICE if mine else ERROR_ADVICE))
        self.warned = True
        warnings.warn(message + (PROFILE_WARNING_ADVICE if mine else WARNING_ADVICE), DomainWarning, stacklevel=caller_stacklevel())

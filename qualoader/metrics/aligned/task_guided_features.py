"""What the ``task-guided`` head reads: cheap image statistics and the reference network's response.

:func:`task_guided_features` computes 16 image statistics (:data:`FEATURE_NAMES`); with ``inputs``
``"network"`` or ``"both"`` (:data:`INPUTS`) the head also reads
:func:`~qualoader.metrics.aligned.reference_features.reference_features` from one forward pass.
Either way the features are computed at the reference network's input size. Split from
:mod:`qualoader.metrics.aligned.task_guided` (the head, its checkpoints and the metric), which
re-exports these names.
"""

from __future__ import annotations

import math

import kornia
import torch
import torch.nn.functional as F
from torch import Tensor

from qualoader._validation import check_choice
from qualoader.metrics.aligned.reference_features import (
    ReferenceResponse,
    reference_feature_names,
    reference_response_tap,
)
from qualoader.reference import ForwardTap, ReferenceNetwork

__all__ = [
    "FEATURE_NAMES",
    "INPUTS",
    "head_feature_names",
    "head_features",
    "head_features_tap",
    "head_features_with_response",
    "task_guided_features",
]

#: What a head can read: image statistics, the reference network's response, or both.
INPUTS = frozenset({"both", "image", "network"})

#: Names of the columns of :func:`task_guided_features`, in order.
FEATURE_NAMES: tuple[str, ...] = (
    "brightness",
    "contrast",
    "log_laplacian_energy_1",
    "log_laplacian_energy_2",
    "log_laplacian_energy_4",
    "log_gradient_energy",
    "log_sharpness_ratio",
    "laplacian_kurtosis",
    "log_noise_sigma",
    "histogram_entropy",
    "dark_fraction",
    "bright_fraction",
    "log_blockiness",
    "saturation",
    "log_local_contrast",
    "log_high_frequency_residual",
)
_EPS = 1e-6
_HISTOGRAM_BINS = 16


def _laplacian_energy(gray: Tensor) -> Tensor:
    """Mean squared Laplacian per image, :math:`(B,)`."""
    return kornia.filters.laplacian(gray, 3, border_type="replicate", normalized=False).square().mean(dim=(1, 2, 3))


def task_guided_features(images: Tensor) -> Tensor:
    """Cheap, batched image statistics used by the ``task-guided`` head.

    Args:
        images: :math:`(B, C, H, W)` float in [0, 1], ``C`` in {1, 3} (validated by the caller).

    Returns:
        Features :math:`(B, F)` with ``F = len(FEATURE_NAMES)``, float32 on the images' device.

    Example:
        >>> task_guided_features(torch.rand(2, 1, 28, 28)).shape
        torch.Size([2, 16])
    """
    x = images.to(torch.float32)
    gray = kornia.color.rgb_to_grayscale(x) if x.shape[1] == 3 else x
    mean = gray.mean(dim=(1, 2, 3))
    variance = gray.var(dim=(1, 2, 3), unbiased=False)
    lap = kornia.filters.laplacian(gray, 3, border_type="replicate", normalized=False)
    lap2 = lap.square().mean(dim=(1, 2, 3))
    lap4 = lap.square().square().mean(dim=(1, 2, 3))
    energy_2 = _laplacian_energy(F.avg_pool2d(gray, 2, ceil_mode=True))
    energy_4 = _laplacian_energy(F.avg_pool2d(gray, 4, ceil_mode=True))
    gradient = kornia.filters.spatial_gradient(gray, normalized=True).square().sum(dim=2).add(_EPS).sqrt().mean(dim=(1, 2, 3))
    # Immerkaer's fast noise estimate: a kernel that cancels first and second order structure.
    noise_kernel = torch.tensor([[1.0, -2.0, 1.0], [-2.0, 4.0, -2.0], [1.0, -2.0, 1.0]], device=x.device)
    residual = F.conv2d(gray, noise_kernel.view(1, 1, 3, 3))
    noise_sigma = residual.abs().mean(dim=(1, 2, 3)) * math.sqrt(math.pi / 2) / 6
    bins = (gray * _HISTOGRAM_BINS).long().clamp_(0, _HISTOGRAM_BINS - 1).flatten(1)
    histogram = torch.zeros(bins.shape[0], _HISTOGRAM_BINS, device=x.device).scatter_add_(
        1, bins, torch.ones_like(bins, dtype=torch.float32)
    )
    histogram = histogram / bins.shape[1]
    entropy = -(histogram * histogram.clamp_min(1e-12).log()).sum(dim=1)
    dark = (gray < 0.05).to(torch.float32).mean(dim=(1, 2, 3))
    bright = (gray > 0.95).to(torch.float32).mean(dim=(1, 2, 3))
    # Blockiness: horizontal and vertical steps on the 8x8 JPEG grid versus elsewhere.
    dx = (gray[..., :, 1:] - gray[..., :, :-1]).abs()
    dy = (gray[..., 1:, :] - gray[..., :-1, :]).abs()
    on_x = (torch.arange(dx.shape[-1], device=x.device) % 8 == 7).to(torch.float32)
    on_y = (torch.arange(dy.shape[-2], device=x.device) % 8 == 7).to(torch.float32)
    grid = (dx * on_x).sum(dim=(1, 2, 3)) / (on_x.sum() * dx.shape[-2]).clamp_min(1) + (dy * on_y[:, None]).sum(dim=(1, 2, 3)) / (
        on_y.sum() * dy.shape[-1]
    ).clamp_min(1)
    off = (dx * (1 - on_x)).sum(dim=(1, 2, 3)) / ((1 - on_x).sum() * dx.shape[-2]).clamp_min(1) + (dy * (1 - on_y[:, None])).sum(
        dim=(1, 2, 3)
    ) / ((1 - on_y).sum() * dy.shape[-1]).clamp_min(1)
    saturation = (x.amax(dim=1) - x.amin(dim=1)).mean(dim=(1, 2))
    local_mean = F.avg_pool2d(gray, 3, stride=1, padding=1, count_include_pad=False)
    local_var = F.avg_pool2d(gray.square(), 3, stride=1, padding=1, count_include_pad=False) - local_mean.square()
    local_contrast = local_var.clamp_min(0).add(_EPS).sqrt().mean(dim=(1, 2, 3))
    blurred = kornia.filters.gaussian_blur2d(gray, (5, 5), (1.0, 1.0), border_type="replicate")
    high_frequency = (gray - blurred).square().mean(dim=(1, 2, 3))
    columns = [
        mean,
        variance.add(_EPS).sqrt(),
        lap2.add(_EPS).log(),
        energy_2.add(_EPS).log(),
        energy_4.add(_EPS).log(),
        gradient.add(_EPS).log(),
        lap2.add(_EPS).log() - variance.add(_EPS).log(),
        (lap4.add(_EPS**2) / lap2.square().add(_EPS**2)).log(),
        noise_sigma.add(_EPS).log(),
        entropy,
        dark,
        bright,
        (grid.add(_EPS) / off.add(_EPS)).log(),
        saturation,
        local_contrast.log(),
        high_frequency.add(_EPS).log(),
    ]
    return torch.stack(columns, dim=1)


def head_feature_names(inputs: str, network: ReferenceNetwork | None) -> tuple[str, ...]:
    """Column names of :func:`head_features` for ``inputs`` (see :data:`INPUTS`) and ``network``."""
    check_choice(inputs, "inputs", INPUTS)
    names: tuple[str, ...] = FEATURE_NAMES if inputs != "network" else ()
    if inputs != "image":
        if network is None:
            raise ValueError(
                f"network should be a ReferenceNetwork when inputs={inputs!r} (the head reads its response), but got network=None"
            )
        names += reference_feature_names(network)
    return names


def head_features(images: Tensor, inputs: str, network: ReferenceNetwork | None) -> Tensor:
    """The features a head with ``inputs`` reads, computed at the reference network's input size.

    Args:
        images: :math:`(B, C, H, W)` float in [0, 1], ``C`` in {1, 3} (validated by the caller).
        inputs: one of :data:`INPUTS`.
        network: the reference network; required unless ``inputs == "image"``, where it only
            sets the size at which the statistics are computed (``None``: the images' own size).

    Returns:
        :math:`(B, F)` float32 with the columns :func:`head_feature_names` names.
    """
    return head_features_with_response(images, inputs, network)[0]


def _at_input_size(images: Tensor, network: ReferenceNetwork | None) -> Tensor:
    """``images`` resized to the network's input size (as its ``preprocess`` does), unless already there or no network."""
    if network is None or tuple(images.shape[-2:]) == tuple(network.input_size):
        return images
    # The statistics of what the network sees (its preprocess resizes the same way); at 224 px
    # this also makes them ~60x cheaper than at full resolution.
    return F.interpolate(images.float(), size=network.input_size, mode="bilinear", align_corners=False, antialias=True).clamp_(0.0, 1.0)


def head_features_with_response(images: Tensor, inputs: str, network: ReferenceNetwork | None) -> tuple[Tensor, ReferenceResponse | None]:
    """:func:`head_features` and, when the head reads the network, its :class:`ReferenceResponse` (else ``None``).

    Training needs the network's embedding and logits of the same images; taking them from the
    same forward pass saves two of the three passes a sweep would otherwise run.
    """
    check_choice(inputs, "inputs", INPUTS)
    if inputs == "image":
        return task_guided_features(_at_input_size(images, network)), None
    if network is None:
        raise ValueError(f"network should be a ReferenceNetwork when inputs={inputs!r} (the head reads its response), but got network=None")
    images = _at_input_size(images, network)  # the network then reads exactly the images the statistics saw
    with torch.no_grad():
        return network.run_taps(images, [head_features_tap(images, inputs, network)])[0]


def head_features_tap(images: Tensor, inputs: str, network: ReferenceNetwork) -> ForwardTap:
    """The network half of :func:`head_features_with_response` as a :class:`~qualoader.reference.ForwardTap`.

    The image statistics are computed now; ``finish`` returns ``(features, response)`` once the
    pass has run. ``inputs`` is ``"network"`` or ``"both"`` (a head on ``"image"`` reads no network).
    """
    images = _at_input_size(images, network)
    statistics = [] if inputs == "network" else [task_guided_features(images)]
    response = reference_response_tap(network)

    def finish(logits: Tensor) -> tuple[Tensor, ReferenceResponse]:
        reply = response.finish(logits)
        return torch.cat([*statistics, reply.features], dim=1), reply

    return ForwardTap(response.hooks, finish)

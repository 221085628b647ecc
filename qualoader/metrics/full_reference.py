"""Full-reference measures: PSNR, SSIM and MS-SSIM, with pyiqa's default conventions.

Defaults reproduce ``pyiqa.create_metric("psnr" | "ssim" | "ms_ssim")`` (pyiqa 0.1.x):

* PSNR on all channels (``y_channel=False``), :math:`10 \\log_{10}(1 / (\\mathrm{MSE} + 10^{-8}))`.
* SSIM and MS-SSIM on the luma (``y_channel=True``, BT.601 / YIQ weights) quantised to 8 bits
  like MATLAB (``quantize=True``), an 11x11 Gaussian window with :math:`\\sigma = 1.5`, ``valid``
  filtering (no padding), no MATLAB down-sampling (``downsample=False``) and the contrast-structure
  term clamped at 0 (``nonnegative_cs=True``). MS-SSIM uses the five Wang et al. (2003) weights and
  2x2 average pooling (zero-padded on odd sides) between scales.

Unlike pyiqa, the statistics are computed in the input dtype with separable kornia filters, so
float32 input runs several times faster; the scores agree with pyiqa's float64 ones to ~1e-5.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from qualoader._validation import check_choice, check_positive_int, check_type
from qualoader.metrics.base import QualityMetric
from qualoader.metrics.registry import register_metric

__all__ = [
    "COLOR_SPACES",
    "MSSSIM",
    "MS_SSIM_WEIGHTS",
    "PSNR",
    "SSIM",
    "ms_ssim",
    "psnr",
    "ssim",
]

#: Colour spaces whose first channel is used as luma when ``y_channel=True``.
COLOR_SPACES = frozenset({"yiq", "ycbcr"})
#: Per-scale exponents of MS-SSIM (Wang, Simoncelli and Bovik, 2003), finest scale first.
MS_SSIM_WEIGHTS: tuple[float, ...] = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)

_LUMA = {"yiq": ((0.299, 0.587, 0.114), 0.0), "ycbcr": ((65.481 / 255, 128.553 / 255, 24.966 / 255), 16.0 / 255)}


def _working(images: Tensor) -> Tensor:
    # Half precision is upcast: the variances below are E[x^2] - E[x]^2, which cancels away in fp16/bf16.
    return images.float() if images.dtype in (torch.float16, torch.bfloat16) else images


def _prepare(images: Tensor, y_channel: bool, color_space: str, quantize: bool) -> Tensor:
    """Luma (or all channels) in the working dtype, optionally rounded to 8-bit levels."""
    images = _working(images)
    # Grey images already are luma.
    if y_channel and images.shape[1] == 3:
        (wr, wg, wb), offset = _LUMA[color_space]
        red, green, blue = images.unbind(1)
        images = (wr * red + wg * green + wb * blue + offset).unsqueeze(1)
    if quantize:
        images = (images * 255.0).round() / 255.0
    return images


def _check_options(y_channel: Any, color_space: Any) -> None:
    check_type(y_channel, "y_channel", bool, "a bool")
    check_choice(color_space, "color_space", COLOR_SPACES)


def _check_pair(images: Tensor, reference: Tensor) -> None:
    check_type(images, "images", Tensor, "a torch.Tensor of shape (B, C, H, W)")
    check_type(reference, "reference", Tensor, "a torch.Tensor of shape (B, C, H, W)")
    if images.ndim != 4 or images.shape != reference.shape:
        raise ValueError(
            f"reference should have the (B, C, H, W) shape of images {tuple(images.shape)}, but got "
            f"reference.shape={tuple(reference.shape)}"
        )


def psnr(
    images: Tensor,
    reference: Tensor,
    *,
    y_channel: bool = False,
    color_space: str = "yiq",
    eps: float = 1e-8,
) -> Tensor:
    """Peak signal-to-noise ratio in dB for images in [0, 1].

    Args:
        images: distorted images :math:`(B, C, H, W)` float in [0, 1].
        reference: clean images, same shape.
        y_channel: compare only the luma of RGB images.
        color_space: ``"yiq"`` or ``"ycbcr"``, the luma definition when ``y_channel``.
        eps: added to the MSE so identical images give a finite score (80 dB with the default).

    Returns:
        PSNR :math:`(B,)` in dB; higher is better.

    Example:
        >>> x = torch.rand(2, 3, 16, 16)
        >>> psnr(x, x)
        tensor([80., 80.])
    """
    _check_pair(images, reference)
    _check_options(y_channel, color_space)
    images = _prepare(images, y_channel, color_space, quantize=False)
    reference = _prepare(reference, y_channel, color_space, quantize=False)
    difference = (images - reference).flatten(1)
    mse = torch.linalg.vector_norm(difference, dim=1).square() / difference.shape[1]  # one pass, no squared copy
    return -10.0 * torch.log10(mse + eps)


def _gaussian(window_size: int, sigma: float, like: Tensor) -> Tensor:
    # kornia is imported where it filters: importing it costs ~0.2 s of every command's start-up, scoring or not
    from kornia.filters import get_gaussian_kernel1d

    return get_gaussian_kernel1d(window_size, sigma, device=like.device, dtype=like.dtype)


def _ssim_and_cs(images: Tensor, reference: Tensor, kernel: Tensor, nonnegative_cs: bool) -> tuple[Tensor, Tensor]:
    """Mean SSIM and mean contrast-structure term :math:`(B,)` of prepared images (``valid`` windows)."""
    # (K1 * L)^2 and (K2 * L)^2 with Wang et al.'s K1, K2 and dynamic range L = 1 for [0, 1] images.
    from kornia.filters import filter2d_separable

    c1, c2 = 0.01**2, 0.03**2
    channels = images.shape[1]
    # All five local moments in one filter call instead of five.
    stacked = torch.cat([images, reference, images * images, reference * reference, images * reference], dim=1)
    moments = filter2d_separable(stacked, kernel, kernel, padding="valid")
    mu_x, mu_y, xx, yy, xy = moments.split(channels, dim=1)
    mu_xx, mu_yy, mu_xy = mu_x * mu_x, mu_y * mu_y, mu_x * mu_y
    cs_map = (2 * (xy - mu_xy) + c2) / ((xx - mu_xx) + (yy - mu_yy) + c2)
    if nonnegative_cs:
        cs_map = cs_map.clamp_min(0)
    ssim_map = (2 * mu_xy + c1) / (mu_xx + mu_yy + c1) * cs_map
    return ssim_map.flatten(1).mean(dim=1), cs_map.flatten(1).mean(dim=1)


def _check_positive_real(value: Any, name: str) -> None:
    # bool is an int subclass, but True as a sigma or an epsilon is a mistake, not 1.0
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} should be a float, but got {name} of type {type(value).__name__}")
    if not value > 0:
        raise ValueError(f"{name} should be positive, but got {name}={value}")


def _check_window(window_size: Any, sigma: Any) -> None:
    check_positive_int(window_size, "window_size")
    if window_size % 2 == 0:
        raise ValueError(f"window_size should be an odd int, but got window_size={window_size}")
    _check_positive_real(sigma, "sigma")


def _downsample(images: Tensor) -> Tensor:
    """MATLAB's SSIM pre-filter: average pooling by ``round(min(H, W) / 256)`` when that is > 1."""
    factor = max(1, round(min(images.shape[-2:]) / 256))
    return F.avg_pool2d(images, kernel_size=factor) if factor > 1 else images


def _checked_pair(
    images: Tensor, reference: Tensor, window_size: int, sigma: float, y_channel: bool, color_space: str, quantize: bool
) -> tuple[Tensor, Tensor]:
    """Validate the arguments shared by :func:`ssim` and :func:`ms_ssim`; return both images prepared."""
    _check_pair(images, reference)
    _check_options(y_channel, color_space)
    _check_window(window_size, sigma)
    return _prepare(images, y_channel, color_space, quantize), _prepare(reference, y_channel, color_space, quantize)


def ssim(
    images: Tensor,
    reference: Tensor,
    *,
    window_size: int = 11,
    sigma: float = 1.5,
    y_channel: bool = True,
    color_space: str = "yiq",
    quantize: bool = True,
    downsample: bool = False,
    nonnegative_cs: bool = True,
) -> Tensor:
    """Structural similarity (Wang et al., 2004) with pyiqa's default conventions.

    Args:
        images: distorted images :math:`(B, C, H, W)` float in [0, 1], ``H, W >= window_size``
            (after down-sampling).
        reference: clean images, same shape.
        window_size: side of the Gaussian window (odd).
        sigma: standard deviation of the Gaussian window.
        y_channel: compare only the luma of RGB images.
        color_space: ``"yiq"`` or ``"ycbcr"``, the luma definition when ``y_channel``.
        quantize: round to 8-bit levels first, like MATLAB and pyiqa.
        downsample: apply MATLAB's average-pooling pre-filter for images larger than 256 px.
        nonnegative_cs: clamp the contrast-structure term at 0 (pyiqa does).

    Returns:
        Mean SSIM :math:`(B,)`, at most 1; higher is better.

    Example:
        >>> x = torch.rand(2, 3, 32, 32)
        >>> ssim(x, x)
        tensor([1., 1.])
    """
    images, reference = _checked_pair(images, reference, window_size, sigma, y_channel, color_space, quantize)
    if downsample:
        images, reference = _downsample(images), _downsample(reference)
    if min(images.shape[-2:]) < window_size:
        raise ValueError(
            f"images should be at least window_size={window_size} pixels in H and W, but got images.shape={tuple(images.shape)}"
        )
    return _ssim_and_cs(images, reference, _gaussian(window_size, sigma, images), nonnegative_cs)[0]


def _scale_sizes(size: int, levels: int) -> list[int]:
    sizes = [size]
    for _ in range(levels - 1):
        # avg_pool2d's output size for kernel 2 and padding size % 2, as ms_ssim pools: the size check then
        # matches the real pyramid exactly.
        size = (size + 2 * (size % 2) - 2) // 2 + 1
        sizes.append(size)
    return sizes


def _effective_size(height: int, width: int, downsample: bool) -> int:
    side = min(height, width)
    factor = max(1, round(side / 256)) if downsample else 1
    return side // factor


def ms_ssim(
    images: Tensor,
    reference: Tensor,
    *,
    window_size: int = 11,
    sigma: float = 1.5,
    y_channel: bool = True,
    color_space: str = "yiq",
    quantize: bool = True,
    downsample: bool = False,
    nonnegative_cs: bool = True,
) -> Tensor:
    """Multi-scale SSIM (Wang, Simoncelli and Bovik, 2003), product form, pyiqa's conventions.

    Args:
        images: distorted images :math:`(B, C, H, W)` float in [0, 1]; the coarsest of the five
            scales must still hold one window, so ``H, W >= 16 * (window_size - 1) + 1``
            (161 px with the default window).
        reference: clean images, same shape.
        window_size, sigma, y_channel, color_space, quantize, downsample, nonnegative_cs: as in
            :func:`ssim` (``downsample`` applies at every scale, as in pyiqa).

    Returns:
        MS-SSIM :math:`(B,)` in [0, 1]; higher is better.

    Raises:
        ValueError: images too small for five scales.

    Example:
        >>> x = torch.rand(1, 3, 192, 192)
        >>> ms_ssim(x, x)
        tensor([1.])
    """
    images, reference = _checked_pair(images, reference, window_size, sigma, y_channel, color_space, quantize)
    levels = len(MS_SSIM_WEIGHTS)
    smallest = min(
        _effective_size(h, w, downsample) for h, w in zip(_scale_sizes(images.shape[2], levels), _scale_sizes(images.shape[3], levels))
    )
    # Checked up front, so too-small images fail before four scales of filtering.
    if smallest < window_size:
        raise ValueError(
            f"images should be large enough for {levels} scales of a {window_size}-pixel window "
            f"(at least {16 * (window_size - 1) + 1} px in H and W), but got H, W = {tuple(images.shape[-2:])}"
        )
    kernel = _gaussian(window_size, sigma, images)
    contrast_structure = []
    for level in range(levels):
        scaled_x = _downsample(images) if downsample else images
        scaled_y = _downsample(reference) if downsample else reference
        similarity, cs = _ssim_and_cs(scaled_x, scaled_y, kernel, nonnegative_cs)
        contrast_structure.append(cs)
        if level + 1 < levels:
            padding = (images.shape[2] % 2, images.shape[3] % 2)
            images = F.avg_pool2d(images, kernel_size=2, padding=padding)
            reference = F.avg_pool2d(reference, kernel_size=2, padding=padding)
    weights = torch.tensor(MS_SSIM_WEIGHTS, dtype=images.dtype, device=images.device)
    # Luminance enters at the coarsest scale only (Wang et al. 2003), hence the last loop's full SSIM there.
    # nonnegative_cs keeps the powers defined: a negative cs to a fractional exponent is NaN.
    cs_stack = torch.stack(contrast_structure[:-1], dim=1)  # (B, levels - 1)
    return (cs_stack ** weights[:-1]).prod(dim=1) * similarity ** weights[-1]


def _required(reference: Tensor | None) -> Tensor:
    if reference is None:
        raise ValueError("reference should be a tensor of clean images, but got reference=None")
    return reference


class _SSIMBase(QualityMetric):
    requires_reference = True
    higher_is_better = True

    def __init__(
        self,
        *,
        window_size: int = 11,
        sigma: float = 1.5,
        y_channel: bool = True,
        color_space: str = "yiq",
        quantize: bool = True,
        downsample: bool = False,
        nonnegative_cs: bool = True,
        check_values: bool = True,
    ) -> None:
        super().__init__(check_values=check_values)
        _check_options(y_channel, color_space)
        check_type(quantize, "quantize", bool, "a bool")
        check_type(downsample, "downsample", bool, "a bool")
        check_type(nonnegative_cs, "nonnegative_cs", bool, "a bool")
        _check_window(window_size, sigma)
        self.min_size = self.window_min_size(window_size)
        self.options: dict[str, Any] = {
            "window_size": window_size,
            "sigma": float(sigma),
            "y_channel": y_channel,
            "color_space": color_space,
            "quantize": quantize,
            "downsample": downsample,
            "nonnegative_cs": nonnegative_cs,
        }

    @staticmethod
    def window_min_size(window_size: int) -> int:
        """Smallest side that holds one window (SSIM filters with ``valid`` windows)."""
        return window_size

    def get_config(self) -> dict[str, Any]:
        return dict(self.options)


@register_metric
class PSNR(QualityMetric):
    """Peak signal-to-noise ratio in dB (pyiqa ``psnr`` conventions); higher is better.

    Args:
        y_channel: compare only the luma of RGB images (pyiqa's ``psnry``).
        color_space: ``"yiq"`` or ``"ycbcr"``, the luma definition when ``y_channel``.
        eps: added to the MSE (identical images score 80 dB).
    """

    name = "psnr"
    higher_is_better = True
    requires_reference = True

    def __init__(self, *, y_channel: bool = False, color_space: str = "yiq", eps: float = 1e-8, check_values: bool = True) -> None:
        super().__init__(check_values=check_values)
        _check_options(y_channel, color_space)
        _check_positive_real(eps, "eps")
        self.y_channel, self.color_space, self.eps = y_channel, color_space, float(eps)

    def get_config(self) -> dict[str, Any]:
        return {"y_channel": self.y_channel, "color_space": self.color_space, "eps": self.eps}

    def score(self, images: Tensor, reference: Tensor | None = None) -> Tensor:
        reference = _required(reference)
        return psnr(images, reference, y_channel=self.y_channel, color_space=self.color_space, eps=self.eps)


@register_metric
class SSIM(_SSIMBase):
    """Structural similarity on the 8-bit luma (pyiqa ``ssim`` conventions); higher is better.

    Args:
        window_size, sigma, y_channel, color_space, quantize, downsample, nonnegative_cs: see
            :func:`ssim`.
    """

    name = "ssim"

    def score(self, images: Tensor, reference: Tensor | None = None) -> Tensor:
        reference = _required(reference)
        return ssim(images, reference, **self.options)


@register_metric
class MSSSIM(_SSIMBase):
    """Multi-scale SSIM on the 8-bit luma (pyiqa ``ms_ssim`` conventions); higher is better.

    Needs images of at least 161 px per side with the default window (five scales).

    Args:
        window_size, sigma, y_channel, color_space, quantize, downsample, nonnegative_cs: see
            :func:`ms_ssim`.
    """

    name = "ms-ssim"

    @staticmethod
    def window_min_size(window_size: int) -> int:
        """Smallest side whose fifth scale (four 2x poolings) still holds one window: ``16 * (window_size - 1) + 1``."""
        return 16 * (window_size - 1) + 1

    def score(self, images: Tensor, reference: Tensor | None = None) -> Tensor:
        reference = _required(reference)
        return ms_ssim(images, reference, **self.options)

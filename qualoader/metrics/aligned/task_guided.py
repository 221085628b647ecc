"""``task-guided``: a light head on cheap image statistics that predicts a reference network's sensitivity.

The head sees :func:`task_guided_features` (brightness, contrast, multi-scale Laplacian and
gradient energies, a local noise estimate, histogram entropy, clipping, blockiness, colour) and
was trained on corruption sweeps to predict the reference network's fidelity on the image: the mean
of its correctness and of the cosine similarity of its embedding to that of the clean image
(1 = unaffected; see :mod:`qualoader._train_task_guided`). It costs a few convolutions per image,
no network forward pass. Train a new head with ``qualoader calibrate --metric task-guided``
or :func:`qualoader._train_task_guided.train_task_guided`.

The shipped default (``qualoader/assets/task_guided_default.pt`` + ``.json`` recipe) is fitted to
the embedded Fashion-MNIST reference network (:func:`qualoader.reference.default_reference`).
"""

from __future__ import annotations

import math
import os
from importlib import resources
from pathlib import Path
from typing import Any

import kornia
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from qualoader._validation import check_type
from qualoader.metrics.base import QualityMetric
from qualoader.metrics.registry import register_metric

__all__ = [
    "FEATURE_NAMES",
    "TaskGuided",
    "TaskGuidedHead",
    "default_task_guided_path",
    "load_task_guided_head",
    "save_task_guided_head",
    "task_guided_features",
]

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
_FORMAT_VERSION = 1
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
    histogram = torch.zeros(bins.shape[0], _HISTOGRAM_BINS, device=x.device).scatter_add_(1, bins, torch.ones_like(bins, dtype=torch.float32))
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


class TaskGuidedHead(nn.Module):
    """Standardise :func:`task_guided_features` and map them through a small MLP to a score in (0, 1).

    Args:
        hidden: widths of the hidden layers.
        feature_mean: per-feature mean :math:`(F,)` used for standardisation (zeros if ``None``).
        feature_std: per-feature standard deviation :math:`(F,)` (ones if ``None``).
    """

    def __init__(self, hidden: tuple[int, ...] = (64, 64), feature_mean: Tensor | None = None, feature_std: Tensor | None = None) -> None:
        super().__init__()
        count = len(FEATURE_NAMES)
        self.hidden = tuple(int(width) for width in hidden)
        self.register_buffer("feature_mean", torch.zeros(count) if feature_mean is None else feature_mean.detach().float().clone())
        self.register_buffer("feature_std", torch.ones(count) if feature_std is None else feature_std.detach().float().clone())
        layers: list[nn.Module] = []
        width = count
        for size in self.hidden:
            layers += [nn.Linear(width, size), nn.SiLU()]
            width = size
        layers.append(nn.Linear(width, 1))
        self.mlp = nn.Sequential(*layers)

    def logits(self, features: Tensor) -> Tensor:
        """Pre-sigmoid outputs :math:`(B,)` for features :math:`(B, F)`."""
        z = (features - self.feature_mean) / self.feature_std
        return self.mlp(z).squeeze(1)

    def forward(self, features: Tensor) -> Tensor:
        """Predicted reference-network fidelity :math:`(B,)` in (0, 1) for features :math:`(B, F)`."""
        return torch.sigmoid(self.logits(features))


def default_task_guided_path() -> Path:
    """Path of the shipped default head, ``qualoader/assets/task_guided_default.pt``."""
    return Path(str(resources.files("qualoader") / "assets" / "task_guided_default.pt"))


def save_task_guided_head(head: TaskGuidedHead, path: str | os.PathLike[str], calibration: dict[str, Any] | None = None) -> None:
    """Write ``head`` (and optionally a calibration state dict) as a ``torch.load(weights_only=True)``-safe checkpoint."""
    payload: dict[str, Any] = {
        "format_version": _FORMAT_VERSION,
        "feature_names": list(FEATURE_NAMES),
        "hidden": list(head.hidden),
        "state_dict": {key: value.detach().cpu() for key, value in head.state_dict().items()},
    }
    if calibration is not None:
        payload["calibration"] = calibration
    torch.save(payload, path)


def load_task_guided_head(path: str | os.PathLike[str] | None = None) -> tuple[TaskGuidedHead, dict[str, Any] | None]:
    """Load a head checkpoint (default: the shipped one) and its embedded calibration state, if any.

    Raises:
        FileNotFoundError: ``path`` does not exist (the message says what is expected where).
        ValueError: the file is not a task-guided checkpoint or its features differ from this version's.
    """
    default = path is None
    path = default_task_guided_path() if default else Path(path)
    if not path.is_file():
        hint = (
            "the package should ship it; regenerate it with 'python -m qualoader._train_task_guided'"
            if default
            else "train one with 'qualoader calibrate --metric task-guided --out PATH'"
        )
        raise FileNotFoundError(f"checkpoint should be an existing task-guided head file, but got checkpoint={str(path)!r}, which does not exist; {hint}")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        raise ValueError(f"checkpoint should be a task-guided head saved by qualoader, but got checkpoint={str(path)!r} that torch.load cannot read ({error})") from error
    if not isinstance(payload, dict) or payload.get("format_version") != _FORMAT_VERSION or "state_dict" not in payload:
        raise ValueError(f"checkpoint should be a task-guided head saved by qualoader (format_version={_FORMAT_VERSION}), but got checkpoint={str(path)!r}")
    if tuple(payload.get("feature_names", ())) != FEATURE_NAMES:
        raise ValueError(f"checkpoint should use the features {FEATURE_NAMES}, but got checkpoint={str(path)!r} with {payload.get('feature_names')}")
    head = TaskGuidedHead(tuple(payload["hidden"]))
    head.load_state_dict(payload["state_dict"])
    return head, payload.get("calibration")


@register_metric
class TaskGuided(QualityMetric):
    """Task-guided (NR, fast): predicted reference-network fidelity (correct and unchanged features = 1) from cheap statistics.

    Args:
        checkpoint: head file saved by ``qualoader calibrate --metric task-guided``; ``None``
            loads the shipped head fitted to the embedded Fashion-MNIST reference network.
        check_values: validate that float input is finite and in [0, 1].

    The difficulty prior comes from the checkpoint's calibration when it has one, otherwise
    (default head) from the shipped ``calibration_task-guided.json``.

    Raises:
        FileNotFoundError: the checkpoint file does not exist.

    Example:
        >>> from qualoader.metrics import create_metric
        >>> metric = create_metric("task-guided")
        >>> metric(torch.rand(4, 1, 28, 28)).shape
        torch.Size([4])
    """

    name = "task-guided"
    higher_is_better = True

    def __init__(self, checkpoint: str | os.PathLike[str] | None = None, *, check_values: bool = True) -> None:
        super().__init__(check_values=check_values)
        if checkpoint is not None:
            check_type(checkpoint, "checkpoint", (str, os.PathLike), "a path to a task-guided head (str or PathLike)")
        self.checkpoint = None if checkpoint is None else str(checkpoint)
        self.head, calibration_state = load_task_guided_head(checkpoint)
        self.head.requires_grad_(False)  # a frozen scorer: scores carry no autograd graph
        from qualoader.calibration import DifficultyCalibration, default_calibration

        if calibration_state is not None:
            self.calibration = DifficultyCalibration.from_state_dict(calibration_state)
        elif checkpoint is None:
            self.calibration = default_calibration(self.name)

    def score(self, images: Tensor, reference: Tensor | None = None) -> Tensor:
        """Scores :math:`(B,)` in (0, 1) for validated images :math:`(B, C, H, W)`."""
        return self.head(task_guided_features(images)).to(images.dtype)

    def get_config(self) -> dict[str, Any]:
        return {"checkpoint": self.checkpoint}


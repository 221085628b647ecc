"""``task-guided``: a light head that predicts a reference network's fidelity on an image.

The head maps per-image features to the reference network's expected fidelity on the image: the
mean of its correctness and of the cosine similarity of its embedding to that of the clean image
(1 = unaffected; see :mod:`qualoader.metrics.aligned.task_guided_training`). Its ``inputs`` are

* ``"image"``: :func:`task_guided_features`, 16 cheap image statistics (brightness, contrast,
  multi-scale Laplacian and gradient energies, noise, histogram entropy, clipping, blockiness, colour);
* ``"network"``: :func:`~qualoader.metrics.aligned.reference_features.reference_features`, the
  reference network's own response (softmax confidence, entropy, energy, logit margin, embedding
  norm, per-layer BatchNorm statistics shift), from one forward pass;
* ``"both"``: the two side by side (the shipped default).

The features live in :mod:`qualoader.metrics.aligned.task_guided_features` (re-exported here), always computed on
the image resized to the reference network's input size:
that is what the network sees, and at 224 px it is what makes the metric cheap.

The shipped default (``qualoader/assets/task_guided_default.pt`` + ``.json`` recipe) is fitted to
the embedded Fashion-MNIST reference network (:func:`qualoader.reference.default_reference`); train a
new head with ``qualoader calibrate --metric task-guided`` or
:func:`qualoader.metrics.aligned.task_guided_training.train_task_guided`.
"""

from __future__ import annotations

import io
import os
from importlib import resources
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from qualoader._atomic import write_bytes_atomic
from qualoader._validation import check_choice, check_type
from qualoader.metrics.aligned._reference_metric import ReferenceMetric, ReferenceSource, WeightsPath, check_layers_visible
from qualoader.metrics.aligned.task_guided_features import (
    FEATURE_NAMES,
    INPUTS,
    head_feature_names,
    head_features,
    head_features_tap,
    head_features_with_response,
    task_guided_features,
)
from qualoader.metrics.registry import register_metric
from qualoader.reference import ForwardTap, ReferenceNetwork

__all__ = [
    "FEATURE_NAMES",
    "INPUTS",
    "TaskGuided",
    "TaskGuidedHead",
    "default_task_guided_path",
    "head_feature_names",
    "head_features",
    "head_features_with_response",
    "load_task_guided_head",
    "save_task_guided_head",
    "task_guided_features",
]

_FORMAT_VERSION = 2  # 2 added the head's inputs and reference network; 1 (image statistics only) still loads


class TaskGuidedHead(nn.Module):
    """Standardise the features and map them through a small MLP to a score in (0, 1).

    Args:
        hidden: widths of the hidden layers (``()``: a logistic regression).
        feature_mean: per-feature mean :math:`(F,)` used for standardisation (zeros if ``None``).
        feature_std: per-feature standard deviation :math:`(F,)` (ones if ``None``).
        feature_names: the names of the ``F`` input columns (default: :data:`FEATURE_NAMES`).
    """

    def __init__(
        self,
        hidden: tuple[int, ...] = (64, 64),
        feature_mean: Tensor | None = None,
        feature_std: Tensor | None = None,
        feature_names: tuple[str, ...] = FEATURE_NAMES,
    ) -> None:
        super().__init__()
        self.feature_names = tuple(feature_names)
        count = len(self.feature_names)
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


def save_task_guided_head(
    head: TaskGuidedHead,
    path: str | os.PathLike[str],
    calibration: dict[str, Any] | None = None,
    *,
    inputs: str = "image",
    reference: str | None = None,
) -> None:
    """Write ``head`` as a ``torch.load(weights_only=True)``-safe checkpoint.

    Args:
        head: the trained head.
        path: destination (``.pt``); written to a temporary name first, then renamed.
        calibration: a calibration state dict to store with it.
        inputs: what the head reads (:data:`INPUTS`).
        reference: weights hash of the reference network the head was fitted to (``None``: any).
    """
    check_choice(inputs, "inputs", INPUTS)
    payload: dict[str, Any] = {
        "format_version": _FORMAT_VERSION,
        "inputs": inputs,
        "reference": reference,
        "feature_names": list(head.feature_names),
        "hidden": list(head.hidden),
        "state_dict": {key: value.detach().cpu() for key, value in head.state_dict().items()},
    }
    if calibration is not None:
        payload["calibration"] = calibration
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    write_bytes_atomic(path, buffer.getvalue())


def _read_checkpoint(path: str | os.PathLike[str] | None) -> tuple[Path, dict[str, Any]]:
    default = path is None
    path = default_task_guided_path() if default else Path(path)
    if not path.is_file():
        hint = (
            "the package should ship it; regenerate it with 'python tools/train_task_guided.py'"
            if default
            else "train one with 'qualoader calibrate --metric task-guided --out PATH'"
        )
        raise FileNotFoundError(
            f"checkpoint should be an existing task-guided head file, but got checkpoint={str(path)!r}, which does not exist; {hint}"
        )
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        raise ValueError(
            f"checkpoint should be a task-guided head saved by qualoader, but got checkpoint={str(path)!r} that torch.load cannot read "
            f"({error})"
        ) from error
    if not isinstance(payload, dict) or payload.get("format_version") not in (1, _FORMAT_VERSION) or "state_dict" not in payload:
        raise ValueError(
            f"checkpoint should be a task-guided head saved by qualoader (format_version<={_FORMAT_VERSION}), but got "
            f"checkpoint={str(path)!r}"
        )
    payload.setdefault("inputs", "image")  # version 1 heads read image statistics only
    payload.setdefault("reference", None)
    if payload["inputs"] not in INPUTS:
        raise ValueError(
            f"checkpoint should have inputs in {sorted(INPUTS)}, but got checkpoint={str(path)!r} with inputs={payload['inputs']!r}"
        )
    return path, payload


def load_task_guided_head(path: str | os.PathLike[str] | None = None) -> tuple[TaskGuidedHead, dict[str, Any] | None]:
    """Load a head checkpoint (default: the shipped one) and its embedded calibration state, if any.

    Raises:
        FileNotFoundError: ``path`` does not exist (the message says what is expected where).
        ValueError: the file is not a task-guided checkpoint, or an image-statistics head whose
            features differ from this version's.
    """
    path, payload = _read_checkpoint(path)
    names = tuple(payload.get("feature_names", ()))
    if payload["inputs"] != "network" and names[: len(FEATURE_NAMES)] != FEATURE_NAMES:
        raise ValueError(
            f"checkpoint should use the features {FEATURE_NAMES}, but got checkpoint={str(path)!r} with {payload.get('feature_names')}"
        )
    head = TaskGuidedHead(tuple(payload["hidden"]), feature_names=names)
    head.load_state_dict(payload["state_dict"])
    return head, payload.get("calibration")


@register_metric
class TaskGuided(ReferenceMetric):
    """Task-guided (NR, DNN-aligned): predicted reference-network fidelity (correct and unchanged features = 1).

    Args:
        checkpoint: head file saved by ``qualoader calibrate --metric task-guided``; ``None``
            loads the shipped head fitted to the embedded Fashion-MNIST reference network.
        reference: the reference network the head reads (default: the embedded one); for a head
            that reads the network (``inputs`` ``"network"`` or ``"both"``) it must be the network
            the head was fitted to (same weights hash). Anything
            :func:`~qualoader.reference.load_reference` accepts.
        weights: local weights file for ``reference``.
        check_values: validate that float input is finite and in [0, 1].
        **convention: input-convention overrides for ``load_reference`` (``input_size``, ...).

    The difficulty prior comes from the checkpoint's calibration when it has one, otherwise from
    the table of shipped calibrations (:data:`qualoader.calibration.SHIPPED_DEFAULTS`).

    Raises:
        FileNotFoundError: the checkpoint file does not exist.
        ValueError: the checkpoint was fitted to another reference network than ``reference``.
        TypeError: a TorchScript reference for a head that reads the network (its layers are hidden).

    Example:
        >>> from qualoader.metrics import create_metric
        >>> metric = create_metric("task-guided")
        >>> metric(torch.rand(4, 1, 28, 28)).shape
        torch.Size([4])
    """

    name = "task-guided"
    higher_is_better = True
    min_size = 3  # the 3x3 Immerkaer noise kernel runs without padding

    def __init__(
        self,
        checkpoint: str | os.PathLike[str] | None = None,
        *,
        reference: ReferenceSource = None,
        weights: WeightsPath = None,
        check_values: bool = True,
        **convention: Any,
    ) -> None:
        if checkpoint is not None:
            check_type(checkpoint, "checkpoint", (str, os.PathLike), "a path to a task-guided head (str or PathLike)")
        path, payload = _read_checkpoint(checkpoint)
        super().__init__(reference, weights=weights, check_values=check_values, **convention)
        self.checkpoint = None if checkpoint is None else str(checkpoint)
        self.inputs: str = payload["inputs"]
        if self.inputs != "image":  # the network's response is read through forward hooks
            check_layers_visible(self.network, self.name)
        fitted_to = payload["reference"]
        if self.inputs != "image" and fitted_to is not None and fitted_to != self.network.weights_hash:
            raise ValueError(
                f"reference should be the network the head was fitted to (weights hash {fitted_to}), but got reference "
                f"{self.network.name!r} with weights hash {self.network.weights_hash}; fit a head to it with "
                "'qualoader calibrate --metric task-guided'"
            )
        self.head, calibration_state = load_task_guided_head(path)
        expected = head_feature_names(self.inputs, self.network)
        if self.head.feature_names != expected:
            raise ValueError(
                f"checkpoint should read the features {expected} of this reference, but got checkpoint={str(path)!r} with "
                f"{self.head.feature_names}"
            )
        self.head.requires_grad_(False)  # a frozen scorer: scores carry no autograd graph
        from qualoader.calibration import DifficultyCalibration, shipped_calibration

        if calibration_state is not None:
            self.calibration = DifficultyCalibration.from_state_dict(calibration_state)
        else:  # the shipped head's calibration is declared in qualoader.calibration.SHIPPED_DEFAULTS
            self.calibration = shipped_calibration(self)

    def score(self, images: Tensor, reference: Tensor | None = None) -> Tensor:
        """Scores :math:`(B,)` in (0, 1) for validated images :math:`(B, C, H, W)`."""
        return self.head(head_features(images, self.inputs, self.network)).to(images.dtype)

    def tap(self, network: ReferenceNetwork, images: Tensor) -> ForwardTap | None:
        if self.inputs == "image":
            return None  # the head reads no network: there is no pass to share
        features = head_features_tap(images, self.inputs, network)
        return ForwardTap(features.hooks, lambda logits: self.head(features.finish(logits)[0]).to(images.dtype))

    def get_config(self) -> dict[str, Any]:
        return {"checkpoint": self.checkpoint, **super().get_config()}

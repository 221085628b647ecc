"""``bn-shift``: how far an image's activation statistics lie from a network's BatchNorm running statistics.

Every ``BatchNorm2d`` layer stores the mean :math:`m_c` and variance :math:`v_c` of its input
channels over the network's clean training data. For one image, the same layer's input gives a
per-channel spatial mean :math:`\\mu_c` and variance :math:`\\sigma_c^2`. The score averages, over
channels and then over layers, a divergence between :math:`\\mathcal{N}(\\mu_c, \\sigma_c^2)` and
:math:`\\mathcal{N}(m_c, v_c)`:

* ``"kl"`` (default): symmetric KL divergence :math:`\\tfrac12[\\mathrm{KL}(p\\|q) + \\mathrm{KL}(q\\|p)]`
  = :math:`\\tfrac14(\\sigma^2/v + v/\\sigma^2) - \\tfrac12 + \\tfrac14(\\mu - m)^2(1/v + 1/\\sigma^2)`,
  with :math:`\\sigma^2` floored at ``variance_floor`` :math:`\\cdot v` so a silent channel stays finite;
* ``"wasserstein"``: squared 2-Wasserstein distance over the running variance,
  :math:`((\\mu - m)^2 + (\\sigma - \\sqrt v)^2) / v`;
* ``"mean"``: normalised mean distance :math:`|\\mu - m| / \\sqrt v`.

One forward pass with forward-pre hooks on the BatchNorm layers; no reference image, no training.
Evaluation always uses eval mode: a network handed over in train mode is run in eval mode for the
call and its ``training`` flags and running statistics are left exactly as they were.
"""

from __future__ import annotations

import weakref
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from qualoader._validation import check_choice, check_probability, check_type
from qualoader.metrics.aligned._reference_metric import ReferenceMetric, ReferenceSource, WeightsPath
from qualoader.metrics.registry import register_metric
from qualoader.reference import ForwardTap, ReferenceNetwork

__all__ = [
    "DIVERGENCES",
    "MIN_MAP_SIZE",
    "BNShift",
    "SmallLayersWarning",
    "batchnorm_layers",
    "bn_shift",
    "bn_shift_tap",
    "channel_moments",
    "layer_map_sizes",
]

#: Per-channel divergences between the image's and the running Gaussian (see the module docstring).
DIVERGENCES = frozenset({"kl", "mean", "wasserstein"})
#: Smallest map (height and width) a layer's input must have for its per-image spatial variance to mean anything:
#: a 1x1 map has no variance at all and a 2x2 one four values, so such layers add noise, not a statistic.
MIN_MAP_SIZE = 4


class SmallLayersWarning(UserWarning):
    """``bn-shift`` left out BatchNorm layers whose maps are too small to carry a statistic (the message names them)."""


#: Per-channel moments of the activations of the current pass, keyed by the activation tensor itself: bn-shift's hooks
#: and the task-guided head's (reference_features) read the same BatchNorm inputs in one shared pass, and the reduction
#: costs about as much as the layer's convolution, so it is computed once. Entries vanish with their tensor.
_MOMENTS: dict[int, tuple[weakref.ref[Tensor], Tensor, Tensor]] = {}


def channel_moments(activations: Tensor) -> tuple[Tensor, Tensor]:
    """``(variance, mean)`` per image and channel :math:`(B, C)` of activations :math:`(B, C, ...)`, float32 (population variance)."""
    key = id(activations)
    entry = _MOMENTS.get(key)
    if entry is not None and entry[0]() is activations:  # the identity check: a recycled id never serves stale moments
        return entry[1], entry[2]
    var, mean = torch.var_mean(activations.float().flatten(2), dim=2, correction=0)
    _MOMENTS[key] = (weakref.ref(activations, lambda _ref, key=key: _MOMENTS.pop(key, None)), var, mean)  # type: ignore[misc]
    return var, mean


@torch.no_grad()
def layer_map_sizes(network: ReferenceNetwork, layers: dict[str, nn.Module]) -> dict[str, tuple[int, int]]:
    """``{name: (height, width)}`` of each layer's input map for one image at the network's input size (one forward pass)."""
    sizes: dict[str, tuple[int, int]] = {}

    def recorder(name: str) -> Any:
        def hook(_module: nn.Module, inputs: tuple[Tensor, ...]) -> None:
            sizes.setdefault(name, (int(inputs[0].shape[-2]), int(inputs[0].shape[-1])) if inputs[0].ndim == 4 else (1, 1))

        return hook

    probe = torch.full((1, network.in_channels, *network.input_size), 0.5, device=network.mean.device)
    network.run_taps(probe, [ForwardTap([(module, recorder(name), True) for name, module in layers.items()], lambda _logits: None)])
    return sizes


def batchnorm_layers(model: nn.Module) -> dict[str, nn.BatchNorm2d]:
    """``{name: layer}`` of the ``BatchNorm2d`` layers of ``model`` that hold running statistics."""
    return {
        name: module
        for name, module in model.named_modules()
        if isinstance(module, nn.BatchNorm2d) and module.running_mean is not None and module.running_var is not None
    }


def _select_layers(model: nn.Module, layers: Sequence[str] | None, label: str) -> dict[str, nn.BatchNorm2d]:
    """The named BatchNorm layers (all of them for ``None``), each checked to exist and hold running statistics."""
    available = batchnorm_layers(model)
    if not available:
        raise ValueError(f"{label} should have BatchNorm2d layers with running statistics for bn-shift, but got a network without any")
    if layers is None:
        return available
    if isinstance(layers, str) or not isinstance(layers, Sequence) or not layers:
        raise ValueError(f"layers should be None or a non-empty list of BatchNorm2d layer names, but got layers={layers!r}")
    for layer in layers:
        check_choice(layer, "layers[i]", available)
    return {layer: available[layer] for layer in layers}


def _divergence(mean: Tensor, var: Tensor, running_mean: Tensor, running_var: Tensor, divergence: str, floor: float) -> Tensor:
    """Per-image, per-channel divergence :math:`(B, C)` of :math:`\\mathcal N(mean, var)` from the running Gaussian."""
    diff2 = (mean - running_mean).square()
    if divergence == "mean":
        return diff2.div(running_var).sqrt()
    if divergence == "wasserstein":
        return (diff2 + (var.sqrt() - running_var.sqrt()).square()) / running_var
    var = torch.maximum(var, floor * running_var)
    ratio = var / running_var
    return 0.25 * (ratio + 1.0 / ratio) - 0.5 + 0.25 * diff2 * (1.0 / running_var + 1.0 / var)


@torch.no_grad()
def bn_shift(
    network: ReferenceNetwork,
    images: Tensor,
    *,
    divergence: str = "kl",
    variance_floor: float = 0.01,
    layers: Sequence[str] | None = None,
) -> Tensor:
    """BatchNorm statistics shift of each image: mean over layers and channels of a per-channel divergence.

    Args:
        network: a reference network with ``BatchNorm2d`` layers.
        images: :math:`(B, C, H, W)` in [0, 1].
        divergence: one of :data:`DIVERGENCES`.
        variance_floor: for ``"kl"``, the image variance is floored at this fraction of the running one.
        layers: names of the BatchNorm layers to average over (default: all of :func:`batchnorm_layers`).

    Returns:
        Shifts :math:`(B,)`, non-negative (larger: further from the training statistics), dtype of ``images``.

    Raises:
        ValueError: the network has no ``BatchNorm2d`` layer with running statistics, or a name
            in ``layers`` is not one of them.

    Example:
        >>> import torch
        >>> from qualoader.reference import default_reference
        >>> bn_shift(default_reference(), torch.rand(3, 1, 28, 28)).shape
        torch.Size([3])
    """
    check_type(network, "network", ReferenceNetwork, "a ReferenceNetwork (see qualoader.reference.load_reference)")
    tap = bn_shift_tap(network, images.dtype, divergence=divergence, variance_floor=variance_floor, layers=layers)
    return network.run_taps(images, [tap])[0]


def bn_shift_tap(
    network: ReferenceNetwork,
    dtype: torch.dtype,
    *,
    divergence: str = "kl",
    variance_floor: float = 0.01,
    layers: Sequence[str] | None = None,
) -> ForwardTap:
    """:func:`bn_shift` as a :class:`~qualoader.reference.ForwardTap`, to share a forward pass with other consumers.

    Its ``finish`` returns the shifts :math:`(B,)` in ``dtype`` (that of the images).
    """
    check_choice(divergence, "divergence", DIVERGENCES)
    floor = check_probability(variance_floor, "variance_floor", open_low=True)
    selected = _select_layers(network.model, layers, f"network {network.name!r}")
    shifts: list[Tensor] = []

    def hook(module: nn.Module, inputs: tuple[Tensor, ...]) -> None:
        var, mean = channel_moments(inputs[0])
        running_mean = module.running_mean.float()
        running_var = module.running_var.float() + module.eps
        shifts.append(_divergence(mean, var + module.eps, running_mean, running_var, divergence, floor).mean(1))

    return ForwardTap([(module, hook, True) for module in selected.values()], lambda _logits: torch.stack(shifts).mean(0).to(dtype))


@register_metric
class BNShift(ReferenceMetric):
    """BatchNorm shift (NR, DNN-aligned): distance of activation statistics from the training ones; lower is better.

    Args:
        reference: reference network with ``BatchNorm2d`` layers (default: the embedded
            Fashion-MNIST CNN); a :class:`~qualoader.reference.ReferenceNetwork` or anything
            :func:`~qualoader.reference.load_reference` accepts. A network in train mode is
            accepted: it is always evaluated in eval mode and never modified.
        weights: local weights file for ``reference``.
        divergence: ``"kl"`` (default), ``"wasserstein"`` or ``"mean"`` (see :data:`DIVERGENCES`).
        variance_floor: variance floor of ``"kl"``, as a fraction of the running variance.
        layers: names of the BatchNorm layers to average over (default: all).
        check_values: validate that float input is finite and in [0, 1].
        **convention: input-convention overrides for ``load_reference`` (``input_size``, ...), and
            ``strict=True`` to raise :class:`~qualoader.profiles.DomainError` instead of warning once
            (:class:`~qualoader.profiles.DomainWarning`) for images far outside the reference's domain.

    Layers whose input maps are under :data:`MIN_MAP_SIZE` pixels a side at the reference's input
    size (a ResNet's last stages at 64 px see 2x2 and 1x1 maps) carry no spatial statistic: with
    ``layers=None`` they are left out with a :class:`SmallLayersWarning` that names them
    (``skipped_layers``), and ``layers`` becomes the kept ones; naming one in ``layers`` is an error.

    Raises:
        ValueError: the network has no ``BatchNorm2d`` layer with running statistics, or none whose
            maps are large enough, or ``layers`` names a layer with too small maps.
        TypeError: a TorchScript network (its BatchNorm layers are hidden; load it as a plain module).

    With the embedded reference and the options of its entry in :data:`qualoader.calibration.SHIPPED_DEFAULTS`,
    the shipped difficulty calibration is attached.

    Example:
        >>> import torch
        >>> from qualoader.metrics import create_metric
        >>> metric = create_metric("bn-shift")
        >>> metric(torch.rand(4, 1, 28, 28)).shape
        torch.Size([4])
    """

    name = "bn-shift"
    higher_is_better = False
    reads_layers = True

    def __init__(
        self,
        reference: ReferenceSource = None,
        *,
        weights: WeightsPath = None,
        divergence: str = "kl",
        variance_floor: float = 0.01,
        layers: Sequence[str] | None = None,
        check_values: bool = True,
        **convention: Any,
    ) -> None:
        check_choice(divergence, "divergence", DIVERGENCES)
        floor = check_probability(variance_floor, "variance_floor", open_low=True)
        super().__init__(reference, weights=weights, check_values=check_values, **convention)
        selected = _select_layers(self.network.model, layers, f"reference {self.network.name!r}")
        sizes = layer_map_sizes(self.network, selected)
        #: ``{name: (height, width)}`` of the BatchNorm layers left out because their maps are under ``MIN_MAP_SIZE``.
        self.skipped_layers = {name: size for name, size in sizes.items() if min(size) < MIN_MAP_SIZE}
        shown = ", ".join(f"{name} ({h}x{w})" for name, (h, w) in self.skipped_layers.items())
        where = f"at the reference's input size {tuple(self.network.input_size)}"
        if layers is not None and self.skipped_layers:
            raise ValueError(
                f"layers should name BatchNorm2d layers whose maps are at least {MIN_MAP_SIZE}x{MIN_MAP_SIZE} {where}, but got "
                f"layers={list(layers)!r} with {shown}: a per-image spatial variance of so few values is noise"
            )
        if len(self.skipped_layers) == len(selected):
            raise ValueError(
                f"reference should have a BatchNorm2d layer whose maps are at least {MIN_MAP_SIZE}x{MIN_MAP_SIZE} {where} for bn-shift, "
                f"but got only {shown}; use a larger input size or another metric (confidence, task-guided)"
            )
        if self.skipped_layers:
            import warnings

            # Said once, at construction; the kept layers become the explicit configuration, so the fingerprint says what is scored.
            warnings.warn(
                f"bn-shift: left out {len(self.skipped_layers)} of {len(selected)} BatchNorm layers whose maps are under "
                f"{MIN_MAP_SIZE}x{MIN_MAP_SIZE} {where}: {shown}",
                SmallLayersWarning,
                stacklevel=2,
            )
            selected = {name: layer for name, layer in selected.items() if name not in self.skipped_layers}
        self.layers = None if layers is None and not self.skipped_layers else tuple(selected)
        self.divergence = divergence
        self.variance_floor = floor
        self.attach_shipped_calibration()

    def score(self, images: Tensor, reference: Tensor | None = None) -> Tensor:
        """Shifts :math:`(B,)` of validated images :math:`(B, C, H, W)`."""
        return bn_shift(self.network, images, divergence=self.divergence, variance_floor=self.variance_floor, layers=self.layers)

    def tap(self, network: ReferenceNetwork, images: Tensor) -> ForwardTap:
        return bn_shift_tap(network, images.dtype, divergence=self.divergence, variance_floor=self.variance_floor, layers=self.layers)

    def get_config(self) -> dict[str, Any]:
        layers = None if self.layers is None else list(self.layers)
        return {**super().get_config(), "divergence": self.divergence, "variance_floor": self.variance_floor, "layers": layers}

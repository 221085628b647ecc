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

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from qualoader._validation import check_choice, check_probability, check_type
from qualoader.metrics.aligned._reference_metric import ReferenceMetric, ReferenceSource, WeightsPath
from qualoader.metrics.registry import register_metric
from qualoader.reference import ForwardTap, ReferenceNetwork

__all__ = ["DIVERGENCES", "BNShift", "batchnorm_layers", "bn_shift", "bn_shift_tap"]

#: Per-channel divergences between the image's and the running Gaussian (see the module docstring).
DIVERGENCES = frozenset({"kl", "mean", "wasserstein"})


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
        activations = inputs[0].float()
        var, mean = torch.var_mean(activations.flatten(2), dim=2, correction=0)
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

    Raises:
        ValueError: the network has no ``BatchNorm2d`` layer with running statistics.
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
        self.layers = None if layers is None else tuple(selected)
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

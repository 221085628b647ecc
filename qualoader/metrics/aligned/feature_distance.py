"""``feature-distance``: how far a reference network's features of an image move from those of its clean version.

The default compares the pooled penultimate embeddings (:meth:`ReferenceNetwork.embed`) with a
cosine distance; ``layers=[...]`` averages the distances of several spatially pooled activations.
Images and clean references go through the network in one forward pass.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from qualoader._validation import check_choice, check_type
from qualoader.metrics.aligned._reference_metric import ReferenceMetric, ReferenceSource, WeightsPath
from qualoader.metrics.registry import register_metric
from qualoader.reference import ReferenceNetwork

__all__ = ["DISTANCES", "FeatureDistance", "feature_distance", "pooled_features"]

#: ``"cosine"``: :math:`1 - \cos(f, f_0)`; ``"l2"``: :math:`\|f - f_0\|_2 / \|f_0\|_2` (relative to the clean features).
DISTANCES = frozenset({"cosine", "l2"})
_EPS = 1e-8


def _distance(features: Tensor, clean: Tensor, distance: str) -> Tensor:
    """Row-wise distance of :math:`(B, D)` features to clean features :math:`(B, D)`, shape :math:`(B,)`."""
    if distance == "cosine":
        cosine = (features * clean).sum(1) / (features.norm(dim=1) * clean.norm(dim=1)).clamp_min(_EPS)
        return (1.0 - cosine).clamp_min(0.0)
    return (features - clean).norm(dim=1) / clean.norm(dim=1).clamp_min(_EPS)


def _pooled(tensor: Tensor) -> Tensor:
    """:math:`(B, C, ...) -> (B, C)` by averaging over space (already flat features are kept)."""
    return tensor.flatten(2).mean(2) if tensor.ndim > 2 else tensor.flatten(1)


def _check_layers(layers: Any) -> tuple[str, ...] | None:
    if layers is None:
        return None
    if isinstance(layers, str) or not isinstance(layers, Sequence) or not layers:
        raise ValueError(f"layers should be None or a non-empty list of module names, but got layers={layers!r}")
    for layer in layers:
        check_type(layer, "layers[i]", str, "a module name (str)")
    return tuple(layers)


@torch.no_grad()
def pooled_features(network: ReferenceNetwork, images: Tensor, *, layers: Sequence[str] | None = None) -> tuple[Tensor, ...]:
    """The features :func:`feature_distance` compares, from one forward pass.

    Compute them once for clean images and pass them as ``clean_features`` to score many
    degraded versions (e.g. a corruption sweep) without re-running the clean images.

    Args:
        network: the reference network.
        images: :math:`(B, C, H, W)` in [0, 1].
        layers: ``None`` for the pooled embedding, or module names (see :func:`feature_distance`).

    Returns:
        One :math:`(B, D_l)` tensor per layer (a single one, :math:`(B, D)`, for the embedding).
    """
    check_type(network, "network", ReferenceNetwork, "a ReferenceNetwork (see qualoader.reference.load_reference)")
    layers = _check_layers(layers)
    if layers is None:
        return (network.embed(images),)
    return tuple(_pooled(activation) for activation in network.features(images, layers).values())


@torch.no_grad()
def feature_distance(
    network: ReferenceNetwork,
    images: Tensor,
    clean: Tensor | None = None,
    *,
    layers: Sequence[str] | None = None,
    distance: str = "cosine",
    clean_features: Sequence[Tensor] | None = None,
) -> Tensor:
    """Distance between the reference network's features of ``images`` and of their clean versions.

    Args:
        network: the reference network.
        images: :math:`(B, C, H, W)` in [0, 1].
        clean: clean versions :math:`(B, C, H, W)` of ``images`` (run in the same forward pass).
        layers: ``None`` for the pooled embedding, or module names whose outputs are pooled over
            space and compared; the result is the mean over layers.
        distance: one of :data:`DISTANCES`.
        clean_features: instead of ``clean``, their :func:`pooled_features` (same ``layers``).

    Returns:
        Distances :math:`(B,)` (0 for identical images; larger is worse), dtype of ``images``.

    Example:
        >>> import torch
        >>> from qualoader.reference import default_reference
        >>> clean = torch.rand(2, 1, 28, 28)
        >>> feature_distance(default_reference(), clean, clean).abs().max() < 1e-5
        tensor(True)
    """
    check_type(network, "network", ReferenceNetwork, "a ReferenceNetwork (see qualoader.reference.load_reference)")
    check_choice(distance, "distance", DISTANCES)
    layers = _check_layers(layers)
    batch = images.shape[0]
    if (clean is None) == (clean_features is None):
        raise ValueError("clean and clean_features should be given one at a time, but got both or neither")
    if clean is not None:
        if images.shape != clean.shape:
            raise ValueError(f"clean should have the shape of images {tuple(images.shape)}, but got clean.shape={tuple(clean.shape)}")
        both = pooled_features(network, torch.cat([images, clean.to(images.dtype)]), layers=layers)
        degraded, reference = tuple(f[:batch] for f in both), tuple(f[batch:] for f in both)
    else:
        reference = tuple(clean_features)
        degraded = pooled_features(network, images, layers=layers)
        if len(reference) != len(degraded) or any(r.shape != d.shape for r, d in zip(reference, degraded)):
            shapes = [tuple(r.shape) for r in reference]
            raise ValueError(
                f"clean_features should be pooled_features of {batch} clean images with the same layers, but got shapes {shapes}"
            )
    per_layer = [_distance(d, r.to(d.device, d.dtype), distance) for d, r in zip(degraded, reference)]
    return torch.stack(per_layer).mean(0).to(images.dtype)


@register_metric
class FeatureDistance(ReferenceMetric):
    """Feature distance (FR, DNN-aligned): reference-network feature change from the clean image; lower is better.

    Args:
        reference: reference network (default: the embedded Fashion-MNIST CNN); a
            :class:`~qualoader.reference.ReferenceNetwork` or anything
            :func:`~qualoader.reference.load_reference` accepts.
        weights: local weights file for ``reference``.
        layers: ``None`` (pooled penultimate embedding) or module names to average over.
        distance: ``"cosine"`` (default) or ``"l2"`` (see :data:`DISTANCES`).
        check_values: validate that float input is finite and in [0, 1].
        **convention: input-convention overrides for ``load_reference`` (``input_size``, ...), and
            ``strict=True`` to raise :class:`~qualoader.profiles.DomainError` instead of warning once
            (:class:`~qualoader.profiles.DomainWarning`) for images far outside the reference's domain.

    With the embedded reference and the options of its entry in :data:`qualoader.calibration.SHIPPED_DEFAULTS`,
    the shipped difficulty calibration is attached.

    Example:
        >>> import torch
        >>> from qualoader.metrics import create_metric
        >>> metric = create_metric("feature-distance")
        >>> clean = torch.rand(4, 1, 28, 28)
        >>> metric((clean * 0.5), clean).shape
        torch.Size([4])
    """

    name = "feature-distance"
    higher_is_better = False
    reads_layers = True
    requires_reference = True

    def __init__(
        self,
        reference: ReferenceSource = None,
        *,
        weights: WeightsPath = None,
        layers: Sequence[str] | None = None,
        distance: str = "cosine",
        check_values: bool = True,
        **convention: Any,
    ) -> None:
        check_choice(distance, "distance", DISTANCES)
        layers = _check_layers(layers)
        super().__init__(reference, weights=weights, check_values=check_values, **convention)
        self.layers = layers
        self.distance = distance
        if layers is not None:
            for layer in layers:
                self.network.submodule(layer)
        self.attach_shipped_calibration()

    def score(self, images: Tensor, reference: Tensor | None = None) -> Tensor:
        """Distances :math:`(B,)` between features of ``images`` and of the clean ``reference`` :math:`(B, C, H, W)`."""
        if reference is None:  # forward() guarantees it; kept for direct calls
            raise ValueError("reference should be the clean images (B, C, H, W), but got reference=None")
        return feature_distance(self.network, images, reference, layers=self.layers, distance=self.distance)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "layers": None if self.layers is None else list(self.layers), "distance": self.distance}

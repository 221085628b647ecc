"""Shared base of the metrics computed through a reference network (``feature-distance``, ``bn-shift``, ...)."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any, ClassVar

import torch
from torch import Tensor, nn

from qualoader.metrics.base import QualityMetric
from qualoader.profiles.domain import DomainGuard, InputDomain
from qualoader.reference import ForwardTap, ReferenceNetwork, load_reference

if TYPE_CHECKING:
    from qualoader.profiles.profile import QualityProfile

__all__ = ["ReferenceMetric", "ReferenceSource", "WeightsPath", "check_layers_visible"]

#: What ``reference=`` of every aligned metric accepts: ``None``/``"default"`` (the embedded network), a
#: torchvision name, ``"timm:<name>"``, a :class:`~qualoader.reference.ReferenceNetwork` or any ``nn.Module``.
ReferenceSource = str | nn.Module | None
#: The local weights file of ``reference=`` (``None``: the source's own, see :func:`~qualoader.reference.load_reference`).
WeightsPath = str | os.PathLike[str] | None


def check_layers_visible(network: ReferenceNetwork, metric: str) -> None:
    """Refuse a TorchScript network for a metric that reads the network's layers.

    A scripted or traced module hides its layers' Python types (no ``nn.BatchNorm2d`` to find) and
    refuses forward hooks, so such a metric could not read it at all; say so at construction,
    with the way out, rather than fail at the first batch.

    Raises:
        TypeError: ``network`` wraps a ``torch.jit.ScriptModule``.
    """
    if isinstance(network.model, torch.jit.ScriptModule):
        raise TypeError(
            f"reference should be a plain nn.Module for {metric!r}, which reads the network's layers (BatchNorm statistics, "
            f"activations through forward hooks), but got the TorchScript module {network.name!r}, whose layers TorchScript hides "
            "and which takes no forward hooks; load the network as a plain module instead: a torchvision or timm name with its "
            "weights (reference='resnet18', weights=FILE; on the command line --reference resnet18 --weights FILE) or a "
            "'package.module:function' entry point that returns it ('confidence' reads only the logits and accepts TorchScript)"
        )


class ReferenceMetric(QualityMetric):
    """A metric that owns a :class:`~qualoader.reference.ReferenceNetwork` as ``self.network``.

    It knows the network's input domain (``input_domain``: channels, native size, intensity
    statistics) and warns once per instance, with a :class:`~qualoader.profiles.DomainWarning`,
    when images fall far outside it (``strict=True``: a :class:`~qualoader.profiles.DomainError`
    for every such batch). Without a profile the domain comes from the network's input
    convention; the shipped defaults and profiles add the measured intensity ranges.

    Args:
        reference: the network: ``None``/``"default"`` (embedded Fashion-MNIST CNN), a
            :class:`ReferenceNetwork`, a torchvision name, ``"timm:<name>"`` or any ``nn.Module``
            (see :func:`qualoader.reference.load_reference`).
        weights: local weights file for ``reference`` (see :func:`~qualoader.reference.load_reference`).
        check_values: validate that float input is finite and in [0, 1].
        strict: raise instead of warning for input outside the reference's domain.
        **convention: input-convention overrides forwarded to ``load_reference``.

    Raises:
        TypeError: a TorchScript network for a metric that reads its layers (``reads_layers``).
    """

    #: Whether the metric reads the network's layers (BatchNorm modules, forward hooks), which TorchScript hides.
    reads_layers: ClassVar[bool] = False

    def __init__(
        self,
        reference: ReferenceSource = None,
        *,
        weights: WeightsPath = None,
        check_values: bool = True,
        strict: bool = False,
        **convention: Any,
    ) -> None:
        super().__init__(check_values=check_values)
        self.network: ReferenceNetwork = load_reference("default" if reference is None else reference, weights=weights, **convention)
        if self.reads_layers:
            check_layers_visible(self.network, self.name)
        #: The profile this metric was built from (``create_metric(name, profile=...)``), else ``None``.
        self.profile: QualityProfile | None = None
        network = self.network
        domain = InputDomain(
            channels=network.in_channels,
            size=network.input_size,
            mean=tuple(network.mean.flatten().tolist()),
            std=tuple(network.std.flatten().tolist()),
        )
        self._domain_guard = DomainGuard(domain, strict=strict, owner=f"metric {self.name!r} (reference {network.name!r})")

    @property
    def input_domain(self) -> InputDomain:
        """The reference network's input domain (see :func:`qualoader.profiles.out_of_domain_fraction`)."""
        return self._domain_guard.domain

    @property
    def strict(self) -> bool:
        """Whether out-of-domain input raises (``True``) or warns once (``False``)."""
        return self._domain_guard.strict

    def set_input_domain(self, domain: InputDomain) -> None:
        """Replace the input domain (e.g. by a profile's measured one); the once-per-instance warning is re-armed."""
        self._domain_guard = DomainGuard(domain, strict=self.strict, owner=self._domain_guard.owner)

    def check_domain(self, images: Tensor) -> None:
        """Check images :math:`(B, C, H, W)` *as given* (before any resize) against the input domain.

        Warns once per instance (:class:`~qualoader.profiles.DomainWarning`), or raises
        :class:`~qualoader.profiles.DomainError` with ``strict=True``. :meth:`forward` calls it; so
        does the scoring engine, which hands :meth:`score` batches it has already resized.
        """
        self._domain_guard.check(images)

    def forward(self, images: Tensor, reference: Tensor | None = None) -> Tensor:
        """Score a batch (see :meth:`QualityMetric.forward`), checking it against the input domain first.

        Raises:
            DomainError: ``strict=True`` and an image lies far outside the reference's domain.
        """
        # only input that forward's own checks could accept; anything else reaches them and gets their message
        if (
            isinstance(images, Tensor)
            and images.ndim == 4
            and images.shape[1] in (1, 3)
            and (images.is_floating_point() or images.dtype == torch.uint8)
        ):
            self.check_domain(images)
        return super().forward(images, reference)

    def tap(self, network: ReferenceNetwork, images: Tensor) -> ForwardTap | None:
        """This metric's share of one forward pass of ``network`` over ``images``, or ``None`` when it cannot share one.

        ``network`` computes what :attr:`network` computes (equal :meth:`ReferenceNetwork.get_config`,
        so equal weights), and ``images`` are validated and already at its input size; the
        tap's ``finish`` returns what :meth:`score` would, :math:`(B,)`. The scoring engine
        uses it to run every aligned metric of one network in a single pass per batch.
        """
        return None

    def attach_shipped_calibration(self) -> None:
        """Attach the shipped calibration (and profile, measured domain) fitted for this exact configuration, if the package has one.

        Subclasses call it last in ``__init__``, once ``get_config()`` is complete; which
        configurations have one is declared in :data:`qualoader.calibration.SHIPPED_DEFAULTS`.
        """
        from qualoader.calibration.defaults import shipped_calibration, shipped_profile

        self.calibration = shipped_calibration(self)
        profile = shipped_profile(self)
        if profile is not None:  # this configuration is a shipped profile: carry it, so both ways of building it are one score
            self.profile = profile
            self.set_input_domain(profile.reference.domain)

    def get_config(self) -> dict[str, Any]:
        return {"reference": self.network.get_config()}

    def extra_repr(self) -> str:
        """The base class's line (the reference network by name), plus the profile's name when built from one."""
        return super().extra_repr() + ("" if self.profile is None else f", profile={self.profile.name!r}")

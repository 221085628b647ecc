"""A classifier together with its input convention: the network whose sensitivity aligned metrics share.

:class:`ReferenceNetwork` wraps any ``nn.Module`` classifier. It converts arbitrary images in
[0, 1] to the network's input (channels, size, normalisation), always runs the network in eval
mode, and exposes logits, pooled embeddings and intermediate activations.
"""

from __future__ import annotations

import difflib
import hashlib
import json
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from qualoader._validation import (
    check_choice,
    check_images,
    check_positive_int,
    check_type,
)

__all__ = ["ForwardTap", "ReferenceNetwork", "eval_mode", "preprocess_images"]

#: ITU-R BT.601 luma weights used to turn RGB into one grey channel.
_LUMA = (0.299, 0.587, 0.114)


def preprocess_images(images: Tensor, input_size: tuple[int, int], in_channels: int, mean: Tensor, std: Tensor) -> Tensor:
    """Map images in [0, 1] to a network's input convention.

    Grey images are repeated to RGB and RGB images reduced to luma (BT.601) when the channel
    counts differ; the size is changed with antialiased bilinear interpolation when it differs;
    then ``(x - mean) / std`` per channel.

    Args:
        images: :math:`(B, C, H, W)` floating in [0, 1], ``C`` in {1, 3}.
        input_size: ``(height, width)`` expected by the network.
        in_channels: channels expected by the network (1 or 3).
        mean: per-channel mean :math:`(1, in\\_channels, 1, 1)`.
        std: per-channel standard deviation :math:`(1, in\\_channels, 1, 1)`.

    Returns:
        Network input :math:`(B, in\\_channels, input\\_size[0], input\\_size[1])` in the dtype of ``mean``.
    """
    images = images.to(mean.dtype)
    channels = images.shape[1]
    if channels != in_channels:
        if in_channels == 1:
            weights = images.new_tensor(_LUMA).view(1, 3, 1, 1)
            images = (images * weights).sum(1, keepdim=True)
        else:
            images = images.expand(-1, in_channels, -1, -1)
    if tuple(images.shape[-2:]) != tuple(input_size):
        images = F.interpolate(images, size=tuple(input_size), mode="bilinear", align_corners=False, antialias=True)
    return (images - mean) / std


@contextmanager
def eval_mode(module: nn.Module) -> Iterator[nn.Module]:
    """Run ``module`` and all its sub-modules in eval mode, restoring every ``training`` flag afterwards."""
    flags = [(child, child.training) for child in module.modules()]
    module.eval()
    try:
        yield module
    finally:
        for child, flag in flags:
            child.training = flag


def _as_pair(value: Any, name: str) -> tuple[int, int]:
    if isinstance(value, int) and not isinstance(value, bool):
        value = (value, value)
    check_type(value, name, (tuple, list), "an int or a (height, width) pair of ints")
    if len(value) != 2:
        raise ValueError(f"{name} should be a (height, width) pair, but got {name}={value!r}")
    return check_positive_int(value[0], f"{name}[0]"), check_positive_int(value[1], f"{name}[1]")


def _as_stats(value: Any, name: str, channels: int, *, positive: bool) -> tuple[float, ...]:
    check_type(value, name, (tuple, list), f"a tuple of {channels} floats")
    if len(value) not in (1, channels) or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value):
        raise ValueError(f"{name} should be a tuple of 1 or {channels} floats, but got {name}={tuple(value)!r}")
    if positive and min(value) <= 0:
        raise ValueError(f"{name} should contain positive floats, but got {name}={tuple(value)!r}")
    return tuple(float(v) for v in value) * (channels if len(value) == 1 else 1)


class ForwardTap(NamedTuple):
    """One consumer's share of a forward pass: the hooks it reads the network through, and what it makes of them.

    Several taps on one :meth:`ReferenceNetwork.run_taps` call share a single forward pass; this
    is how the scoring engine runs every aligned metric of one network on one batch.

    Attributes:
        hooks: ``(module, hook, pre)`` triples, registered for the pass only
            (``pre=True``: ``register_forward_pre_hook``).
        finish: called with the logits :math:`(B, K)` once the pass (and so every hook) has run;
            returns the consumer's result, e.g. scores :math:`(B,)`.
    """

    hooks: Sequence[tuple[nn.Module, Callable[..., Any], bool]]
    finish: Callable[[Tensor], Any]


def _pool(tensor: Tensor) -> Tensor:
    """Global average over every dimension after the channel one: :math:`(B, C, ...) -> (B, C)`."""
    return tensor.flatten(2).mean(2) if tensor.ndim > 2 else tensor


class ReferenceNetwork(nn.Module):
    """A classifier plus its input convention, always evaluated in eval mode.

    The wrapped model's own ``training`` flags are never changed: ``train()``/``eval()`` on the
    wrapper do not reach it, and every call runs it in eval mode then restores its flags
    (so BatchNorm running statistics are never updated). ``.to(device)`` does move its weights.

    Args:
        model: classifier mapping normalised input :math:`(B, in\\_channels, H, W)` to logits :math:`(B, K)`.
        input_size: ``(height, width)`` of the network input (an int means square).
        in_channels: 1 (grey) or 3 (RGB).
        mean: per-channel normalisation mean (1 or ``in_channels`` values).
        std: per-channel normalisation standard deviation (positive).
        feature_layer: dotted name of the module whose output is the embedding (pooled over
            space when 4-D); ``None`` uses the input of the last ``nn.Linear`` (the penultimate features).
        name: human-readable identifier, recorded in configs and fingerprints.

    Example:
        >>> import torch
        >>> from torch import nn
        >>> net = ReferenceNetwork(nn.Sequential(nn.Flatten(), nn.Linear(64, 10)), input_size=8,
        ...                        in_channels=1, mean=(0.5,), std=(0.5,), feature_layer=None, name="toy")
        >>> net(torch.rand(4, 3, 16, 16)).shape, net.embed(torch.rand(4, 1, 8, 8)).shape
        (torch.Size([4, 10]), torch.Size([4, 64]))
    """

    mean: Tensor
    std: Tensor

    def __init__(
        self,
        model: nn.Module,
        *,
        input_size: int | tuple[int, int],
        in_channels: int,
        mean: Sequence[float],
        std: Sequence[float],
        feature_layer: str | None = None,
        name: str = "custom",
    ) -> None:
        super().__init__()
        check_type(model, "model", nn.Module, "an nn.Module classifier")
        check_choice(in_channels, "in_channels", {1, 3})
        check_type(name, "name", str, "a str")
        if feature_layer is not None:
            check_type(feature_layer, "feature_layer", str, "a module name (str) or None")
            self._module(feature_layer, "feature_layer", model)
        self.model = model
        self.input_size = _as_pair(input_size, "input_size")
        self.in_channels = in_channels
        self.feature_layer = feature_layer
        self.name = name
        self.register_buffer("mean", torch.tensor(_as_stats(mean, "mean", in_channels, positive=False)).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(_as_stats(std, "std", in_channels, positive=True)).view(1, -1, 1, 1))

    # -- modes --------------------------------------------------------------------------------
    def train(self, mode: bool = True) -> ReferenceNetwork:
        """Set only the wrapper's flag; the wrapped model always runs in eval mode (see class doc)."""
        check_type(mode, "mode", bool, "a bool")
        self.training = mode
        return self

    # -- introspection ------------------------------------------------------------------------
    @staticmethod
    def _module(name: str, label: str, model: nn.Module) -> nn.Module:
        modules = dict(model.named_modules())
        if name not in modules or name == "":
            close = difflib.get_close_matches(name, [key for key in modules if key], n=3)
            hint = f"; did you mean {', '.join(map(repr, close))}?" if close else ""
            raise ValueError(f"{label} should name a sub-module of the model, but got {label}={name!r}{hint}")
        return modules[name]

    def submodule(self, name: str) -> nn.Module:
        """The wrapped model's sub-module called ``name`` (dotted path).

        Raises:
            ValueError: no such sub-module (the message suggests close names).
        """
        check_type(name, "name", str, "a module name (str)")
        return self._module(name, "name", self.model)

    def _embedding_hook(self) -> tuple[nn.Module, bool]:
        """Module to hook for :meth:`embed` and whether to take its input (``True``) or output."""
        if self.feature_layer is not None:
            return self._module(self.feature_layer, "feature_layer", self.model), False
        linears = [module for module in self.model.modules() if isinstance(module, nn.Linear)]
        if not linears:
            raise ValueError(
                f"feature_layer should name the embedding module of {self.name!r}, which has no nn.Linear layer, "
                "but got feature_layer=None"
            )
        return linears[-1], True

    @property
    def weights_hash(self) -> str:
        """16 hex digits of sha256 over the input convention and every parameter and buffer of the model.

        Recomputed on each access, so it changes as soon as the weights do.
        """
        digest = hashlib.sha256()
        config = {"input_size": self.input_size, "in_channels": self.in_channels, "mean": self.mean.flatten().tolist(),
                  "std": self.std.flatten().tolist(), "feature_layer": self.feature_layer}
        digest.update(json.dumps(config, sort_keys=True).encode())
        for key, tensor in sorted(self.model.state_dict().items()):
            digest.update(key.encode())
            if tensor.numel():
                digest.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
        return digest.hexdigest()[:16]

    def get_config(self) -> dict[str, Any]:
        """JSON-serialisable description (name, input convention, weights hash)."""
        return {
            "name": self.name,
            "input_size": list(self.input_size),
            "in_channels": self.in_channels,
            "feature_layer": self.feature_layer,
            "weights_hash": self.weights_hash,
        }

    def extra_repr(self) -> str:
        return f"name={self.name!r}, input_size={self.input_size}, in_channels={self.in_channels}, feature_layer={self.feature_layer!r}"

    # -- computation --------------------------------------------------------------------------
    def preprocess(self, images: Tensor) -> Tensor:
        """Convert images :math:`(B, C, H, W)` in [0, 1] (``C`` in {1, 3}, or uint8) to the network input.

        Returns:
            :math:`(B, in\\_channels, input\\_size[0], input\\_size[1])`, normalised, in the buffers' dtype.
        """
        images = check_images(images, "images", check_values=False)
        return preprocess_images(images, self.input_size, self.in_channels, self.mean, self.std)

    def run(self, images: Tensor, hooks: dict[nn.Module, Callable[..., Any]] | None = None, *, pre: bool = False) -> Tensor:
        """One eval-mode forward pass with temporary forward hooks (``pre=True``: forward-pre hooks).

        Args:
            images: :math:`(B, C, H, W)` in [0, 1].
            hooks: module -> hook, registered for this call only and always removed.
            pre: register ``register_forward_pre_hook`` instead of ``register_forward_hook``.

        Returns:
            Logits :math:`(B, K)`.
        """
        tap = ForwardTap([(module, hook, pre) for module, hook in (hooks or {}).items()], lambda logits: logits)
        return self.run_taps(images, [tap])[0]

    def run_taps(self, images: Tensor, taps: Sequence[ForwardTap]) -> list[Any]:
        """One eval-mode forward pass serving several consumers: every tap's hooks, then every tap's ``finish``.

        Args:
            images: :math:`(B, C, H, W)` in [0, 1].
            taps: the consumers (see :class:`ForwardTap`); their hooks may share modules.

        Returns:
            ``[tap.finish(logits) for tap in taps]``.
        """
        handles = []
        try:
            for tap in taps:
                for module, hook, pre in tap.hooks:
                    handles.append(module.register_forward_pre_hook(hook) if pre else module.register_forward_hook(hook))
            with eval_mode(self.model):
                logits = self.model(self.preprocess(images))
        finally:
            for handle in handles:
                handle.remove()
        return [tap.finish(logits) for tap in taps]

    def forward(self, images: Tensor) -> Tensor:
        """Logits :math:`(B, K)` for images :math:`(B, C, H, W)` in [0, 1]."""
        return self.run(images)

    def embed_with_logits(self, images: Tensor) -> tuple[Tensor, Tensor]:
        """Embedding :math:`(B, D)` (see :meth:`embed`) and logits :math:`(B, K)` from one forward pass."""
        module, take_input = self._embedding_hook()
        captured: list[Tensor] = []

        def hook(_module: nn.Module, inputs: tuple[Tensor, ...], output: Tensor) -> None:
            captured.append(_pool((inputs[0] if take_input else output).clone()).flatten(1))

        logits = self.run(images, {module: hook})
        return captured[-1], logits

    def embed(self, images: Tensor) -> Tensor:
        """Pooled penultimate features :math:`(B, D)` of images :math:`(B, C, H, W)` in [0, 1]."""
        return self.embed_with_logits(images)[0]

    def features(self, images: Tensor, layers: Sequence[str]) -> dict[str, Tensor]:
        """Outputs of the named sub-modules (unpooled, e.g. :math:`(B, C_l, H_l, W_l)`), from one forward pass.

        Args:
            images: :math:`(B, C, H, W)` in [0, 1].
            layers: dotted module names (see ``model.named_modules()``).

        Returns:
            ``{layer: activation}`` in the order of ``layers``.
        """
        if isinstance(layers, str) or not isinstance(layers, Sequence) or not layers:
            raise ValueError(f"layers should be a non-empty sequence of module names, but got layers={layers!r}")
        captured: dict[str, Tensor] = {}
        hooks = {}
        for layer in layers:
            check_type(layer, "layers[i]", str, "a module name (str)")
            module = self._module(layer, "layers[i]", self.model)

            def hook(_module: nn.Module, _inputs: tuple[Tensor, ...], output: Tensor, key: str = layer) -> None:
                captured[key] = output.clone()

            hooks[module] = hook
        if len(hooks) != len(layers):
            raise ValueError(f"layers should name distinct modules, but got layers={list(layers)!r}")
        self.run(images, hooks)
        return {layer: captured[layer] for layer in layers}

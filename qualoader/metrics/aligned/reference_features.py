"""What a reference network itself says about an image: confidence, energy and BatchNorm statistics shift.

:func:`reference_features` runs the network once and returns, per image, its softmax confidence,
predictive entropy, energy (log-sum-exp of the logits), top-2 logit margin, the norm of its
penultimate features, and per ``BatchNorm2d`` layer the shift of the image's activation statistics
from the running ones (mean shift, signed log variance ratio, symmetric KL). These are the
network-side inputs of the ``task-guided`` head: unlike image statistics they are measured where
the degradation acts on the network, which is what lets the head carry over to degradation types
it was not trained on (``benchmarks/generalisation.py``).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import torch
from torch import Tensor, nn

from qualoader._validation import check_type
from qualoader.metrics.aligned.bn_shift import _divergence, batchnorm_layers, channel_moments
from qualoader.reference import ForwardTap, ReferenceNetwork

__all__ = [
    "OUTPUT_FEATURE_NAMES",
    "ReferenceResponse",
    "logit_features",
    "reference_feature_names",
    "reference_features",
    "reference_response",
    "reference_response_tap",
]

#: Columns of :func:`reference_features` that come from the logits and the embedding, in order.
OUTPUT_FEATURE_NAMES: tuple[str, ...] = ("max_probability", "entropy", "energy", "logit_margin", "log_embedding_norm")
_LAYER_FEATURES = ("mean_shift", "log_variance_ratio", "kl")
_EPS = 1e-6


def reference_feature_names(network: ReferenceNetwork) -> tuple[str, ...]:
    """Column names of :func:`reference_features` for ``network`` (output features, then 3 per BatchNorm layer)."""
    check_type(network, "network", ReferenceNetwork, "a ReferenceNetwork (see qualoader.reference.load_reference)")
    layers = [f"{name}.{feature}" for name in batchnorm_layers(network.model) for feature in _LAYER_FEATURES]
    return OUTPUT_FEATURE_NAMES + tuple(layers)


class ReferenceResponse(NamedTuple):
    """One forward pass of a reference network: :func:`reference_features` :math:`(B, F)`, the input of
    its last linear layer :math:`(B, D)` and its logits :math:`(B, K)`, all float32."""

    features: Tensor
    penultimate: Tensor
    logits: Tensor


def logit_features(logits: Tensor) -> Tensor:
    """Confidence measures of logits :math:`(B, K)`: :math:`(B, 4)` float32 of max softmax probability,
    entropy (nats), energy ``logsumexp`` and the top-2 logit margin (0 when ``K == 1``)."""
    logits = logits.float()
    log_probabilities = logits.log_softmax(dim=1)
    probabilities = log_probabilities.exp()
    top2 = logits.topk(min(2, logits.shape[1]), dim=1).values
    return torch.stack(
        [probabilities.amax(dim=1), -(probabilities * log_probabilities).sum(dim=1), logits.logsumexp(dim=1), top2[:, 0] - top2[:, -1]],
        dim=1,
    )


def _last_linear(model: nn.Module) -> nn.Linear:
    linears = [module for module in model.modules() if isinstance(module, nn.Linear)]
    if not linears:
        raise ValueError("network should end in an nn.Linear classifier layer for reference_features, but got a model without nn.Linear")
    return linears[-1]


@torch.no_grad()
def reference_features(network: ReferenceNetwork, images: Tensor) -> Tensor:
    """Per-image features of the reference network's response; see :func:`reference_response` for the columns.

    Example:
        >>> from qualoader.reference import default_reference
        >>> network = default_reference()
        >>> reference_features(network, torch.rand(2, 1, 28, 28)).shape == (2, len(reference_feature_names(network)))
        True
    """
    return reference_response(network, images).features


@torch.no_grad()
def reference_response(network: ReferenceNetwork, images: Tensor) -> ReferenceResponse:
    """Per-image features of the reference network's response, from one eval-mode forward pass.

    Args:
        network: the reference network (any input size; images are converted by its ``preprocess``).
        images: :math:`(B, C, H, W)` in [0, 1].

    Returns:
        A :class:`ReferenceResponse`; its ``features`` are :math:`(B, F)` float32 with ``F = len(reference_feature_names(network))``:
        max softmax probability, entropy (nats), energy ``logsumexp(logits)``, top-2 logit margin, log L2 norm of
        the input of the last linear layer, then per BatchNorm layer the mean over channels of
        ``|mu - m| / sqrt(v)``, ``log(sigma^2 / v)`` and the symmetric KL of ``bn-shift``.
    """
    check_type(network, "network", ReferenceNetwork, "a ReferenceNetwork (see qualoader.reference.load_reference)")
    return network.run_taps(images, [reference_response_tap(network)])[0]


def reference_response_tap(network: ReferenceNetwork) -> ForwardTap:
    """:func:`reference_response` as a :class:`~qualoader.reference.ForwardTap`; ``finish`` returns the :class:`ReferenceResponse`."""
    layers = batchnorm_layers(network.model)
    captured: dict[str, Tensor] = {}

    def layer_hook(module: nn.Module, inputs: tuple[Tensor, ...], name: str) -> None:
        var, mean = channel_moments(inputs[0])  # shared with bn-shift's hook on the same layer in one pass
        running_mean = module.running_mean.float()
        running_var = module.running_var.float() + module.eps
        var = var + module.eps
        captured[name] = torch.stack(
            [
                ((mean - running_mean).abs() / running_var.sqrt()).mean(1),
                (var / running_var).log().mean(1),
                # The floor 0.01 is bn-shift's default: a silent channel stays finite.
                _divergence(mean, var, running_mean, running_var, "kl", 0.01).mean(1),
            ],
            dim=1,
        )

    def embedding_hook(_module: nn.Module, inputs: tuple[Tensor, ...]) -> None:
        captured["__embedding__"] = inputs[0].float().flatten(1)

    hooks: list[tuple[nn.Module, Any, bool]] = [
        (module, (lambda m, i, name=name: layer_hook(m, i, name)), True) for name, module in layers.items()
    ]
    hooks.append((_last_linear(network.model), embedding_hook, True))

    def finish(logits: Tensor) -> ReferenceResponse:
        logits = logits.float()
        columns = [logit_features(logits), captured["__embedding__"].norm(dim=1).add(_EPS).log().unsqueeze(1)]
        parts = columns + [captured[name] for name in layers]
        return ReferenceResponse(torch.cat(parts, dim=1), captured["__embedding__"], logits)

    return ForwardTap(hooks, finish)

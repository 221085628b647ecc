"""Task models of the training benchmark: two small Fashion-MNIST classifiers, one without and one with BatchNorm.

Both are distinct from the reference network of the aligned metrics (the network that scores the
images), so a gain cannot come from training the scorer's own architecture. They are small on
purpose: the benchmark trains a few hundred of them on two shared CPU cores.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

# The alignment benchmark's MLP (two hidden layers, no normalisation layer), the same task model here.
from benchmarks.alignment.models import MLP

__all__ = ["ARCHITECTURES", "MLP", "TinyBNCNN", "accuracy", "build_model"]

_MEAN, _STD = 0.2860, 0.3530  # Fashion-MNIST train pixel statistics (inputs in [0, 1])


class TinyBNCNN(nn.Module):
    """Two strided 3x3 conv blocks (8, 16 channels) with BatchNorm, then a linear layer."""

    def __init__(self) -> None:
        super().__init__()
        # Stride 2 instead of max-pooling: a quarter of the convolutions' cost, which the shared CPU needs.
        self.features = nn.Sequential(
            nn.Conv2d(1, 8, 3, stride=2, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
            nn.Conv2d(8, 16, 3, stride=2, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
        )
        self.classifier = nn.Linear(16 * 7 * 7, 10)

    def forward(self, images: Tensor) -> Tensor:
        """Logits :math:`(B, 10)` of images :math:`(B, 1, 28, 28)` in [0, 1]."""
        return self.classifier(self.features((images - _MEAN) / _STD).flatten(1))


#: Architecture name -> constructor; "mlp" has no BatchNorm, "cnn-bn" has.
ARCHITECTURES: dict[str, Callable[[], nn.Module]] = {"mlp": MLP, "cnn-bn": TinyBNCNN}


def build_model(name: str, seed: int) -> nn.Module:
    """A freshly initialised ``name`` model; the initialisation depends on ``seed`` only."""
    # nn layers initialise from the global generator; fork_rng leaves the caller's global state untouched.
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return ARCHITECTURES[name]()


@torch.no_grad()
def accuracy(model: nn.Module, images: Tensor, labels: Tensor, batch_size: int = 2000) -> float:
    """Share of float images :math:`(N, 1, 28, 28)` in [0, 1] that ``model`` classifies as ``labels`` :math:`(N,)`."""
    was_training = model.training
    model.eval()
    correct = sum(int((model(x).argmax(1) == y).sum()) for x, y in zip(images.split(batch_size), labels.split(batch_size)))
    model.train(was_training)
    return correct / max(int(labels.numel()), 1)

"""Task models of the alignment benchmarks: three Fashion-MNIST classifiers of different architectures.

They are trained by the benchmark itself on the TRAIN split (clean images only, fixed seeds) and are
distinct from the reference network of the aligned metrics: the claim under test is that quality
predicts the accuracy of networks the metric never saw. Trained weights are cached next to the
results, keyed by architecture, epochs and seed, so re-runs skip training. Both the alignment run
(:mod:`benchmarks.alignment.run`) and the leave-one-family-out run (:mod:`benchmarks.alignment.generalisation`)
use them, so their task-model accuracies are those of the same architectures and recipe.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["MLP", "TASK_MODELS", "SmallCNN", "WideCNN", "load_or_train", "predict_correct", "train_classifier"]

_MEAN, _STD = 0.2860, 0.3530  # Fashion-MNIST train pixel statistics (inputs in [0, 1])


class MLP(nn.Module):
    """Two hidden layers (256, 128) on the flattened 28x28 image, no normalisation layer."""

    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 128), nn.ReLU(), nn.Linear(128, 10))

    def forward(self, images: Tensor) -> Tensor:
        """Logits :math:`(B, 10)` of images :math:`(B, 1, 28, 28)` in [0, 1]."""
        return self.net((images - _MEAN) / _STD)


class SmallCNN(nn.Module):
    """Two 3x3 conv blocks (16, 32 channels) with BatchNorm and max-pooling, then a linear layer."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(16, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(2),
        )
        self.classifier = nn.Linear(32 * 7 * 7, 10)

    def forward(self, images: Tensor) -> Tensor:
        """Logits :math:`(B, 10)` of images :math:`(B, 1, 28, 28)` in [0, 1]."""
        return self.classifier(self.features((images - _MEAN) / _STD).flatten(1))


class WideCNN(nn.Module):
    """Wider convs (32 channels 5x5, 64 channels 3x3) without BatchNorm, average pooling, dropout, two linear layers."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 32, 5, padding=2), nn.ReLU(), nn.AvgPool2d(2),
            nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.AvgPool2d(2),
        )
        self.classifier = nn.Sequential(nn.Flatten(), nn.Dropout(0.3), nn.Linear(64 * 7 * 7, 128), nn.ReLU(), nn.Linear(128, 10))

    def forward(self, images: Tensor) -> Tensor:
        """Logits :math:`(B, 10)` of images :math:`(B, 1, 28, 28)` in [0, 1]."""
        return self.classifier(self.features((images - _MEAN) / _STD))


TASK_MODELS: dict[str, Callable[[], nn.Module]] = {"mlp": MLP, "small-cnn": SmallCNN, "wide-cnn-nobn": WideCNN}


def train_classifier(
    model: nn.Module, images: Tensor, labels: Tensor, *, epochs: int, seed: int, batch_size: int = 128, lr: float = 1e-3
) -> dict[str, float]:
    """Train ``model`` in place with Adam on clean images :math:`(N, 1, 28, 28)` uint8 and labels :math:`(N,)`.

    The shuffling and the initialisation come from ``seed`` only. Returns ``{"seconds", "final_loss"}``.
    """
    generator = torch.Generator().manual_seed(seed)
    optimiser = torch.optim.Adam(model.parameters(), lr=lr)
    model.train()
    start, loss = time.perf_counter(), torch.tensor(0.0)
    for _ in range(epochs):
        for batch in torch.randperm(images.shape[0], generator=generator).split(batch_size):
            loss = F.cross_entropy(model(images[batch].float().div_(255.0)), labels[batch])
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
    model.eval()
    return {"seconds": time.perf_counter() - start, "final_loss": float(loss.detach())}


@torch.no_grad()
def predict_correct(model: nn.Module, images: Tensor, labels: Tensor, batch_size: int = 1000) -> Tensor:
    """Bool :math:`(N,)`: does ``model`` classify each float image :math:`(N, 1, 28, 28)` in [0, 1] correctly."""
    model.eval()
    return torch.cat([model(part).argmax(1) == target for part, target in zip(images.split(batch_size), labels.split(batch_size))])


def load_or_train(
    name: str, images: Tensor, labels: Tensor, *, epochs: int, seed: int, cache_dir: Path, log: Callable[[str], None] = print
) -> tuple[nn.Module, dict[str, Any]]:
    """Build task model ``name``, loading cached weights from ``cache_dir`` or training and caching them.

    The cache key is the name, epochs, number of training images and seed. Returns the model (eval
    mode) and its recipe (architecture, epochs, seed, parameters, training time).
    """
    torch.manual_seed(seed)  # the layers' default initialisation draws from the global generator
    model = TASK_MODELS[name]()
    stem = cache_dir / f"{name}_e{epochs}_n{images.shape[0]}_s{seed}"
    weights, recipe_path = stem.with_suffix(".pt"), stem.with_suffix(".json")
    if weights.exists() and recipe_path.exists():
        model.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
        model.eval()
        recipe = json.loads(recipe_path.read_text())
        recipe["cached"] = True
        log(f"task model {name}: loaded cached weights {weights}")
        return model, recipe
    log(f"task model {name}: training {epochs} epoch(s) on {images.shape[0]} images (seed {seed})")
    fit = train_classifier(model, images, labels, epochs=epochs, seed=seed)
    recipe = {
        "name": name,
        "architecture": type(model).__name__,
        "summary": (type(model).__doc__ or "").strip().splitlines()[0],
        "parameters": sum(p.numel() for p in model.parameters()),
        "epochs": epochs,
        "seed": seed,
        "train_images": int(images.shape[0]),
        "train_seconds": round(fit["seconds"], 1),
        "final_loss": round(fit["final_loss"], 4),
    }
    cache_dir.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), weights)
    recipe_path.write_text(json.dumps(recipe, indent=1))
    recipe["cached"] = False
    return model, recipe

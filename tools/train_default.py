"""Train the embedded default reference network on the real Fashion-MNIST train split.

Run ``python tools/train_default.py`` from the repository root (about 6 minutes on two CPU cores);
this script rebuilds a shipped asset and is never imported by the package. The recipe is fixed
and seeded: :class:`~qualoader.reference.architectures.FashionCNN`, AdamW with a one-cycle learning
rate, random horizontal flips as the only augmentation (never corruptions: the aligned metrics
must not be trained on what they measure). It writes ``qualoader/assets/default_reference.pt``
(a float32 ``state_dict``) and ``default_reference.json`` (recipe, seed, epochs, clean test
accuracy, torch version, sha256 of the ``.pt``).
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from qualoader._atomic import write_bytes_atomic, write_json_atomic
from qualoader.datasets import load_fashion_mnist
from qualoader.reference.architectures import (
    FASHION_MNIST_MEAN,
    FASHION_MNIST_STD,
    FashionCNN,
)

__all__ = ["evaluate", "main", "train_default"]

ASSETS = Path(__file__).resolve().parents[1] / "qualoader" / "assets"
RECIPE: dict[str, Any] = {
    "architecture": "qualoader.reference.architectures.FashionCNN(num_classes=10, width=32, hidden=128)",
    "data": "Fashion-MNIST train split (60,000 images) from qualoader.datasets.load_fashion_mnist",
    "input": "1x28x28 in [0, 1], normalised with mean 0.2860 and std 0.3530",
    "augmentation": "random horizontal flip (p=0.5); no corruptions",
    "optimizer": "AdamW(lr=3e-3 peak, weight_decay=5e-4), OneCycleLR, batch 128",
    "loss": "cross-entropy with label smoothing 0.05",
    "device": "cpu, torch.set_num_threads(2), deterministic algorithms",
}


def _normalise(images: Tensor) -> Tensor:
    return (images.float() / 255.0 - FASHION_MNIST_MEAN[0]) / FASHION_MNIST_STD[0]


@torch.no_grad()
def evaluate(model: torch.nn.Module, images: Tensor, labels: Tensor, batch_size: int = 1000) -> float:
    """Top-1 accuracy of ``model`` on uint8 images :math:`(N, 1, 28, 28)` with labels :math:`(N,)`."""
    model.eval()
    correct = 0
    for start in range(0, len(images), batch_size):
        logits = model(_normalise(images[start : start + batch_size]))
        correct += int((logits.argmax(1) == labels[start : start + batch_size]).sum())
    return correct / len(images)


def train_default(epochs: int = 4, seed: int = 0, batch_size: int = 128, lr: float = 3e-3) -> tuple[FashionCNN, dict[str, Any]]:
    """Train :class:`FashionCNN` with the fixed recipe; return the model (eval mode) and a log."""
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True)
    generator = torch.Generator().manual_seed(seed)
    train_images, train_labels = load_fashion_mnist("train", source="full")
    test_images, test_labels = load_fashion_mnist("test", source="full")
    model = FashionCNN()
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=5e-4)
    steps_per_epoch = len(train_images) // batch_size
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=lr, epochs=epochs, steps_per_epoch=steps_per_epoch)
    history = []
    for epoch in range(epochs):
        model.train()
        start = time.perf_counter()
        order = torch.randperm(len(train_images), generator=generator)
        flips = torch.rand(len(train_images), generator=generator) < 0.5
        total = 0.0
        for step in range(steps_per_epoch):
            index = order[step * batch_size : (step + 1) * batch_size]
            batch = _normalise(train_images[index])
            batch = torch.where(flips[index, None, None, None], batch.flip(-1), batch)
            loss = F.cross_entropy(model(batch), train_labels[index], label_smoothing=0.05)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            total += float(loss.detach())
        accuracy = evaluate(model, test_images, test_labels)
        history.append(
            {
                "epoch": epoch + 1,
                "loss": round(total / steps_per_epoch, 4),
                "test_accuracy": accuracy,
                "seconds": round(time.perf_counter() - start, 1),
            }
        )
        print(json.dumps(history[-1]), flush=True)
    model.eval()
    return model, {"history": history, "test_accuracy": history[-1]["test_accuracy"]}


def main(argv: list[str] | None = None) -> None:
    """Command-line entry point: train, then write the checkpoint and its recipe JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=ASSETS)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    model, log = train_default(epochs=args.epochs, seed=args.seed)
    args.out.mkdir(parents=True, exist_ok=True)
    weights = args.out / "default_reference.pt"
    buffer = io.BytesIO()
    torch.save({key: value.detach().float().contiguous() for key, value in model.state_dict().items()}, buffer)
    write_bytes_atomic(weights, buffer.getvalue())
    digest = hashlib.sha256(buffer.getvalue()).hexdigest()
    record = {
        "name": "fashion-mnist-cnn",
        "recipe": RECIPE,
        "seed": args.seed,
        "epochs": args.epochs,
        "test_accuracy": log["test_accuracy"],
        "history": log["history"],
        "num_classes": 10,
        "input_size": [28, 28],
        "in_channels": 1,
        "mean": list(FASHION_MNIST_MEAN),
        "std": list(FASHION_MNIST_STD),
        "feature_layer": "classifier.2",
        "torch_version": torch.__version__,
        "sha256": digest,
    }
    write_json_atomic(args.out / "default_reference.json", record, indent=2)
    print(f"wrote {weights} ({weights.stat().st_size} bytes), test accuracy {log['test_accuracy']:.4f}")


if __name__ == "__main__":
    main()

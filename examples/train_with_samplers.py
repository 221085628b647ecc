"""Train a small CNN on Fashion-MNIST with each qualoader sampler and compare clean test accuracy.

The training images are scored once with the DNN-aligned ``bn-shift`` metric (lower is better);
the scores then drive a stratified, a stratified-batch, two weighted (easy / hard) and a
curriculum sampler, next to a plain ``RandomSampler`` baseline. Each run starts from the same
seeded network and prints: sampler, epochs, samples seen, test accuracy and seconds.

Run it from the repository root::

    python examples/train_with_samplers.py --quick          # 4000 train / 1000 test images, 2 epochs
    python examples/train_with_samplers.py                  # all 60000 / 10000 images, 3 epochs
    python examples/train_with_samplers.py --epochs 5 --train-images 20000 --seed 1

Without a full local copy of Fashion-MNIST (the Debian package ``dataset-fashion-mnist`` or
``$QUALOADER_FASHION_MNIST``), the images come from the sample bundled with qualoader: 2000 train
and 3000 test images, so ``--quick`` trains on 2000 and the full run on 2000 / 3000.
"""

from __future__ import annotations

import argparse
import time

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, RandomSampler, Sampler, TensorDataset

from qualoader import QualityMetric, create_metric
from qualoader.datasets import fashion_mnist_source, load_fashion_mnist
from qualoader.samplers import (
    CurriculumSampler,
    QualitySampler,
    QualityStratifiedBatchSampler,
    QualityStratifiedSampler,
    QualityWeightedSampler,
)

SAMPLERS = ("random", "stratified", "stratified-batch", "weighted-easy", "weighted-hard", "curriculum")
BATCH_SIZE = 64
SCORE_BATCH = 1024


def small_cnn() -> nn.Module:
    """Two conv layers and a linear head for (B, 1, 28, 28) images."""
    return nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),  # 16 x 14 x 14
        nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),  # 32 x 7 x 7
        nn.Flatten(), nn.Linear(32 * 7 * 7, 10),
    )


@torch.no_grad()
def score_images(metric: QualityMetric, images: Tensor) -> Tensor:
    """Quality scores (N,) of float images (N, 1, 28, 28) in [0, 1], scored in batches."""
    return torch.cat([metric(images[i : i + SCORE_BATCH]) for i in range(0, len(images), SCORE_BATCH)])


def make_sampler(name: str, scores: Tensor, higher_is_better: bool, epochs: int, seed: int) -> Sampler:
    """The sampler called ``name`` over the training scores (N,)."""
    if name == "random":
        return RandomSampler(range(len(scores)), generator=torch.Generator().manual_seed(seed))
    if name == "stratified":  # equal share of each of 4 quality quartiles (orientation does not matter)
        return QualityStratifiedSampler(scores, num_strata=4, seed=seed)
    if name == "stratified-batch":  # every batch mixes the quartiles equally
        return QualityStratifiedBatchSampler(scores, batch_size=BATCH_SIZE, num_strata=4, seed=seed)
    if name in ("weighted-easy", "weighted-hard"):
        # softmax over standardised score ranks: bn-shift's heavy tail does not concentrate the weight
        favour = name.removeprefix("weighted-")
        return QualityWeightedSampler(scores, favour=favour, higher_is_better=higher_is_better, seed=seed)
    if name == "curriculum":  # easiest 20% first, the whole set from the last epoch on
        return CurriculumSampler(scores, start_fraction=0.2, full_at=max(1, epochs - 1), higher_is_better=higher_is_better, seed=seed)
    raise ValueError(f"name should be one of {SAMPLERS}, but got name={name!r}")


def make_loader(dataset: TensorDataset, sampler: Sampler) -> DataLoader:
    if isinstance(sampler, QualityStratifiedBatchSampler):  # yields whole batches of indices
        return DataLoader(dataset, batch_sampler=sampler)
    return DataLoader(dataset, batch_size=BATCH_SIZE, sampler=sampler)


@torch.no_grad()
def accuracy(model: nn.Module, images: Tensor, labels: Tensor) -> float:
    model.eval()
    predictions = torch.cat([model(images[i : i + SCORE_BATCH]).argmax(1) for i in range(0, len(images), SCORE_BATCH)])
    return float((predictions == labels).double().mean())


def train(dataset: TensorDataset, sampler: Sampler, epochs: int, seed: int) -> tuple[nn.Module, int]:
    """Train a freshly seeded CNN for ``epochs`` epochs; returns the model and the samples seen."""
    torch.manual_seed(seed)
    model = small_cnn()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    loader = make_loader(dataset, sampler)
    seen = 0
    model.train()
    for epoch in range(epochs):
        if isinstance(sampler, QualitySampler):
            sampler.set_epoch(epoch)  # new draw per epoch (and the curriculum's pool grows)
        for images, labels in loader:
            optimizer.zero_grad()
            nn.functional.cross_entropy(model(images), labels).backward()
            optimizer.step()
            seen += len(labels)
    return model, seen


def main(argv: list[str] | None = None) -> dict[str, float]:
    """Run every sampler; returns ``{sampler: clean test accuracy}``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="4000 train / 1000 test images and 2 epochs")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--epochs", type=int, default=None, help="default 2 with --quick, else 3")
    parser.add_argument("--train-images", type=int, default=None, help="default 4000 with --quick, else all 60000")
    args = parser.parse_args(argv)
    epochs = args.epochs if args.epochs is not None else (2 if args.quick else 3)
    num_train = args.train_images if args.train_images is not None else (4000 if args.quick else None)
    num_test = 1000 if args.quick else None

    train_images, train_labels = load_fashion_mnist("train")  # (60000, 1, 28, 28) uint8, (60000,) int64
    test_images, test_labels = load_fashion_mnist("test")
    train_images, train_labels = train_images[:num_train].float() / 255, train_labels[:num_train]
    test_images, test_labels = test_images[:num_test].float() / 255, test_labels[:num_test]

    metric = create_metric("bn-shift")  # DNN-aligned; lower is better
    start = time.perf_counter()
    scores = score_images(metric, train_images)
    print(f"data: {len(train_images)} train / {len(test_images)} test images ({fashion_mnist_source()} copy of Fashion-MNIST)")
    print(
        f"scored {len(scores)} training images with bn-shift in {time.perf_counter() - start:.1f}s "
        f"(median {float(scores.median()):.4f}, higher_is_better={metric.higher_is_better})"
    )

    dataset = TensorDataset(train_images, train_labels)
    results: dict[str, float] = {}
    print(f"\n{'sampler':<18}{'epochs':>7}{'samples seen':>14}{'test acc':>10}{'seconds':>9}")
    for name in SAMPLERS:
        start = time.perf_counter()
        sampler = make_sampler(name, scores, metric.higher_is_better, epochs, args.seed)
        model, seen = train(dataset, sampler, epochs, args.seed)
        results[name] = accuracy(model, test_images, test_labels)
        print(f"{name:<18}{epochs:>7}{seen:>14}{results[name]:>10.4f}{time.perf_counter() - start:>9.1f}")
    return results


if __name__ == "__main__":
    main()

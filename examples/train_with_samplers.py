"""Train a small CNN on mixed-quality Fashion-MNIST with the one-line recipe and compare it with RandomSampler.

Half of the training images (a seeded half) are degraded by a noise, blur or digital corruption at
a random severity 1-5, as data scraped from many sources often is. The images are scored once with
a DNN-aligned metric (``task-guided`` by default) into a score store by ``precompute``; the recipe
``qualoader.recipes.mixed_quality(table)`` then turns the stored scores into a sampler, next to a
plain ``RandomSampler`` and three explicit variants of the recipe. Each run starts from the same
seeded network and takes the same number of optimiser steps; the script prints clean TEST
accuracy and TEST accuracy under weather and ``extra`` corruptions, which training never saw.

One seed is a demonstration, not evidence: the paired-seed figures with confidence intervals,
and what helps and what does not, are in ``benchmarks/TRAINING_RESULTS.md``
(``python -m benchmarks.training``).

Run it from the repository root::

    python examples/train_with_samplers.py --quick          # 4000 train / 1000 test images, 2 epochs
    python examples/train_with_samplers.py                  # all 60000 / 10000 images, 2 epochs
    python examples/train_with_samplers.py --score bn-shift --epochs 3 --seed 1

Without a full local copy of Fashion-MNIST (the Debian package ``dataset-fashion-mnist`` or
``$QUALOADER_FASHION_MNIST``), the images come from the sample bundled with qualoader: 2000 train
and 3000 test images, so ``--quick`` trains on 2000 and tests on 1000.
"""

from __future__ import annotations

import argparse
import tempfile
import time

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, RandomSampler, Sampler, TensorDataset

from qualoader.corruptions import CORRUPTION_FAMILIES, corrupt
from qualoader.data import precompute
from qualoader.datasets import fashion_mnist_source, load_fashion_mnist
from qualoader.metrics import create_metric
from qualoader.recipes import mixed_quality

#: Samplers compared: the baseline, the recipe with its defaults, and the recipe's other strategies spelled out.
SAMPLERS = ("random", "mixed-quality", "weighted-easy", "stratified", "curriculum")
TRAIN_FAMILIES = ("noise", "blur", "digital")
HELD_OUT_FAMILIES = ("weather", "extra")  # never in the training data
BATCH_SIZE = 128


def small_cnn() -> nn.Module:
    """Two conv layers with BatchNorm and a linear head for (B, 1, 28, 28) images."""
    return nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(), nn.MaxPool2d(2),  # 16 x 14 x 14
        nn.Conv2d(16, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(2),  # 32 x 7 x 7
        nn.Flatten(), nn.Linear(32 * 7 * 7, 10),
    )


def degrade(images: Tensor, share: float, families: tuple[str, ...], generator: torch.Generator) -> Tensor:
    """A copy of float images (N, 1, 28, 28) where a seeded ``share`` is corrupted by the families' corruptions, severity 1-5."""
    names = [name for name, family in CORRUPTION_FAMILIES.items() if family in families]
    chosen = torch.randperm(len(images), generator=generator)[: round(share * len(images))]
    which = torch.randint(len(names), (len(chosen),), generator=generator)
    severity = torch.randint(1, 6, (len(chosen),), generator=generator)
    out = images.clone()
    for c, name in enumerate(names):  # one call per corruption and severity: per-image calls are much slower
        for s in range(1, 6):
            members = chosen[(which == c) & (severity == s)]
            if len(members):
                out[members] = corrupt(images[members], name, s, generator=generator)
    return out


def make_sampler(name: str, table, seed: int) -> Sampler:
    """The sampler called ``name`` over the stored scores ``table`` (a complete ScoreTable)."""
    if name == "random":
        return RandomSampler(range(table.length), generator=torch.Generator().manual_seed(seed))
    if name == "mixed-quality":
        return mixed_quality(table, seed=seed)  # the recipe: its defaults are the benchmark's choice
    if name == "weighted-easy":
        return mixed_quality(table, strategy="weighted", favour="easy", seed=seed)
    if name == "stratified":  # hardest quartile 40% of every epoch, easiest 10%
        return mixed_quality(table, strategy="stratified", proportions=(0.4, 0.3, 0.2, 0.1), seed=seed)
    if name == "curriculum":  # easiest 20% first, every image after one epoch's worth of draws
        return mixed_quality(table, strategy="curriculum", seed=seed)
    raise ValueError(f"name should be one of {SAMPLERS}, but got name={name!r}")


@torch.no_grad()
def accuracy(model: nn.Module, images: Tensor, labels: Tensor) -> float:
    model.eval()
    predictions = torch.cat([model(part).argmax(1) for part in images.split(1000)])
    return float((predictions == labels).double().mean())


def train(dataset: TensorDataset, sampler: Sampler, steps: int, seed: int) -> nn.Module:
    """Train a freshly seeded CNN for ``steps`` optimiser steps, feeding per-sample losses back to a sampler that takes them."""
    torch.manual_seed(seed)
    model = small_cnn()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    # drop_last: every step has BATCH_SIZE images, so every sampler gets the same steps for the same images seen
    loader = DataLoader(dataset, batch_size=BATCH_SIZE, sampler=sampler, drop_last=True)
    online = getattr(sampler, "feedback", None) is not None  # built with loss feedback (prior_strength=...)
    model.train()
    step, epoch = 0, 0
    while step < steps:
        if hasattr(sampler, "set_epoch"):
            sampler.set_epoch(epoch)  # a new draw per epoch
        for images, labels, indices in loader:
            per_sample = nn.functional.cross_entropy(model(images), labels, reduction="none")
            optimizer.zero_grad()
            per_sample.mean().backward()
            optimizer.step()
            if online:
                sampler.update(indices, per_sample.detach())
            step += 1
            if step == steps:
                break
        epoch += 1
    return model


def main(argv: list[str] | None = None) -> dict[str, dict[str, float]]:
    """Run every sampler; returns ``{sampler: {"clean": accuracy, "held-out": accuracy}}``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="4000 train / 1000 test images")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--epochs", type=float, default=2.0, help="epochs' worth of optimiser steps (default 2)")
    parser.add_argument("--train-images", type=int, default=None, help="default 4000 with --quick, else all 60000")
    parser.add_argument("--score", default="task-guided", help="the metric that scores the training images (default task-guided)")
    args = parser.parse_args(argv)
    num_train = args.train_images if args.train_images is not None else (4000 if args.quick else None)
    num_test = 1000 if args.quick else None

    train_images, train_labels = load_fashion_mnist("train")  # (60000, 1, 28, 28) uint8, (60000,) int64
    test_images, test_labels = load_fashion_mnist("test")
    train_images, train_labels = train_images[:num_train].float() / 255, train_labels[:num_train]
    test_images, test_labels = test_images[:num_test].float() / 255, test_labels[:num_test]
    generator = torch.Generator().manual_seed(1234)  # the data are the same whatever --seed, which seeds training only
    train_images = degrade(train_images, 0.5, TRAIN_FAMILIES, generator)
    tests = {"clean": test_images, "held-out": degrade(test_images, 1.0, HELD_OUT_FAMILIES, generator)}
    print(f"data: {len(train_images)} train / {len(test_images)} test images ({fashion_mnist_source()} copy of Fashion-MNIST), "
          "half of the training images degraded")

    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as folder:  # a real project keeps its store: scoring is then paid once
        table = precompute(TensorDataset(train_images), create_metric(args.score), folder, batch_size=500, progress=False,
                           dataset_id="mixed-quality-example")
        print(f"scored {table.length} training images with {args.score} in {time.perf_counter() - start:.1f} s")
        dataset = TensorDataset(train_images, train_labels, torch.arange(len(train_images)))
        steps = max(1, round(args.epochs * len(train_images) / BATCH_SIZE))
        results: dict[str, dict[str, float]] = {}
        print(f"\n{'sampler':<15}{'steps':>7}{'clean acc':>11}{'held-out acc':>14}{'seconds':>9}")
        for name in SAMPLERS:
            start = time.perf_counter()
            model = train(dataset, make_sampler(name, table, args.seed), steps, args.seed)
            results[name] = {test: accuracy(model, images, test_labels) for test, images in tests.items()}
            print(f"{name:<15}{steps:>7}{results[name]['clean']:>11.4f}{results[name]['held-out']:>14.4f}"
                  f"{time.perf_counter() - start:>9.1f}")
    return results


if __name__ == "__main__":
    main()

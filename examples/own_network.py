"""Align quality to your own network: train a ResNet-18 on Fashion-MNIST, build a quality profile, use it end to end.

The aligned metrics measure quality through a reference network. Out of the box that is the small
CNN embedded in qualoader; here it is a network of our own, which is what a user would do:

1. train torchvision's ResNet-18, adapted to 1 x 28 x 28 input (3x3 stride-1 first conv, no max-pool,
   10 classes), on Fashion-MNIST TRAIN and save its ``state_dict``;
2. ``qualoader calibrate --reference own_network:resnet18_fashion --weights ...``: a quality profile
   whose ``bn-shift`` difficulty is fitted on a corruption sweep of Fashion-MNIST TEST images and
   measured on a held-out part of them (the figures are printed and kept in the profile);
3. ``create_metric("bn-shift", profile=...)``: the metric the profile defines, then
   ``precompute`` into a score store, a ``QualityLoader`` over a quality-stratified sampler that
   reads those scores, and ``qualoader tag --profile`` on webdataset shards.

The architecture is named as an entry point ``module:function`` (this file's
:func:`resnet18_fashion`), so the profile records how to rebuild it; the weights are checked against
their sha256 each time the profile is loaded. Run it from the repository root::

    python examples/own_network.py --quick           # 1000 train images, 1 epoch: a few minutes on 2 CPU cores
    python examples/own_network.py --device cuda     # all 60000 train images, 2 epochs
    python examples/own_network.py --out runs/mine --train-images 10000 --epochs 3

Without a full local copy of Fashion-MNIST the images come from the sample bundled with qualoader.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, TensorDataset

from qualoader import create_metric
from qualoader.cli import main as qualoader_cli
from qualoader.data import QualityDataset, QualityLoader, ScoreStore, precompute
from qualoader.datasets import fashion_mnist_source, load_fashion_mnist
from qualoader.profiles import load_profile
from qualoader.reference import FASHION_MNIST_MEAN, FASHION_MNIST_STD
from qualoader.samplers import QualityStratifiedSampler
from qualoader.webdataset import parse_quality_tags, read_shards, write_image_shards

ENTRY_POINT = "own_network:resnet18_fashion"
MEAN, STD = FASHION_MNIST_MEAN[0], FASHION_MNIST_STD[0]  # the embedded network's normalisation, reused
_HERE = Path(__file__).resolve().parent
BATCH_SIZE = 64


def resnet18_fashion() -> nn.Module:
    """torchvision's ResNet-18 for (B, 1, 28, 28) input and 10 classes, randomly initialised.

    A 3x3 stride-1 first convolution and no max-pool keep the 28 px images at 28 x 28 in the first
    stage (the ImageNet stem would shrink them to 7 x 7 before any residual block).
    """
    from torchvision.models import resnet18

    model = resnet18(weights=None, num_classes=10)
    model.conv1 = nn.Conv2d(1, 64, kernel_size=3, stride=1, padding=1, bias=False)
    model.maxpool = nn.Identity()
    return model


def normalise(images: Tensor) -> Tensor:
    """uint8 (B, 1, 28, 28) -> the network's input: float, standardised with the Fashion-MNIST statistics."""
    return (images.float() / 255.0 - MEAN) / STD


def train(images: Tensor, labels: Tensor, epochs: int, seed: int, device: torch.device) -> nn.Module:
    """Train :func:`resnet18_fashion` on uint8 images (N, 1, 28, 28) with labels (N,); returns it in eval mode."""
    torch.manual_seed(seed)
    model = resnet18_fashion().to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=5e-4)
    steps = epochs * -(-len(images) // BATCH_SIZE)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=2e-3, total_steps=steps)
    generator = torch.Generator().manual_seed(seed)
    model.train()
    for _ in range(epochs):
        for batch in torch.randperm(len(images), generator=generator).split(BATCH_SIZE):
            optimizer.zero_grad()
            loss = nn.functional.cross_entropy(model(normalise(images[batch]).to(device)), labels[batch].to(device))
            loss.backward()
            optimizer.step()
            schedule.step()
    # A short run leaves BatchNorm's running averages (momentum 0.1) far from the data's statistics, and
    # eval mode uses them: re-estimate them as plain averages over (up to 2000 of) the training images.
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.reset_running_stats()
            module.momentum = None
    with torch.no_grad():
        for batch in torch.arange(min(len(images), 2000)).split(500):
            model(normalise(images[batch]).to(device))
    return model.eval()


@torch.no_grad()
def accuracy(model: nn.Module, images: Tensor, labels: Tensor, device: torch.device) -> float:
    predictions = torch.cat([model(normalise(images[i : i + 500]).to(device)).argmax(1).cpu() for i in range(0, len(images), 500)])
    return float((predictions == labels).double().mean())


def calibrate(weights: Path, profile: Path, args: argparse.Namespace) -> None:
    """``qualoader calibrate`` on Fashion-MNIST TEST (images the network never trained on)."""
    argv = [
        "calibrate", "--reference", ENTRY_POINT, "--weights", str(weights),
        "--input-size", "28", "--in-channels", "1", "--mean", str(MEAN), "--std", str(STD),
        "--metric", "bn-shift", "--data", "fashion-mnist:test", "--max-images", str(args.calibration_images),
        "--corruptions", *args.corruptions, "--severities", "0", "2", "4", "--seed", str(args.seed),
        "--name", "resnet18-fashion/bn-shift", "--out", str(profile), "--no-progress",
    ]  # fmt: skip
    print("$ qualoader " + " ".join(argv))
    if qualoader_cli(argv) != 0:
        raise SystemExit("qualoader calibrate failed (its one-line error is above)")


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run the example; returns what it measured and wrote (paths, accuracy, fit figures, scores)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1000 train images, 1 epoch, small calibration and scoring sets")
    parser.add_argument("--out", type=Path, default=Path("own_network_run"), help="folder for weights, profile, store and shards")
    parser.add_argument("--train-images", type=int, default=None, help="default 1000 with --quick, else all")
    parser.add_argument("--epochs", type=int, default=None, help="default 1 with --quick, else 2")
    parser.add_argument("--calibration-images", type=int, default=None, help="default 200 with --quick, else 2000")
    parser.add_argument(
        "--score-images", type=int, default=None, help="train images scored and loaded; default 256 with --quick, else 5000"
    )
    parser.add_argument("--corruptions", nargs="+", default=["gaussian_noise", "defocus_blur", "contrast"])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)
    if str(_HERE) not in sys.path:
        # the profile names the architecture as "own_network:resnet18_fashion": this folder must be importable
        # wherever the profile is used (for your own network: the package that defines it)
        sys.path.insert(0, str(_HERE))
    quick = args.quick
    num_train = args.train_images or (1000 if quick else None)
    epochs = args.epochs or (1 if quick else 2)
    args.calibration_images = args.calibration_images or (200 if quick else 2000)
    num_scored = args.score_images or (256 if quick else 5000)
    device = torch.device(args.device)
    args.out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()

    # 1. our own network, trained on Fashion-MNIST TRAIN
    train_images, train_labels = load_fashion_mnist("train")  # (N, 1, 28, 28) uint8, (N,) int64
    test_images, test_labels = load_fashion_mnist("test")
    print(f"data: {fashion_mnist_source()} copy of Fashion-MNIST")
    chosen = torch.randperm(len(train_images), generator=torch.Generator().manual_seed(args.seed))[:num_train]
    model = train(train_images[chosen], train_labels[chosen], epochs, args.seed, device)
    test_accuracy = accuracy(model, test_images[:2000], test_labels[:2000], device)
    weights = args.out / "resnet18_fashion.pt"
    torch.save({key: value.cpu() for key, value in model.state_dict().items()}, weights)
    print(f"trained ResNet-18 on {len(chosen)} images for {epochs} epoch(s): test accuracy {test_accuracy:.3f}; weights {weights}")

    # 2. a quality profile for it
    profile_path = args.out / "profile.json"
    calibrate(weights, profile_path, args)
    # trust=True: the profile names our own entry point (code runs when its network is built); it checks the weights' sha256
    profile = load_profile(profile_path, trust=True)
    held_out = dict(profile.provenance["held_out"])
    print(f"profile {profile.name} ({profile.identity}); held-out fit: {json.dumps(held_out)}")

    # 3a. the metric it defines, scoring a slice of the training set into a store
    metric = create_metric("bn-shift", profile=profile_path, device=device, trust_profile=True)
    images, labels = train_images[:num_scored], train_labels[:num_scored]
    dataset = TensorDataset(images, labels)
    store = ScoreStore(args.out / "store", length=num_scored, dataset_id=f"fashion-mnist:train:n={num_scored}")
    table = precompute(dataset, metric, store, batch_size=256, device=device, progress=False)
    scores = torch.from_numpy(table.scores())
    print(f"precompute: {table.num_scored}/{table.length} scored into {table.path}")

    # 3b. a sampler over those scores and a QualityLoader that reads them back (nothing is rescored)
    sampler = QualityStratifiedSampler(scores, num_strata=4, seed=args.seed)
    loader = DataLoader(QualityDataset(dataset), batch_size=BATCH_SIZE, sampler=sampler)
    quality_loader = QualityLoader(loader, metric, device=device, store=store, dataset_id=f"fashion-mnist:train:n={num_scored}")
    difficulties = torch.cat([batch[-1] for batch in quality_loader])  # batches are (images, labels, quality, difficulty)
    print(f"QualityLoader over QualityStratifiedSampler: {len(difficulties)} samples, difficulty mean {float(difficulties.mean()):.3f}")

    # 3c. tag webdataset shards with the profile's metric, from the command line
    shards_in, shards_out = args.out / "shards", args.out / "tagged"
    shards_in.mkdir(exist_ok=True)
    shard_files = write_image_shards(test_images[:64], str(shards_in / "test-%03d.tar"), labels=test_labels[:64], maxcount=32)
    argv = ["tag", *map(str, shard_files), str(shards_out), "--profile", str(profile_path), "--trust-profile", "--overwrite",
            "--no-progress"]
    print("$ qualoader " + " ".join(argv))
    if qualoader_cli(argv) != 0:
        raise SystemExit("qualoader tag failed (its one-line error is above)")
    tagged = sorted(shards_out.glob("*.tar"))
    tags = [sample["__difficulty__"]["bn-shift"] for sample in parse_quality_tags()(read_shards()([str(path) for path in tagged]))]
    print(f"tagged {len(tags)} samples into {len(tagged)} shards; difficulty range [{min(tags):.3f}, {max(tags):.3f}]")
    print(f"done in {time.perf_counter() - started:.0f} s")
    return {
        "weights": weights,
        "profile": profile_path,
        "test_accuracy": test_accuracy,
        "held_out": held_out,
        "store_table": table.path,
        "scores": scores,
        "difficulties": difficulties,
        "tagged_shards": tagged,
        "tag_difficulties": tags,
    }


if __name__ == "__main__":
    main()

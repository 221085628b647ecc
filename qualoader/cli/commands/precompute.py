"""``qualoader precompute``: score a dataset once into a score store (resumable), then summarise it.

SOURCE is ``fashion-mnist`` (the local Debian copy, ``--split``) or a folder laid out for
torchvision's ``ImageFolder`` (``root/<class>/<image>``). Images keep their size unless ``--size``
resizes them (variable sizes are scored per size group). The store (``--store``) is keyed by
sample index and tagged with the source, split, limit and size, so a store built for other images
is refused; re-running resumes an interrupted pass. Read the scores back with
``qualoader.data.ScoreStore(STORE).table(metric).scores()``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "precompute",
        help="score every image of a dataset into a persistent score store (resumable)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("source", help="'fashion-mnist' or an ImageFolder directory")
    parser.add_argument("--store", required=True, type=Path, help="score store folder (created when missing)")
    parser.add_argument("--metric", required=True, help="registered no-reference metric, e.g. sharpness")
    parser.add_argument("--split", choices=("train", "test"), default="test", help="Fashion-MNIST split (default: test)")
    parser.add_argument("--limit", type=int, default=None, help="only the first N samples")
    parser.add_argument("--size", type=int, default=None, help="resize images to SIZE x SIZE before scoring")
    parser.add_argument("--calibration", type=Path, default=None, help="DifficultyCalibration JSON to attach (difficulty buckets in the summary)")
    parser.add_argument("--batch-size", type=int, default=64, help="images per metric call (default: 64)")
    parser.add_argument("--num-workers", type=int, default=0, help="DataLoader workers for decoding (default: 0)")
    parser.add_argument("--device", default="cpu", help="device to score on (default: cpu)")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    parser.set_defaults(func=run)


def _dataset(args: argparse.Namespace) -> tuple[object, str]:
    """The dataset to score and its identifier for the store."""
    import torch
    import torch.nn.functional as F
    from torch.utils.data import Subset, TensorDataset

    from qualoader.datasets import load_fashion_mnist

    if args.source == "fashion-mnist":
        images, labels = load_fashion_mnist(args.split)
        if args.limit is not None:
            images, labels = images[: args.limit], labels[: args.limit]
        if args.size is not None:
            images = F.interpolate(images.float(), size=(args.size, args.size), mode="bilinear", align_corners=False).round().clamp(0, 255).to(torch.uint8)
        return TensorDataset(images, labels), f"fashion-mnist:{args.split}:n={len(images)}:size={args.size}"
    from torchvision import transforms
    from torchvision.datasets import ImageFolder

    root = Path(args.source)
    if not root.is_dir():
        raise FileNotFoundError(f"source should be 'fashion-mnist' or an ImageFolder directory, but got source={args.source!r}, which is neither")
    transform = transforms.Resize((args.size, args.size)) if args.size is not None else None
    dataset = ImageFolder(str(root), transform=transform)
    if args.limit is not None:
        dataset = Subset(dataset, range(min(args.limit, len(dataset))))
    return dataset, f"imagefolder:{root.resolve()}:n={len(dataset)}:size={args.size}"


def run(args: argparse.Namespace) -> int:
    from qualoader.data import ScoreStore, describe, precompute
    from qualoader.metrics import create_metric

    for name in ("limit", "size", "batch_size"):
        value = getattr(args, name)
        if value is not None and value <= 0:
            print(f"qualoader precompute: error: --{name.replace('_', '-')} should be a positive int, but got {value}", file=sys.stderr)
            return 2
    try:
        dataset, dataset_id = _dataset(args)
    except FileNotFoundError as error:
        print(f"qualoader precompute: error: {error}", file=sys.stderr)
        return 2
    metric = create_metric(args.metric, device=args.device)
    if args.calibration is not None:
        from qualoader.calibration import DifficultyCalibration

        metric.calibration = DifficultyCalibration.load(args.calibration)
    store = ScoreStore(args.store, len(dataset), dataset_id=dataset_id)  # type: ignore[arg-type]
    table = precompute(
        dataset,  # type: ignore[arg-type]
        metric,
        store,
        batch_size=args.batch_size,
        num_workers=args.num_workers,
        device=args.device,
        progress=not args.no_progress,
    )
    print(f"scores: {table.path} ({table.num_scored}/{table.length})")
    print(describe(table))
    return 0

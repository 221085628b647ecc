"""``qualoader calibrate``: fit a metric's difficulty prior, or train a task-guided head, on a corruption sweep.

For ``--metric task-guided`` it trains a head against the reference network and writes the checkpoint
(``--out``, loadable with ``create_metric("task-guided", checkpoint=...)``) plus its ``.json`` recipe.
For any other metric it writes a :class:`~qualoader.calibration.DifficultyCalibration` JSON
(load it with ``DifficultyCalibration.load`` and attach it with ``metric.calibration = ...``).
The images are a seeded random subset of real Fashion-MNIST (SOURCE, default fashion-mnist:train;
the full local copy, else the sample bundled with qualoader). Corruptions may be named by their
ImageNet-C names too (jpeg_compression, elastic_transform).
"""

from __future__ import annotations

import argparse
import inspect
import json
from pathlib import Path
from typing import Any

from qualoader.cli._errors import UserError, as_option, create_cli_metric, user_errors
from qualoader.cli._sources import parse_source

__all__ = ["add_parser", "run"]


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "calibrate",
        help="fit a metric's difficulty prior (or train the task-guided head) on a corruption sweep",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("source", nargs="?", default=None, metavar="SOURCE", help="fashion-mnist[:train|test] (default: fashion-mnist:train)")
    parser.add_argument("--metric", required=True, help="registered metric name, e.g. task-guided, bn-shift, sharpness")
    parser.add_argument("--reference", default="default", help="reference network: 'default', a torchvision model name, or a weights file (default: default)")
    parser.add_argument("--weights", default=None, help="local weights file for a torchvision --reference")
    parser.add_argument("--out", required=True, type=Path, help="output: head checkpoint (.pt) for task-guided, calibration JSON otherwise")
    parser.add_argument(
        "--severities", type=int, nargs="+", choices=range(6), metavar="0..5", default=[0, 1, 2, 3, 4, 5], help="severities of the sweep, 0 = clean (default: 0 1 2 3 4 5)"
    )
    parser.add_argument("--corruptions", nargs="+", default=None, help="corruption names, ours or ImageNet-C's (default: all; listed below)")
    parser.add_argument("--max-images", type=int, default=1000, help="number of Fashion-MNIST images in the sweep (default: 1000)")
    parser.add_argument("--split", choices=("train", "test"), default=None, help="Fashion-MNIST split, as in SOURCE (default: train)")
    parser.add_argument("--seed", type=int, default=0, help="seeds the image subset, corruptions and training (default: 0)")
    parser.add_argument("--method", choices=("isotonic", "logistic"), default="isotonic", help="calibration fit (default: isotonic)")
    parser.add_argument("--steps", type=int, default=3000, help="optimiser steps of the task-guided head (default: 3000)")
    parser.set_defaults(func=run)


def _check_arguments(args: argparse.Namespace) -> None:
    """Check the command line before any data is loaded; resolves ``args.split`` and ImageNet-C corruption names."""
    from qualoader._validation import check_positive_int
    from qualoader.corruptions import resolve_corruption

    with user_errors():
        check_positive_int(args.max_images, "--max-images")
        check_positive_int(args.seed, "--seed", allow_zero=True)
        check_positive_int(args.steps, "--steps")
        args.split = parse_source(args.source or "fashion-mnist", kinds={"fashion-mnist"}).resolved_split(args.split, default="train")
    if args.corruptions is not None:
        try:
            args.corruptions = list(dict.fromkeys(resolve_corruption(name) for name in args.corruptions))
        except ValueError as error:
            raise as_option(error, "name", "--corruptions") from error
    if not args.out.parent.exists():
        raise UserError(f"--out should be in an existing folder, but got --out={str(args.out)!r} whose folder does not exist")
    # Fails on an unknown name or missing weights now, not after the data is loaded.
    create_cli_metric(args.metric, no_reference=False)


def _load_reference(source: str, weights: str | None) -> Any:
    from qualoader.reference import default_reference, load_reference

    if source == "default" and weights is None:
        return default_reference()
    return load_reference(source, weights=weights)


def _build_metric(name: str, reference: Any, custom_reference: bool) -> Any:
    from qualoader.metrics import create_metric
    from qualoader.metrics.registry import _lookup

    cls = _lookup(name)
    accepts_reference = "reference" in inspect.signature(cls.__init__).parameters
    if custom_reference and accepts_reference:
        return create_metric(name, reference=reference)
    return create_metric(name)


def run(args: argparse.Namespace) -> int:
    import torch

    from qualoader.calibration import calibrate_metric
    from qualoader.datasets import load_fashion_mnist

    _check_arguments(args)
    images, labels = load_fashion_mnist(args.split)
    chosen = torch.randperm(images.shape[0], generator=torch.Generator().manual_seed(args.seed))[: args.max_images]
    images, labels = images[chosen], labels[chosen]
    try:
        reference = _load_reference(args.reference, args.weights)
    except (KeyError, ValueError, TypeError, FileNotFoundError) as error:  # an unknown reference name or a missing weights file
        raise as_option(error, "source", "--reference") from error
    if args.metric == "task-guided":
        from qualoader.metrics.aligned.task_guided_training import save_trained, train_task_guided

        trained = train_task_guided(reference, images, labels, args.corruptions, tuple(args.severities), seed=args.seed, steps=args.steps)
        trained.recipe.update({"split": args.split, "reference_source": args.reference, "max_images": args.max_images})
        checkpoint, recipe = save_trained(trained, args.out)
        summary = {"checkpoint": str(checkpoint), "recipe": str(recipe), "fit": trained.recipe["train_fit"]}
    else:
        metric = _build_metric(args.metric, reference, args.reference != "default" or args.weights is not None)
        generator = torch.Generator().manual_seed(args.seed)
        calibration = calibrate_metric(
            metric, images, labels, reference, args.corruptions, tuple(args.severities), generator, args.method, progress=not args.no_progress
        )
        calibration.info.update({"split": args.split, "seed": args.seed, "reference_source": args.reference})
        calibration.save(args.out)
        summary = {"calibration": str(args.out), "fit": calibration.info["fit"]}
    print(json.dumps(summary, indent=1))
    return 0

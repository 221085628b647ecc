"""Rebuild the shipped ``task-guided`` head: ``qualoader/assets/task_guided_default.{pt,json}`` and its calibration.

Run ``python tools/train_task_guided.py`` from the repository root. It trains on a corruption sweep
of the Fashion-MNIST TRAIN split (by default the 23 corruptions the shipped head was trained on, as its
recipe records: every family, ``extra`` included, without frost and snow, which came later) against the
embedded default reference network, with a fixed seed. The library
half lives in :mod:`qualoader.metrics.aligned.task_guided_training`; this script only picks the
data, the recipe and where the files go, and is never imported by the package.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

import torch

from qualoader.calibration import default_calibration_path
from qualoader.datasets import load_fashion_mnist
from qualoader.metrics.aligned.task_guided import INPUTS, default_task_guided_path
from qualoader.metrics.aligned.task_guided_training import save_trained, train_task_guided
from qualoader.reference import default_reference


def main(argv: Sequence[str] | None = None) -> int:
    """Regenerate the shipped default head from the Fashion-MNIST TRAIN split."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=default_task_guided_path(), help="checkpoint path (.pt; the recipe goes to .json)")
    parser.add_argument("--max-images", type=int, default=300, help="training images drawn from the TRAIN split")
    parser.add_argument("--inputs", choices=sorted(INPUTS), default="both", help="what the head reads (default: both)")
    parser.add_argument(
        "--corruptions", nargs="+", default=None,
        help="corruption names of the sweep (default: those of the shipped head's recipe, so that it is reproduced)",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument(
        "--hidden", default="linear",
        help="hidden widths, e.g. 64x64, or 'linear' (default: linear, which generalises best to unseen degradation types)",
    )
    parser.add_argument(
        "--calibration-out", type=Path, default=None,
        help="also write the calibration JSON here (default: the shipped calibration_task-guided.json when --out is the default)",
    )
    args = parser.parse_args(argv)
    images, labels = load_fashion_mnist("train", source="full")
    chosen = torch.randperm(images.shape[0], generator=torch.Generator().manual_seed(args.seed))[: args.max_images]
    hidden = () if args.hidden == "linear" else tuple(int(width) for width in args.hidden.split("x"))
    corruptions = args.corruptions or json.loads(default_task_guided_path().with_suffix(".json").read_text())["corruptions"]
    trained = train_task_guided(
        default_reference(), images[chosen], labels[chosen], corruptions,
        seed=args.seed, steps=args.steps, inputs=args.inputs, hidden=hidden,
    )
    trained.recipe["split"] = "train"
    trained.recipe["subset"] = f"torch.randperm(60000, generator=manual_seed({args.seed}))[:{args.max_images}]"
    paths = save_trained(trained, args.out)
    calibration_out = args.calibration_out
    if calibration_out is None and args.out == default_task_guided_path():
        calibration_out = default_calibration_path("task-guided")
    if calibration_out is not None:
        trained.calibration.save(calibration_out)
    print(json.dumps({"checkpoint": str(paths[0]), "recipe": str(paths[1]), "train_fit": trained.recipe["train_fit"]}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())

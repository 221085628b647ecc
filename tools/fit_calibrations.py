"""Fit the shipped difficulty calibrations of the aligned metrics against the embedded default reference.

Run ``python tools/fit_calibrations.py`` from the repository root to regenerate the shipped
calibrations of ``feature-distance`` and ``bn-shift`` (their files in
:data:`qualoader.calibration.SHIPPED_DEFAULTS`) from a seeded corruption sweep of the Fashion-MNIST
TRAIN split (the ``task-guided`` calibration is written with its head by ``python tools/train_task_guided.py``).
This script rebuilds shipped assets and is never imported by the package.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence

import torch

from qualoader.calibration import calibrate_metric, default_calibration_path

__all__ = ["DEFAULT_CALIBRATED", "main"]

#: Aligned metrics whose calibration this script fits (``zeroshot`` needs user weights, so none ships).
DEFAULT_CALIBRATED: tuple[str, ...] = ("bn-shift", "feature-distance")


def main(argv: Sequence[str] | None = None) -> int:
    """Fit and write the default calibrations; prints their in-sample fit."""
    from qualoader.datasets import load_fashion_mnist
    from qualoader.metrics import create_metric
    from qualoader.reference import default_reference

    parser = argparse.ArgumentParser(prog="python tools/fit_calibrations.py", description=__doc__.splitlines()[0])
    parser.add_argument("--metrics", nargs="+", default=list(DEFAULT_CALIBRATED))
    parser.add_argument("--max-images", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    images, labels = load_fashion_mnist("train")
    chosen = torch.randperm(images.shape[0], generator=torch.Generator().manual_seed(args.seed))[: args.max_images]
    reference = default_reference()
    report = {}
    for name in args.metrics:
        metric = create_metric(name)
        calibration = calibrate_metric(metric, images[chosen], labels[chosen], reference, generator=torch.Generator().manual_seed(args.seed))
        calibration.info.update({"split": "train", "seed": args.seed, "subset": f"torch.randperm(60000, generator=manual_seed({args.seed}))[:{args.max_images}]"})
        calibration.save(default_calibration_path(name))
        report[name] = calibration.info["fit"]
    print(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())

"""Fit the shipped difficulty calibrations of the aligned metrics against the embedded default reference.

Run ``python -m qualoader._fit_calibrations`` to regenerate ``qualoader/assets/calibration_<metric>.json``
for ``feature-distance`` and ``bn-shift`` from a seeded corruption sweep of the Fashion-MNIST TRAIN
split (the ``task-guided`` calibration is written with its head by ``python -m qualoader._train_task_guided``).
Load them with :func:`qualoader.calibration.default_calibration`.
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

    parser = argparse.ArgumentParser(prog="python -m qualoader._fit_calibrations", description=__doc__.splitlines()[0])
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
        metric.calibration = None  # fit from scratch, whatever the metric loads by default
        calibration = calibrate_metric(metric, images[chosen], labels[chosen], reference, generator=torch.Generator().manual_seed(args.seed))
        calibration.info.update({"split": "train", "seed": args.seed, "subset": f"torch.randperm(60000, generator=manual_seed({args.seed}))[:{args.max_images}]"})
        calibration.save(default_calibration_path(name))
        report[name] = calibration.info["fit"]
    print(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())

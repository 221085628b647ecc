"""Rebuild the shipped Fashion-MNIST quality profiles of the aligned metrics (calibration included).

Run ``python tools/fit_calibrations.py`` from the repository root (it needs the real Fashion-MNIST, e.g.
the Debian package in /usr/share/datasets/fashion-mnist). For ``bn-shift`` and ``feature-distance`` it
fits the difficulty calibration on a seeded corruption sweep of 1000 TRAIN images against the embedded
default reference (``confidence`` too, since it ships as a profile like the others), measures the fit on
1000 held-out TEST images, measures the reference's input domain on the whole TRAIN split, and writes
``qualoader/assets/profile_fashion-mnist_<metric>.json`` (the files named in
:data:`qualoader.calibration.SHIPPED_DEFAULTS`). ``--keep-calibration`` keeps the shipped calibration
and refreshes only the domain and the held-out figures. This script rebuilds shipped assets and is never
imported by the package.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from qualoader.calibration import (
    SHIPPED_SWEEP,
    DifficultyCalibration,
    calibrate_metric,
    calibration_report,
    corruption_sweep,
    default_calibration,
)
from qualoader.datasets import FASHION_MNIST_CLASSES, load_fashion_mnist
from qualoader.metrics import create_metric
from qualoader.profiles import (
    InputDomain,
    InputTransform,
    MetricSpec,
    QualityProfile,
    ReferenceSpec,
    WeightsFile,
    default_profile_path,
    save_profile,
)
from qualoader.reference import DEFAULT_CHECKPOINT, DEFAULT_RECORD, default_reference
from qualoader.stats import bootstrap_auroc

__all__ = ["DEFAULT_CALIBRATED", "PARAMS", "SWEEP", "fashion_mnist_profile", "held_out_fit", "main"]

#: Aligned metrics whose profile this script builds (``zeroshot`` needs user weights, so none ships),
#: with the constructor parameters the shipped calibration is fitted for.
PARAMS: dict[str, dict[str, Any]] = {
    "bn-shift": {"divergence": "kl", "variance_floor": 0.01, "layers": None},
    "feature-distance": {"layers": None, "distance": "cosine"},
    "confidence": {"measure": "probability"},
}
DEFAULT_CALIBRATED: tuple[str, ...] = tuple(PARAMS)
#: The sweep of the shipped calibrations (17 ImageNet-C corruptions, fixed so that this script reproduces them).
SWEEP: tuple[str, ...] = SHIPPED_SWEEP


def fashion_mnist_profile(
    metric_name: str, calibration: DifficultyCalibration | None, domain: InputDomain, provenance: dict[str, Any]
) -> QualityProfile:
    """The profile of ``metric_name`` on the embedded Fashion-MNIST reference network."""
    record = json.loads(DEFAULT_RECORD.read_text())
    reference = ReferenceSpec(
        source="embedded",
        name=record["name"],
        weights=WeightsFile(DEFAULT_CHECKPOINT, record["sha256"]),
        transform=InputTransform(tuple(record["input_size"]), record["in_channels"], tuple(record["mean"]), tuple(record["std"])),
        labels=FASHION_MNIST_CLASSES,
        domain=domain,
        feature_layer=record["feature_layer"],
    )
    return QualityProfile(
        f"fashion-mnist/{metric_name}", reference, MetricSpec(metric_name, PARAMS[metric_name]), calibration, None, provenance
    )


def held_out_fit(metric_name: str, calibration: DifficultyCalibration, max_images: int, seed: int, source: str = "full") -> dict[str, Any]:
    """The calibration's fit on a seeded sweep of TEST images, with the corruptions and severities it was fitted on."""
    images, labels = load_fashion_mnist("test", source=source)
    chosen = torch.randperm(images.shape[0], generator=torch.Generator().manual_seed(seed))[:max_images]
    sweep = corruption_sweep(
        create_metric(metric_name), images[chosen], labels[chosen], default_reference(),
        calibration.info.get("corruptions"), tuple(calibration.info.get("severities", (0, 1, 2, 3, 4, 5))),
        generator=torch.Generator().manual_seed(seed),
    )
    predicted = calibration(sweep.scores)
    # the interval weak_fit_reason reads (qualoader.calibration.strength), bootstrapped over the held-out rows
    interval = bootstrap_auroc(predicted.double().numpy(), sweep.errors.numpy() > 0.5, generator=torch.Generator().manual_seed(seed))
    return {
        "split": "test",
        "n_images": int(chosen.numel()),
        "seed": seed,
        "n_scores": int(sweep.scores.numel()),
        **calibration_report(predicted, sweep.errors),
        "auroc_ci": [round(float(interval.low), 6), round(float(interval.high), 6)],
    }


def main(argv: Sequence[str] | None = None) -> int:
    """Fit (or keep) the calibrations, measure domain and held-out fit, write the profiles; prints the figures."""
    parser = argparse.ArgumentParser(prog="python tools/fit_calibrations.py", description=__doc__.splitlines()[0])
    parser.add_argument("--metrics", nargs="+", default=list(DEFAULT_CALIBRATED), choices=list(DEFAULT_CALIBRATED))
    parser.add_argument("--max-images", type=int, default=1000, help="TRAIN images of the fitting sweep")
    parser.add_argument("--held-out-images", type=int, default=1000, help="TEST images of the held-out sweep")
    parser.add_argument("--seed", type=int, default=0, help="seeds the fitting subset and corruptions (the held-out sweep uses seed + 1)")
    parser.add_argument(
        "--keep-calibration", action="store_true", help="keep the shipped calibrations; refresh domain and held-out figures"
    )
    parser.add_argument("--out", type=Path, default=None, help="folder for the profiles (default: qualoader/assets)")
    # shipped assets are fitted on the full dataset; "auto" (the bundled sample when it is absent) is for trying the script
    parser.add_argument("--source", choices=("full", "auto", "sample"), default="full", help="Fashion-MNIST copy (default: full)")
    args = parser.parse_args(argv)
    train_images, train_labels = load_fashion_mnist("train", source=args.source)
    domain = InputDomain.measure(train_images.split(5000), channels=1, size=(28, 28))
    chosen = torch.randperm(train_images.shape[0], generator=torch.Generator().manual_seed(args.seed))[: args.max_images]
    report = {}
    for name in args.metrics:
        if args.keep_calibration:
            calibration = default_calibration(name)
            if calibration is None:
                parser.error(f"--keep-calibration should find a shipped calibration for {name}, but got none")
        else:
            calibration = calibrate_metric(
                create_metric(name),
                train_images[chosen],
                train_labels[chosen],
                default_reference(),
                SWEEP,
                generator=torch.Generator().manual_seed(args.seed),
            )
            calibration.info.update(
                {
                    "split": "train",
                    "seed": args.seed,
                    "subset": f"torch.randperm(60000, generator=manual_seed({args.seed}))[:{args.max_images}]",
                }
            )
        held_out = held_out_fit(name, calibration, args.held_out_images, args.seed + 1, args.source)
        provenance = {
            "data": "Fashion-MNIST (qualoader.datasets.load_fashion_mnist)",
            "split": calibration.info.get("split", "train"),
            "subset": calibration.info.get("subset"),
            "seed": calibration.info.get("seed", args.seed),
            "sweep": {"corruptions": calibration.info.get("corruptions"), "severities": calibration.info.get("severities")},
            "in_sample": calibration.info.get("fit"),
            "held_out": held_out,
            "domain": f"measured on the {train_images.shape[0]} TRAIN images (0.1%/99.9% quantiles of per-image mean and std)",
            "built_by": "python tools/fit_calibrations.py",
        }
        path = (args.out / default_profile_path(name).name) if args.out else default_profile_path(name)
        save_profile(fashion_mnist_profile(name, calibration, domain, provenance), path)
        report[name] = {"profile": str(path), "held_out": held_out}
    print(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())

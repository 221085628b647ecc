"""Held-out quality of the shipped difficulty priors on the Fashion-MNIST TEST split.

For every calibrated aligned metric (shipped calibration, embedded default reference), run a seeded
corruption sweep of TEST images (never seen by the fits, which use the TRAIN split) and report:

- ``auroc``: probability that an image the reference misclassifies gets a higher difficulty than
  one it classifies correctly; ``brier`` vs ``brier_base`` (predicting the sweep's error rate);
- ``monotone``: corruptions whose mean score moves monotonically from clean through severity 5.

Usage: ``python benchmarks/calibration_quality.py [--max-images 1000] [--seed 1]``.
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from qualoader.calibration import calibration_report, corruption_sweep, default_calibration
from qualoader.datasets import load_fashion_mnist
from qualoader.metrics import create_metric
from qualoader.reference import default_reference


def monotone_corruptions(
    scores: torch.Tensor, corruption: torch.Tensor, severity: torch.Tensor, names: tuple[str, ...], higher_is_better: bool
) -> list[str]:
    """Names whose mean score worsens at every severity step (clean = severity 0)."""
    clean = scores[severity == 0].mean()
    sign = 1.0 if higher_is_better else -1.0
    result = []
    for index, name in enumerate(names):
        levels = sorted(int(s) for s in severity[corruption == index].unique())
        means = torch.stack([clean] + [scores[(corruption == index) & (severity == s)].mean() for s in levels])
        steps = sign * means.diff()
        if bool((steps <= 0).all()) and float(steps.sum()) < 0:
            result.append(name)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--metrics", nargs="+", default=["task-guided", "bn-shift", "feature-distance"])
    parser.add_argument("--max-images", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(1)
    images, labels = load_fashion_mnist("test")
    chosen = torch.randperm(images.shape[0], generator=torch.Generator().manual_seed(args.seed))[: args.max_images]
    reference = default_reference()
    results = {}
    for name in args.metrics:
        metric = create_metric(name)
        calibration = metric.calibration or default_calibration(name)
        started = time.perf_counter()
        sweep = corruption_sweep(metric, images[chosen], labels[chosen], reference, generator=torch.Generator().manual_seed(args.seed))
        report = calibration_report(calibration(sweep.scores), sweep.errors) if calibration is not None else {}
        report["monotone"] = monotone_corruptions(sweep.scores, sweep.corruption, sweep.severity, sweep.names, metric.higher_is_better)
        report["monotone_count"] = f"{len(report['monotone'])}/{len(sweep.names)}"
        report["sweep_seconds"] = round(time.perf_counter() - started, 1)
        results[name] = report
        print(name, json.dumps(report), flush=True)
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()

"""``qualoader demo``: the main job on the embedded defaults, offline, in well under a minute.

Takes the first --max-images Fashion-MNIST test images (the full local copy, else the sample
bundled with qualoader), degrades five sixths of them with seeded ImageNet-C corruptions at
severities 1-5 (one sixth stays clean), scores every image with the shipped DNN-aligned metrics
(default: bn-shift and task-guided, both calibrated to the embedded reference network), and
checks the scores against the truth: the embedded reference network classifies every image, and
the demo prints its accuracy per difficulty quartile of each metric (easiest to hardest), the
AUROC of the difficulty for predicting its errors and the rank correlation of the score with the
severity. It writes demo.json (the summary) and scores.npz (per-image scores, difficulty,
condition and correctness) into --output (default: a new temporary folder) and prints where.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

from qualoader.cli._errors import UserError, check_outputs, create_cli_metric, output_errors, user_errors
from qualoader.cli._sources import parse_source

__all__ = ["DEMO_METRICS", "add_parser", "demo_summary", "run"]

#: The shipped no-reference aligned metrics that carry a calibration (a difficulty) out of the box.
DEMO_METRICS: tuple[str, ...] = ("bn-shift", "task-guided")
_SEVERITIES = 6  # image i gets severity i % 6: 0 (clean) to 5, so every level has the same share


def _data_folder() -> Path | None:
    """The full Fashion-MNIST copy's folder when there is one (the bundled sample lies inside the package)."""
    from qualoader.datasets import fashion_mnist_root, fashion_mnist_source

    return fashion_mnist_root() if fashion_mnist_source() == "full" else None


def _corruptions() -> tuple[str, ...]:
    """The corruptions the shipped calibrations were fitted on: the demo shows their difficulty prior where it was fitted."""
    # imported here, not at the top: the calibration package pulls in torch, which `qualoader --help` must not wait for
    from qualoader.calibration import SHIPPED_SWEEP

    return SHIPPED_SWEEP


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "demo",
        help="score the bundled Fashion-MNIST sample with the shipped aligned metrics and check them (offline, < 1 min)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "source", nargs="?", default="fashion-mnist:test", metavar="SOURCE", help="fashion-mnist[:train|test] (default: fashion-mnist:test)"
    )
    parser.add_argument(
        "--metric", action="append", default=None, help=f"no-reference metric; repeat for several (default: {' '.join(DEMO_METRICS)})"
    )
    parser.add_argument("--max-images", type=int, default=1800, help="images in the demo (default: 1800)")
    parser.add_argument("--output", type=Path, default=None, help="folder for demo.json and scores.npz (default: a new temporary folder)")
    parser.add_argument("--batch-size", type=int, default=256, help="images per metric call (default: 256)")
    parser.add_argument("--device", default="cpu", help="torch device (default: cpu)")
    parser.add_argument("--seed", type=int, default=0, help="seeds the corruptions (default: 0)")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    parser.set_defaults(func=run)


def _degrade(images: Any, seed: int) -> tuple[Any, Any, Any]:
    """Corrupt images :math:`(N, 1, 28, 28)` uint8 -> float :math:`(N, 1, 28, 28)` in [0, 1], corruption index and severity :math:`(N,)`."""
    import torch

    from qualoader.corruptions import corrupt

    corruptions = _corruptions()
    generator = torch.Generator().manual_seed(seed)
    count = images.shape[0]
    severity = torch.arange(count) % _SEVERITIES
    corruption = torch.randint(len(corruptions), (count,), generator=generator)
    corruption[severity == 0] = -1
    degraded = images.float() / 255
    # One call per (corruption, severity) group: the corruptions are batched, not per image.
    for index, name in enumerate(corruptions):
        for level in range(1, _SEVERITIES):
            rows = torch.nonzero((corruption == index) & (severity == level)).flatten()
            if rows.numel():
                degraded[rows] = corrupt(degraded[rows], name, level, generator=generator)
    return degraded, corruption, severity


def demo_summary(scores: Any, difficulty: Any, correct: Any, severity: Any, higher_is_better: bool) -> dict[str, Any]:
    """Check one metric's scores against the reference network's correctness.

    Args:
        scores: the metric's scores :math:`(N,)`.
        difficulty: its calibrated expected error :math:`(N,)` in [0, 1], or ``None`` without a calibration.
        correct: whether the reference network classified each image right :math:`(N,)` bool.
        severity: corruption severity of each image :math:`(N,)`, 0 = clean.
        higher_is_better: the metric's direction (used to rank images when there is no difficulty).

    Returns:
        ``quartiles`` (easiest first: images, mean predicted error, observed accuracy), ``auroc``
        (difficulty, or the oriented score, predicting an error), ``spearman_severity`` (the same
        hardness vs the corruption severity: positive when the metric sees the damage) and score quantiles.
    """
    import numpy as np

    from qualoader.stats import auroc, rankdata, spearman

    scores = np.asarray(scores, dtype=np.float64)
    correct = np.asarray(correct, dtype=bool)
    # Hardness: the calibrated expected error, else the score oriented so that larger = worse quality.
    hardness = np.asarray(difficulty, dtype=np.float64) if difficulty is not None else (-scores if higher_is_better else scores)
    # Quartiles of rank (ties split by position), so every quartile has a quarter of the images even with tied priors.
    order = np.argsort(rankdata(hardness), kind="stable")
    quartiles = []
    for k, rows in enumerate(np.array_split(order, 4), start=1):
        quartiles.append(
            {
                "quartile": f"Q{k}",
                "images": int(rows.size),
                "predicted_error": float(hardness[rows].mean()) if difficulty is not None else None,
                "accuracy": float(correct[rows].mean()),
            }
        )
    return {
        "score_quantiles": {f"q{int(q * 100):02d}": float(np.quantile(scores, q)) for q in (0.05, 0.25, 0.5, 0.75, 0.95)},
        "mean_predicted_error": float(hardness.mean()) if difficulty is not None else None,
        "quartiles": quartiles,
        "auroc": float(auroc(hardness, ~correct)),
        "spearman_severity": float(spearman(hardness, np.asarray(severity, dtype=np.float64))),
    }


def _write_atomic(path: Path, write: Any) -> None:
    from qualoader._atomic import atomic_writer

    with atomic_writer(path) as handle:
        write(handle)


def run(args: argparse.Namespace) -> int:
    import time

    import numpy as np
    import torch
    from tqdm.auto import tqdm

    from qualoader._validation import check_positive_int
    from qualoader.datasets import FASHION_MNIST_SIZES, fashion_mnist_source, load_fashion_mnist
    from qualoader.reference import default_reference

    start = time.perf_counter()
    names = list(dict.fromkeys(args.metric or DEMO_METRICS))
    with user_errors():
        for option in ("max_images", "batch_size"):
            check_positive_int(getattr(args, option), f"--{option.replace('_', '-')}")
        check_positive_int(args.seed, "--seed", allow_zero=True)
        split = parse_source(args.source, kinds={"fashion-mnist"}).resolved_split(None)
        if args.output is not None and args.output.exists() and not args.output.is_dir():
            raise UserError(f"--output should be a folder, but got --output={str(args.output)!r}, which is a file")
        if args.output is not None:
            check_outputs(args.output, "--output", [("SOURCE", _data_folder())])
    metrics = {name: create_cli_metric(name, device=args.device) for name in names}
    copy = fashion_mnist_source()
    images, labels = load_fashion_mnist(split, source=copy)  # source chosen explicitly: the line below says which
    images, labels = images[: args.max_images], labels[: args.max_images]
    origin = "the full local copy" if copy == "full" else "the sample bundled with qualoader (no full copy found)"
    print(
        f"data: the first {len(labels)} of the {FASHION_MNIST_SIZES[split]} Fashion-MNIST {split} images, from {origin}; Zalando Research, "
        "MIT licence"
    )

    degraded, corruption, severity = _degrade(images, args.seed)
    print(
        f"degraded: {int((severity > 0).sum())} images with {len(_corruptions())} ImageNet-C corruptions at severities 1-5, "
        f"{int((severity == 0).sum())} clean"
    )
    device = torch.device(args.device)
    reference = default_reference().to(device)
    values: dict[str, list[Any]] = {name: [] for name in metrics}
    predictions = []
    batches = range(0, len(labels), args.batch_size)
    with torch.no_grad():
        for begin in tqdm(batches, disable=args.no_progress, unit="batch", desc=f"demo: {', '.join(metrics)} + reference network"):
            batch = degraded[begin : begin + args.batch_size].to(device)
            predictions.append(reference(batch).argmax(1).cpu())
            for name, metric in metrics.items():
                values[name].append(metric(batch).double().cpu())
    correct = (torch.cat(predictions) == labels).numpy()
    print(
        f"reference network ({reference.name}): accuracy {correct.mean():.3f} on these images ({correct[severity.numpy() == 0].mean():.3f} "
        "on the clean ones)\n"
    )

    summary: dict[str, Any] = {
        "data": {"split": split, "copy": copy, "images": len(labels), "seed": args.seed, "corruptions": list(_corruptions())},
        "reference": {"name": reference.name, "accuracy": float(correct.mean())},
        "metrics": {},
    }
    arrays: dict[str, np.ndarray] = {
        "labels": labels.numpy(),
        "correct": correct,
        "severity": severity.numpy(),
        "corruption": corruption.numpy(),
    }
    for name, metric in metrics.items():
        scores = torch.cat(values[name])
        difficulty = metric.difficulty(scores.float()).double() if metric.calibration is not None else None
        result = demo_summary(
            scores.numpy(), None if difficulty is None else difficulty.numpy(), correct, severity.numpy(), metric.higher_is_better
        )
        result["higher_is_better"] = bool(metric.higher_is_better)
        summary["metrics"][name] = result
        arrays[f"score:{name}"] = scores.numpy()
        if difficulty is not None:
            arrays[f"difficulty:{name}"] = difficulty.numpy()
        _print_metric(name, result)

    output = args.output if args.output is not None else Path(tempfile.mkdtemp(prefix="qualoader-demo-"))
    summary["seconds"] = round(time.perf_counter() - start, 2)
    created = not output.exists()
    try:
        with output_errors("--output", output):
            output.mkdir(parents=True, exist_ok=True)
            _write_atomic(output / "demo.json", lambda handle: handle.write(json.dumps(summary, indent=1).encode()))
            _write_atomic(output / "scores.npz", lambda handle: np.savez_compressed(handle, **arrays))
    except BaseException:
        if created:  # a folder this run made holds nothing worth keeping without both files
            shutil.rmtree(output, ignore_errors=True)
        raise
    print(f"wrote {output / 'demo.json'} and {output / 'scores.npz'} ({summary['seconds']:.1f} s)")
    return 0


def _print_metric(name: str, result: dict[str, Any]) -> None:
    direction = "higher is better" if result["higher_is_better"] else "lower is better"
    quantiles = result["score_quantiles"]
    print(f"{name} ({direction}): median score {quantiles['q50']:.4g} (5%-95%: {quantiles['q05']:.4g} .. {quantiles['q95']:.4g})")
    ranked_by = "difficulty (calibrated expected error)" if result["mean_predicted_error"] is not None else "score"
    print(f"  reference accuracy per quartile of {ranked_by}, easiest first:")
    for quartile in result["quartiles"]:
        predicted = "" if quartile["predicted_error"] is None else f"   predicted error {quartile['predicted_error']:.3f}"
        print(f"    {quartile['quartile']}: {quartile['images']:5d} images   accuracy {quartile['accuracy']:.3f}{predicted}")
    print(
        f"  AUROC of the {ranked_by.split(' ')[0]} for the network's errors {result['auroc']:.3f}; Spearman with the severity "
        f"{result['spearman_severity']:+.3f}\n"
    )

"""Command line of the alignment benchmark (``python -m benchmarks.alignment --help``)."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from benchmarks.alignment.models import TASK_MODELS

__all__ = ["DEFAULT_LOFO", "DEFAULT_OUT", "build_parser", "parse_args"]

_BENCHMARKS = Path(__file__).resolve().parents[1]
DEFAULT_OUT = _BENCHMARKS / "results" / "alignment"
#: The committed leave-one-family-out results (``python -m benchmarks.generalisation``), shown beside the in-family figures.
DEFAULT_LOFO = _BENCHMARKS / "generalisation_results.json"

_DESCRIPTION = "Alignment benchmark: does image quality predict the accuracy of DNNs the metric never saw?"
_EPILOG = """\
examples (from the repository root):
    python -m benchmarks.alignment --quick            # < 5 min, writes benchmarks/results/alignment
    python -m benchmarks.alignment --out DIR          # full mode, < 40 min on 2 CPU cores
    python -m benchmarks.alignment --from-results benchmarks/alignment_results/results.json
                                                      # re-render results.md of a finished run (no scoring)
"""


def build_parser() -> argparse.ArgumentParser:
    """The argument parser; mode-dependent defaults are ``None`` here and filled by :func:`parse_args`."""
    parser = argparse.ArgumentParser(description=_DESCRIPTION, epilog=_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small run (< 5 min): fewer images, severities 1 3 5, 1 epoch")
    parser.add_argument(
        "--out", type=Path, default=None, help=f"output folder (default: {DEFAULT_OUT}; with --from-results, the results' folder)"
    )
    parser.add_argument("--images", type=int, default=None, help="test images per condition (default: 2000, quick: 1000)")
    parser.add_argument("--train-images", type=int, default=None, help="TRAIN images for the task models (default: 60000, quick: 20000)")
    parser.add_argument("--epochs", type=int, default=None, help="training epochs of the task models (default: 2, quick: 1)")
    parser.add_argument("--severities", type=int, nargs="+", default=None, help="severities (default: 1 2 3 4 5, quick: 1 3 5)")
    parser.add_argument("--corruptions", nargs="+", default=None, help="corruption names (default: the whole suite)")
    parser.add_argument("--with-extra", action="store_true", help="also the 'extra' family (degradations outside ImageNet-C)")
    parser.add_argument("--metrics", nargs="+", default=None, help="only these metrics (default: every candidate)")
    parser.add_argument("--models", nargs="+", default=list(TASK_MODELS), choices=list(TASK_MODELS), help="task models (default: all)")
    parser.add_argument("--n-boot", type=int, default=None, help="bootstrap resamples for the correlations (default: 1000, quick: 300)")
    parser.add_argument(
        "--n-boot-auroc", type=int, default=None, help="bootstrap resamples for the pooled AUROC (default: 200, quick: 100)"
    )
    parser.add_argument("--iqa-size", type=int, default=64, help="side to which images are upsampled for pyiqa metrics (default: 64)")
    parser.add_argument(
        "--large-size", type=int, default=176, help="upsampled side for metrics that reject --iqa-size, e.g. MS-SSIM (default: 176)"
    )
    parser.add_argument(
        "--metric-seconds",
        type=float,
        default=None,
        help="scoring budget per metric; slower metrics score fewer images (default: 80, quick: 8)",
    )
    parser.add_argument("--min-images", type=int, default=100, help="images per condition of a metric over budget (default: 100)")
    parser.add_argument("--batch-size", type=int, default=500, help="scoring batch size (default: 500)")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads (default: 2)")
    parser.add_argument("--seed", type=int, default=0, help="seeds image subset, corruptions, training and bootstrap (default: 0)")
    parser.add_argument(
        "--lofo-results",
        type=Path,
        default=DEFAULT_LOFO,
        help=f"leave-one-family-out results shown beside the in-family figures (default: {DEFAULT_LOFO})",
    )
    parser.add_argument(
        "--from-results",
        type=Path,
        default=None,
        metavar="RESULTS_JSON",
        help="only re-render results.md from this results.json of an earlier run (no data, training or scoring)",
    )
    return parser


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Parse the command line and fill the mode-dependent defaults."""
    args = build_parser().parse_args(argv)
    defaults = {
        "images": (1000, 2000), "train_images": (20000, 60000), "epochs": (1, 2), "severities": ([1, 3, 5], [1, 2, 3, 4, 5]),
        "n_boot": (300, 1000), "n_boot_auroc": (100, 200), "metric_seconds": (8.0, 80.0),
    }
    for key, (quick, full) in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, quick if args.quick else full)
    if args.out is None:
        args.out = args.from_results.parent if args.from_results is not None else DEFAULT_OUT
    if args.from_results is not None and not args.from_results.is_file():
        raise SystemExit(f"--from-results should name the results.json of an earlier run, but got {args.from_results} (not a file)")
    for key in (
        "images",
        "train_images",
        "epochs",
        "n_boot",
        "n_boot_auroc",
        "iqa_size",
        "large_size",
        "metric_seconds",
        "min_images",
        "batch_size",
        "threads",
    ):
        if getattr(args, key) <= 0:
            raise SystemExit(f"--{key.replace('_', '-')} should be a positive int, but got {getattr(args, key)}")
    if any(not 1 <= s <= 5 for s in args.severities):
        raise SystemExit(f"--severities should be ints in 1..5, but got {args.severities}")
    # capped at the split sizes (10k TEST, 60k TRAIN) rather than refused, so "--images 99999" means "all"
    args.images = min(args.images, 10_000)
    args.train_images = min(args.train_images, 60_000)
    return args

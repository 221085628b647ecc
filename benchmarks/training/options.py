"""Command line of the training benchmark (``python -m benchmarks.training --help``)."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from benchmarks.training.arms import ARMS
from benchmarks.training.models import ARCHITECTURES
from benchmarks.training.scores import DEFAULT_SCORES

__all__ = ["DEFAULT_OUT", "PUBLISHED_DIR", "PUBLISHED_REPORT", "build_parser", "parse_args"]

_BENCHMARKS = Path(__file__).resolve().parents[1]
DEFAULT_OUT = _BENCHMARKS / "results" / "training"
#: Where ``--publish`` writes the committed report and its results and plots.
PUBLISHED_REPORT = _BENCHMARKS / "TRAINING_RESULTS.md"
PUBLISHED_DIR = _BENCHMARKS / "training_results"

_DESCRIPTION = "Training benchmark: does quality-aware sampling make a model better or cheaper to train than RandomSampler?"
_EPILOG = """\
examples (from the repository root):
    python -m benchmarks.training --quick        # < 5 min, writes benchmarks/results/training-quick
    python -m benchmarks.training                # the committed protocol (about an hour on 2 CPU cores)
    python -m benchmarks.training --seeds 3 --epochs 1 2 --train-size 30000

Runs resume: each finished run is a JSON file under OUT/runs, so re-running the same command
skips them and only re-renders the report.
"""


def build_parser() -> argparse.ArgumentParser:
    """The argument parser; mode-dependent defaults are ``None`` here and filled by :func:`parse_args`."""
    parser = argparse.ArgumentParser(description=_DESCRIPTION, epilog=_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--quick", action="store_true", help="small run (< 5 min): 4000 TRAIN images, budgets 1 2, 2 seeds, 1 setting per knob"
    )
    parser.add_argument("--out", type=Path, default=None, help=f"output folder (default: {DEFAULT_OUT}, quick: its -quick sibling)")
    parser.add_argument(
        "--train-size", type=int, default=None, help="TRAIN images used, validation included (default: 60000, quick: 4000)"
    )
    parser.add_argument("--val-size", type=int, default=None, help="of which validation images (default: 5000, quick: 1000)")
    parser.add_argument("--test-size", type=int, default=None, help="TEST images per test set (default: 10000, quick: 1000)")
    parser.add_argument("--degraded-share", type=float, default=0.5, help="share of TRAIN images degraded (default: 0.5)")
    parser.add_argument(
        "--epochs", type=float, nargs="+", default=None, help="budgets in epochs' worth of steps (default: 0.5 1 2, quick: 1 2)"
    )
    parser.add_argument("--seeds", type=int, default=None, help="training seeds per cell (default: 5, quick: 2)")
    parser.add_argument(
        "--selection-seeds", type=int, default=None, help="of which seeds used to choose the settings (default: 1)"
    )
    parser.add_argument("--archs", nargs="+", default=list(ARCHITECTURES), choices=list(ARCHITECTURES), help="task architectures")
    parser.add_argument("--arms", nargs="+", default=list(ARMS), choices=list(ARMS), help="arms (random is always run)")
    parser.add_argument("--scores", nargs="+", default=list(DEFAULT_SCORES), help=f"candidate scores (default: {' '.join(DEFAULT_SCORES)})")
    parser.add_argument("--batch-size", type=int, default=128, help="images per optimiser step (default: 128)")
    parser.add_argument("--eval-every", type=float, default=0.5, help="validation cadence in epochs (default: 0.5)")
    parser.add_argument("--workers", type=int, default=None, help="training processes in parallel (default: 2, quick: 1)")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads per process (default: 1)")
    parser.add_argument("--seed", type=int, default=0, help="seeds the data (subsets, degradations); training seeds are 0..seeds-1")
    parser.add_argument(
        "--publish", action="store_true",
        help=f"also write the committed report: {PUBLISHED_REPORT.name} and {PUBLISHED_DIR.name}/ (results.json, plots) in benchmarks/",
    )
    return parser


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Parse the command line and fill the mode-dependent defaults."""
    args = build_parser().parse_args(argv)
    defaults = {
        "train_size": (4000, 60000), "val_size": (1000, 5000), "test_size": (1000, 10000), "epochs": ([1.0, 2.0], [0.5, 1.0, 2.0]),
        "seeds": (2, 5), "selection_seeds": (1, 1), "workers": (1, 2),
    }
    for key, (quick, full) in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, quick if args.quick else full)
    if args.out is None:
        args.out = DEFAULT_OUT.with_name("training-quick") if args.quick else DEFAULT_OUT
    for key in ("train_size", "val_size", "test_size", "seeds", "selection_seeds", "batch_size", "workers", "threads"):
        if getattr(args, key) <= 0:
            raise SystemExit(f"--{key.replace('_', '-')} should be a positive int, but got {getattr(args, key)}")
    args.train_size = min(args.train_size, 60_000)
    args.test_size = min(args.test_size, 10_000)
    if args.val_size >= args.train_size:
        raise SystemExit(f"--val-size should be below --train-size ({args.train_size}), but got {args.val_size}")
    if not 0.0 <= args.degraded_share <= 1.0:
        raise SystemExit(f"--degraded-share should be in [0, 1], but got {args.degraded_share}")
    if any(not 0 < budget <= 50 for budget in args.epochs):
        raise SystemExit(f"--epochs should be budgets in (0, 50], but got {args.epochs}")
    if args.eval_every <= 0:
        raise SystemExit(f"--eval-every should be positive, but got {args.eval_every}")
    if args.selection_seeds > args.seeds:
        raise SystemExit(f"--selection-seeds should be at most --seeds ({args.seeds}), but got {args.selection_seeds}")
    from qualoader.metrics import list_metrics

    unknown = sorted(set(args.scores) - set(list_metrics()))
    if unknown:
        raise SystemExit(f"--scores should name metrics of {list_metrics()}, but got unknown {unknown}")
    args.epochs = sorted(set(args.epochs))
    if "random" not in args.arms:
        args.arms = ["random", *args.arms]
    return args

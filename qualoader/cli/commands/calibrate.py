"""``qualoader calibrate``: build quality profiles, or fit a metric's difficulty prior, on a corruption sweep.

**Quality profiles** (with ``--reference`` or ``--profile``): the reference network (``embedded``,
a torchvision name, ``timm:<name>``, a TorchScript file or a ``package.module:function`` entry point)
with its local ``--weights``, or the network of an existing ``--profile`` to refit, is run on a
corruption sweep of the labelled ``--data`` (``fashion-mnist[:split]``, an ImageFolder whose folder
names are labels, or webdataset shards whose ``--label-key`` member holds the label). ``--metric``
may name several aligned metrics (``confidence,task-guided,bn-shift``, or the suite ``aligned``):
ONE sweep, with one forward pass of the network per batch, serves all of them, and one profile per
metric is written (``--out DIR`` gives ``DIR/<metric>.json``; ``--out 'p-{metric}.json'`` a pattern;
a single metric may also be written to a file path). ``--sweep-rows`` bounds the sweep's size: a small
dataset gets every corruption and severity per image, a large one a seeded, evenly covered sample.

Each difficulty is fitted on the ``--data`` images and measured on images held out from the fit
(``--holdout``): by default Fashion-MNIST's TEST split for ``fashion-mnist:train`` data (the split a
network is trained on is no test of it), else a seeded 30% of ``--data``; any SOURCE or a fraction may
be named. The profile's provenance records which, with the held-out AUROC of the difficulty for the
network's errors and its bootstrap 95% CI, Brier against the base rate and error rates. A fit whose
AUROC does not clear chance by a margin is an error unless ``--allow-weak``; labels outside the
network's outputs, an error rate of 0 or 1 and undefined statistics stop it too; nothing is written
then. For ``task-guided`` the head is trained on the fit images only and written beside its profile as
``<profile>.head.pt``, which the profile names with its sha256. ``--metric-param METRIC.KEY=VALUE``
sets a metric's parameter (``bn-shift.layers=a,b``; ``task-guided.hidden=[16]``). Use a profile with
``--profile PATH`` on precompute, tag, score and report, or ``create_metric(name, profile=PATH)``.

**Without them** (the embedded network on Fashion-MNIST, one metric): for ``--metric task-guided`` it
trains a head and writes the checkpoint (``--out``, loadable with ``create_metric("task-guided",
checkpoint=...)``) plus its ``.json`` recipe; for any other metric it writes a
:class:`~qualoader.calibration.DifficultyCalibration` JSON. The images are a seeded random subset of
real Fashion-MNIST (the full local copy, else the sample bundled with qualoader). Corruptions may be
named by their ImageNet-C names too (jpeg_compression, elastic_transform).
"""

from __future__ import annotations

import argparse
import inspect
import json
from pathlib import Path
from typing import Any

from qualoader.cli._errors import UserError, as_option, check_outputs, cli_inputs, create_cli_metric, user_errors
from qualoader.cli._profiles import add_trust_argument
from qualoader.cli._sources import SOURCE_KINDS, parse_source

__all__ = ["add_parser", "run"]


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "calibrate",
        help="fit a metric's difficulty prior (or train the task-guided head) on a corruption sweep",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("source", nargs="*", default=[], metavar="SOURCE", help="the labelled data, as --data")
    parser.add_argument(
        "--data",
        nargs="+",
        default=None,
        metavar="SOURCE",
        help="fashion-mnist[:train|test], an ImageFolder (labels from folder names) or webdataset shards (default: fashion-mnist:train)",
    )
    parser.add_argument(
        "--metric",
        default=None,
        help="metric(s) to calibrate: a name, 'a,b,c' or a suite (aligned); several need --reference (with --profile: the profile's)",
    )
    parser.add_argument(
        "--reference",
        default=None,
        help="build a profile for this network: embedded, a torchvision name, timm:<name>, a TorchScript file or package.module:function",
    )
    parser.add_argument("--weights", default=None, help="local state_dict file of --reference (embedded: the shipped one)")
    parser.add_argument(
        "--profile", type=Path, default=None, help="refit an existing profile (its network, transform, labels and metric) on --data"
    )
    parser.add_argument(
        "--labels", default=None, help="the network's class names, one per output: comma-separated, or a text file with one per line"
    )
    parser.add_argument(
        "--num-classes", type=int, default=None, metavar="N",
        help="the network's number of outputs, when its head is not the ImageNet one (labels: --labels, else the data's N class names, "
        "else 0..N-1)",
    )
    add_trust_argument(parser)
    parser.add_argument("--label-key", default="cls", help="shard member that holds the label (default: cls)")
    parser.add_argument(
        "--input-size",
        type=int,
        nargs="+",
        default=None,
        metavar="PX",
        help="network input size: H [W] (default: the network's convention)",
    )
    parser.add_argument(
        "--in-channels", type=int, choices=(1, 3), default=None, help="network input channels (default: the network's convention)"
    )
    parser.add_argument("--mean", type=float, nargs="+", default=None, help="input normalisation mean, 1 or C values")
    parser.add_argument("--std", type=float, nargs="+", default=None, help="input normalisation std, 1 or C values")
    parser.add_argument(
        "--holdout",
        default=None,
        metavar="SOURCE|FRACTION",
        help="images the fit is measured on, never fitted on: a SOURCE (fashion-mnist:test, a folder, shards) or a fraction of --data "
        "(default: fashion-mnist:test for fashion-mnist:train data, else 0.3)",
    )
    parser.add_argument(
        "--holdout-images", type=int, default=None, help="held-out images read from a --holdout SOURCE (default: 3/7 of --max-images)"
    )
    parser.add_argument("--allow-weak", action="store_true", help="write a profile whose held-out AUROC does not clear chance")
    parser.add_argument(
        "--sweep-rows",
        type=int,
        default=4000,
        help="most rows (images x conditions) in the sweep, which sets its cost: past it each batch gets a seeded, evenly covering "
        "sample of the conditions instead of all of them (default: 4000, e.g. 1000 images x clean + 3 corrupted)",
    )
    parser.add_argument(
        "--metric-param",
        action="append",
        default=[],
        metavar="METRIC.KEY=VALUE",
        help="a metric parameter, e.g. bn-shift.layers=a,b or confidence.measure=entropy (JSON values accepted); repeatable",
    )
    parser.add_argument("--threads", type=int, default=None, help="CPU threads torch may use (default: torch's choice)")
    parser.add_argument("--name", default=None, help="the profile's name (default: <network>/<metric>)")
    parser.add_argument(
        "--out",
        required=True,
        type=Path,
        help="output (its folder is created): the profile JSON, a folder for one profile per metric, or a pattern with {metric}; "
        "without --reference/--profile the head checkpoint (.pt) for task-guided or the calibration JSON",
    )
    parser.add_argument(
        "--severities",
        type=int,
        nargs="+",
        choices=range(6),
        metavar="0..5",
        default=[0, 1, 2, 3, 4, 5],
        help="severities of the sweep, 0 = clean (default: 0 1 2 3 4 5)",
    )
    parser.add_argument(
        "--corruptions", nargs="+", default=None, help="corruption names, ours or ImageNet-C's (default: all; listed below)"
    )
    parser.add_argument("--max-images", type=int, default=1000, help="number of Fashion-MNIST images in the sweep (default: 1000)")
    parser.add_argument("--split", choices=("train", "test"), default=None, help="Fashion-MNIST split, as in SOURCE (default: train)")
    parser.add_argument("--seed", type=int, default=0, help="seeds the image subset, corruptions and training (default: 0)")
    parser.add_argument("--method", choices=("isotonic", "logistic"), default="isotonic", help="calibration fit (default: isotonic)")
    parser.add_argument("--steps", type=int, default=3000, help="optimiser steps of the task-guided head (default: 3000)")
    parser.set_defaults(func=run)


def _check_arguments(args: argparse.Namespace, profile_mode: bool) -> None:
    """Check the command line before any data is loaded; resolves ``args.source``, ``args.split`` and ImageNet-C corruption names."""
    from qualoader._validation import check_positive_int
    from qualoader.corruptions import resolve_corruption

    if args.data is not None and args.source:
        raise UserError(f"SOURCE should be given once, but got SOURCE={' '.join(args.source)!r} and --data={' '.join(args.data)!r}")
    items = args.data or args.source or ["fashion-mnist"]
    with user_errors():
        check_positive_int(args.max_images, "--max-images")
        check_positive_int(args.seed, "--seed", allow_zero=True)
        check_positive_int(args.steps, "--steps")
        args.source = parse_source(items, kinds=SOURCE_KINDS if profile_mode else {"fashion-mnist"}, name="--data")
        args.split = args.source.resolved_split(args.split, default="train")
    if args.corruptions is not None:
        try:
            args.corruptions = list(dict.fromkeys(resolve_corruption(name) for name in args.corruptions))
        except ValueError as error:
            raise as_option(error, "name", "--corruptions") from error
    if args.threads is not None:
        with user_errors():
            check_positive_int(args.threads, "--threads")
        import torch

        torch.set_num_threads(args.threads)
    if profile_mode:
        from qualoader.cli.commands._calibrate_profiles import check_profile_arguments

        check_profile_arguments(args)
        return
    for option in ("weights", "labels", "num_classes", "input_size", "in_channels", "mean", "std", "name", "holdout", "holdout_images"):
        if getattr(args, option) is not None:
            flag = "--" + option.replace("_", "-")
            raise UserError(
                f"{flag} should come with --reference (it describes the network of a profile), but got {flag} without --reference or "
                "--profile"
            )
    if args.metric_param or args.allow_weak:
        flag = "--metric-param" if args.metric_param else "--allow-weak"
        raise UserError(f"{flag} should come with --reference or --profile (it shapes a profile), but got {flag} without them")
    if args.metric is None:
        raise UserError("--metric should name the metric to calibrate, but got no --metric")
    if "," in args.metric or args.metric == "aligned":
        raise UserError(
            f"--metric should name one metric without --reference (several are calibrated into profiles), but got "
            f"--metric={args.metric!r}; add --reference embedded to build one profile per metric from one sweep"
        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
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


def _run_legacy(args: argparse.Namespace) -> int:
    """The embedded network on Fashion-MNIST: a task-guided head, or a calibration JSON."""
    import torch

    from qualoader.calibration import calibrate_metric
    from qualoader.datasets import load_fashion_mnist

    images, labels = load_fashion_mnist(args.split)
    chosen = torch.randperm(images.shape[0], generator=torch.Generator().manual_seed(args.seed))[: args.max_images]
    images, labels = images[chosen], labels[chosen]
    reference = _load_reference("default", None)
    if args.metric == "task-guided":
        from qualoader.metrics.aligned.task_guided_training import save_trained, train_task_guided

        trained = train_task_guided(
            reference,
            images,
            labels,
            args.corruptions,
            tuple(args.severities),
            seed=args.seed,
            steps=args.steps,
            progress=not args.no_progress,
        )
        trained.recipe.update({"split": args.split, "reference_source": "default", "max_images": args.max_images})
        checkpoint, recipe = save_trained(trained, args.out)
        summary = {"checkpoint": str(checkpoint), "recipe": str(recipe), "fit": trained.recipe["train_fit"]}
    else:
        metric = _build_metric(args.metric, reference, False)
        generator = torch.Generator().manual_seed(args.seed)
        calibration = calibrate_metric(
            metric,
            images,
            labels,
            reference,
            args.corruptions,
            tuple(args.severities),
            generator,
            args.method,
            progress=not args.no_progress,
        )
        calibration.info.update({"split": args.split, "seed": args.seed, "reference_source": "default"})
        calibration.save(args.out)
        summary = {"calibration": str(args.out), "fit": calibration.info["fit"]}
    print(json.dumps(summary, indent=1))
    return 0


def run(args: argparse.Namespace) -> int:
    profile_mode = args.reference is not None or args.profile is not None
    _check_arguments(args, profile_mode)
    # --out (a file, or the folder of one profile per metric) may not be, hold or lie inside an input
    inputs = {"weights": "--weights", "source": "--data", "profile": "--profile", "reference": "--reference", "holdout_source": "--holdout"}
    check_outputs(args.out, "--out", cli_inputs(args, inputs))
    if not profile_mode:
        return _run_legacy(args)
    from qualoader.cli.commands._calibrate_profiles import run_profiles

    return run_profiles(args)

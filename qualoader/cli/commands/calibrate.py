"""``qualoader calibrate``: build a quality profile, or fit a metric's difficulty prior, on a corruption sweep.

**A quality profile** (with ``--reference`` or ``--profile``): the reference network (``embedded``,
a torchvision name, ``timm:<name>``, a TorchScript file or a ``package.module:function`` entry point)
with its local ``--weights``, or the network of an existing ``--profile`` to refit, is run on a
corruption sweep of the labelled ``--data`` (``fashion-mnist[:split]``, an ImageFolder whose folder
names are labels, or webdataset shards whose ``--label-key`` member holds the label). The metric's
difficulty is fitted on one part of the images and measured on a seeded held-out part (AUROC of the
difficulty for the network's errors, Brier against the base rate, error rate); the figures go into the
profile's provenance. Labels outside the network's outputs, an error rate of 0 or 1 and undefined
statistics stop it with an error; nothing is written then. For ``--metric task-guided`` the head is
trained on the fit part only (so the held-out figures measure it on images it never saw) and written
beside the profile as ``<out>.head.pt``, which the profile names with its sha256. Use the profile with
``--profile PATH`` on precompute, tag, score and report, or ``create_metric(name, profile=PATH)``.

**Without them** (the embedded network on Fashion-MNIST): for ``--metric task-guided`` it trains a
head and writes the checkpoint (``--out``, loadable with ``create_metric("task-guided", checkpoint=...)``)
plus its ``.json`` recipe; for any other metric it writes a
:class:`~qualoader.calibration.DifficultyCalibration` JSON. The images are a seeded random subset of
real Fashion-MNIST (the full local copy, else the sample bundled with qualoader). Corruptions may be
named by their ImageNet-C names too (jpeg_compression, elastic_transform).
"""

from __future__ import annotations

import argparse
import hashlib
import inspect
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

from qualoader.cli._errors import UserError, as_option, check_outputs, cli_inputs, create_cli_metric, user_errors
from qualoader.cli._profiles import add_trust_argument, labels_for_num_classes
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
        "--metric", default=None, help="registered metric name, e.g. bn-shift, task-guided, sharpness (with --profile: the profile's)"
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
    parser.add_argument("--holdout", type=float, default=0.3, help="fraction of the images held out to measure the fit (default: 0.3)")
    parser.add_argument("--name", default=None, help="the profile's name (default: <network>/<metric>)")
    parser.add_argument(
        "--out",
        required=True,
        type=Path,
        help="output: the profile JSON with --reference/--profile; else the head checkpoint (.pt) for task-guided or the calibration JSON",
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
    if not args.out.parent.exists():
        raise UserError(f"--out should be in an existing folder, but got --out={str(args.out)!r} whose folder does not exist")
    if profile_mode:
        _check_profile_arguments(args)
        return
    for option in ("weights", "labels", "num_classes", "input_size", "in_channels", "mean", "std", "name"):
        if getattr(args, option) is not None:
            flag = "--" + option.replace("_", "-")
            raise UserError(
                f"{flag} should come with --reference (it describes the network of a profile), but got {flag} without --reference or "
                "--profile"
            )
    if args.metric is None:
        raise UserError("--metric should name the metric to calibrate, but got no --metric")
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


# -- building a profile ------------------------------------------------------------------------------
def _check_profile_arguments(args: argparse.Namespace) -> None:
    if args.profile is not None and args.reference is not None:
        raise UserError(
            f"--reference should be left out with --profile (the profile names its network), but got --reference={args.reference!r} and "
            f"--profile={str(args.profile)!r}"
        )
    if args.profile is not None and args.weights is not None:
        raise UserError(f"--weights should be left out with --profile (the profile names its weights), but got --weights={args.weights!r}")
    if not 0.0 < args.holdout < 1.0:
        raise UserError(f"--holdout should be a fraction in (0, 1), but got --holdout={args.holdout!r}")
    if args.input_size is not None and len(args.input_size) not in (1, 2):
        raise UserError(f"--input-size should be H or H W, but got --input-size={args.input_size}")
    if args.out.exists() and args.out.is_dir():
        raise UserError(f"--out should be a file path for the profile JSON, but got --out={str(args.out)!r}, which is a folder")


def _read_labels(text: str) -> tuple[str, ...]:
    path = Path(text)
    if path.is_file():
        names = tuple(line.strip() for line in path.read_text().splitlines() if line.strip())
    else:
        names = tuple(name.strip() for name in text.split(","))
    if len(names) < 2 or any(not name for name in names):
        raise UserError(
            f"--labels should name at least 2 classes (comma-separated, or a file with one per line), but got --labels={text!r}"
        )
    if len(set(names)) != len(names):
        raise UserError(f"--labels should name each class once, but got --labels={text!r} with repeats")
    return names


def _reference_kind(reference: str) -> tuple[str, str | None]:
    """``(source, name)`` of a ``--reference`` value (see ``qualoader.profiles.SOURCES``)."""
    if reference in ("embedded", "default"):
        return "embedded", "fashion-mnist-cnn"
    if reference.startswith("timm:"):
        return "timm", reference[len("timm:") :]
    if Path(reference).is_file():
        return "torchscript", None
    if ":" in reference:
        return "entry_point", reference
    if reference.endswith((".pt", ".pth", ".ts", ".jit")):
        raise UserError(f"--reference should be an existing TorchScript file, but got --reference={reference!r}, which does not exist")
    return "torchvision", reference


def _default_convention(
    source: str, name: str | None
) -> tuple[tuple[int, int] | None, int | None, tuple[float, ...], tuple[float, ...], tuple[str, ...] | None]:
    """``(input_size, in_channels, mean, std, labels)`` a network of this kind uses unless told otherwise."""
    imagenet = ((224, 224), 3, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
    if source == "torchvision":
        from torchvision import models

        with user_errors():
            available = models.list_models(module=models)
            if name not in available:
                import difflib

                close = difflib.get_close_matches(str(name), available, n=3)
                raise UserError(
                    "--reference should be embedded, a torchvision classification model, timm:<name>, a TorchScript file or "
                    f"module:function, but got --reference={name!r}"
                    + (f"; did you mean {', '.join(map(repr, close))}?" if close else "")
                )
        categories = models.get_model_weights(name).DEFAULT.meta.get("categories")  # type: ignore[arg-type]
        return (*imagenet, tuple(categories) if categories else None)
    if source == "timm":
        import timm

        if not timm.is_model(name):
            raise UserError(
                f"--reference should be timm:<a timm model name>, but got --reference={'timm:' + str(name)!r}; see timm.list_models()"
            )
        cfg = dict(timm.create_model(name, pretrained=False).pretrained_cfg)
        _, height, width = cfg.get("input_size", (3, 224, 224))
        return (height, width), 3, tuple(cfg.get("mean", imagenet[2])), tuple(cfg.get("std", imagenet[3])), None
    # a TorchScript file or an entry point carries no convention: size and channels must be given
    return None, None, (0.0,), (1.0,), None


def _reference_spec(args: argparse.Namespace) -> Any:
    """The :class:`~qualoader.profiles.ReferenceSpec` the command line describes (domain measured later)."""
    from qualoader.cli._labelled import source_class_names
    from qualoader.profiles import InputDomain, InputTransform, ReferenceSpec, WeightsFile, default_profile_path, load_profile

    if args.profile is not None:
        with user_errors():
            return load_profile(args.profile, trust=args.trust_profile).reference
    source, name = _reference_kind(args.reference)
    if source == "embedded":
        shipped = load_profile(default_profile_path("bn-shift")).reference
        size, channels, mean, std, labels = (
            shipped.transform.input_size,
            shipped.transform.in_channels,
            shipped.transform.mean,
            shipped.transform.std,
            shipped.labels,
        )
        weights = shipped.weights if args.weights is None else None
    else:
        size, channels, mean, std, labels = _default_convention(source, name)
        weights = None
    if source == "torchscript":
        if args.weights is not None:
            raise UserError(
                f"--weights should be left out for a TorchScript --reference (the archive holds them), but got --weights={args.weights!r}"
            )
        weights_path = args.reference
    elif weights is None:
        if args.weights is None:
            raise UserError(
                f"--weights should be a local state_dict file for --reference={args.reference!r} (qualoader never downloads), but got no "
                "--weights"
            )
        weights_path = args.weights
    with user_errors():
        if weights is None:
            if not Path(weights_path).is_file():
                raise UserError(f"--weights should be an existing file, but got --weights={weights_path!r}, which does not exist")
            weights = WeightsFile.of(weights_path)
    if args.input_size is not None:
        size = (args.input_size[0], args.input_size[-1])
    channels = args.in_channels or channels
    if size is None or channels is None:
        kind = "a TorchScript" if source == "torchscript" else "an entry-point"
        raise UserError(
            f"--input-size and --in-channels should be given for {kind} --reference (it has no input convention), but got "
            f"--input-size={args.input_size} and --in-channels={args.in_channels}"
        )
    mean = tuple(args.mean) if args.mean is not None else mean
    std = tuple(args.std) if args.std is not None else std
    if args.num_classes is not None:
        labels = labels_for_num_classes(args.num_classes, None if args.labels is None else _read_labels(args.labels), args.source)
    elif args.labels is not None:
        labels = _read_labels(args.labels)
    elif labels is None:
        labels = source_class_names(args.source)
        if labels is None:
            raise UserError(
                f"--labels should name the network's outputs for --reference={args.reference!r} and shard data, but got no --labels"
            )
    with user_errors():
        transform = InputTransform(size, channels, mean, std)
        # a placeholder domain until the calibration images are measured (the spec needs one)
        domain = InputDomain(
            channels=channels,
            size=size,
            mean=transform.mean if len(transform.mean) == channels else transform.mean * channels,
            std=transform.std if len(transform.std) == channels else transform.std * channels,
        )
        return ReferenceSpec(source=source, name=name, weights=weights, transform=transform, labels=labels, domain=domain)


#: What a task-guided profile's provenance records of its head's training (the rest of the recipe is the profile's own).
_HEAD_RECIPE = ("inputs", "target", "feature_names", "hidden", "steps", "n_images", "n_rows", "final_bce", "train_fit")


def _head_path(out: Path) -> Path:
    """Where a task-guided profile's head goes: beside the profile, ``profile.json`` -> ``profile.head.pt``."""
    return out.with_suffix(".head.pt").resolve()


def _train_head(args: argparse.Namespace, network: Any, images: Any, labels: Any, params: dict[str, Any], scratch: Path) -> tuple[Any, Any]:
    """A task-guided metric whose head is trained on the fit part of the images (the part ``fit_held_out`` fits the calibration on)."""
    from qualoader.calibration.heldout import held_out_split
    from qualoader.metrics import create_metric
    from qualoader.metrics.aligned.task_guided_training import save_head_checkpoint, train_task_guided

    fit_index, _ = held_out_split(int(images.shape[0]), args.holdout, args.seed)
    trained = train_task_guided(
        network, images[fit_index], labels[fit_index], args.corruptions, tuple(args.severities),
        seed=args.seed, steps=args.steps, progress=not args.no_progress,
    )
    checkpoint = save_head_checkpoint(trained, scratch / "fitting.pt")
    return create_metric("task-guided", checkpoint=checkpoint, reference=network, **params), trained


def _run_profile(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from qualoader._atomic import write_bytes_atomic
    from qualoader.calibration.heldout import fit_held_out
    from qualoader.cli._labelled import load_labelled
    from qualoader.metrics import create_metric
    from qualoader.metrics.aligned._reference_metric import ReferenceMetric, check_layers_visible
    from qualoader.metrics.registry import _lookup
    from qualoader.profiles import InputDomain, MetricSpec, QualityProfile, WeightsFile, build_reference, save_profile

    spec = _reference_spec(args)
    refit = None
    if args.profile is not None:
        from qualoader.profiles import load_profile

        with user_errors():
            refit = load_profile(args.profile, trust=args.trust_profile)
        if args.metric is not None and args.metric != refit.metric.name:
            raise UserError(
                f"--metric should be the profile's metric {refit.metric.name!r} (or left out), but got --metric={args.metric!r}"
            )
        args.metric = refit.metric.name
    if args.metric is None:
        raise UserError("--metric should name the aligned metric of the profile, e.g. bn-shift, but got no --metric")
    with user_errors():
        try:
            cls = _lookup(args.metric)
        except KeyError as error:
            raise as_option(error, "name", "--metric") from error
    if not issubclass(cls, ReferenceMetric):
        raise UserError(
            "--metric should be an aligned metric with a reference network (bn-shift, feature-distance, confidence, task-guided) to "
            f"build a profile, but got --metric={args.metric!r}"
        )
    params = dict(refit.metric.params) if refit is not None else {}
    with user_errors():
        network = build_reference(spec)  # checks the weights' hash, their keys and shapes, and one output per label
        # a network the metric cannot read stops here, before the data is loaded
        if args.metric == "task-guided":
            check_layers_visible(network, args.metric)  # its head is built after the data, from the network's response
            metric = None
        else:
            metric = create_metric(args.metric, reference=network, **params)
    data = load_labelled(args.source, spec.labels, spec.transform.input_size, spec.transform.in_channels,
                         split=args.split, label_key=args.label_key, max_images=args.max_images, seed=args.seed)
    trained = None
    with user_errors(), tempfile.TemporaryDirectory(prefix="qualoader-calibrate-") as scratch:
        if metric is None:
            metric, trained = _train_head(args, network, data.images, data.labels, params, Path(scratch))
        calibration, figures = fit_held_out(
            metric, data.images, data.labels, network, args.corruptions, tuple(args.severities),
            holdout=args.holdout, seed=args.seed, method=args.method, progress=not args.no_progress,
        )
        domain = InputDomain.measure(data.images, spec.transform.in_channels, spec.transform.input_size, source_sizes=data.sizes)
        head = None
        if trained is not None:  # the head as shipped with the profile: carrying the calibration measured here
            from qualoader.metrics.aligned.task_guided_training import save_head_checkpoint

            head_bytes = save_head_checkpoint(trained, Path(scratch) / "head.pt", calibration).read_bytes()
            head = WeightsFile(_head_path(args.out), hashlib.sha256(head_bytes).hexdigest())
    data_text = data.description if args.source.kind != "fashion-mnist" else f"fashion-mnist:{args.split}"
    provenance = {
        "data": data_text,
        "split": {"holdout": args.holdout, "seed": args.seed, "n_fit": figures["n_fit"], "n_held_out": figures["n_held_out"]},
        "sweep": {"corruptions": calibration.info["corruptions"], "severities": calibration.info["severities"]},
        "seed": args.seed,
        "method": args.method,
        "held_out": {**figures["held_out"], "clean_error_rate": figures["clean_error_rate"]},
        "fit": figures["fit"],
    }
    if refit is not None:
        provenance["refit_of"] = refit.identity
    if trained is not None:
        provenance["head"] = {key: trained.recipe[key] for key in _HEAD_RECIPE}
    name = args.name or (refit.name if refit is not None else f"{spec.name or Path(args.reference).stem}/{args.metric}")
    profile = QualityProfile(name, replace(spec, domain=domain), MetricSpec(args.metric, params), calibration, head, provenance)
    with user_errors():
        # strict JSON before the atomic writes: a NaN anywhere stops here, and no file appears
        json.dumps(profile.to_dict(), allow_nan=False)
        if head is not None:
            write_bytes_atomic(head.path, head_bytes)
        path = save_profile(profile, args.out)
    summary = {"profile": str(path), "identity": profile.identity, "held_out": provenance["held_out"], "fit": provenance["fit"]}
    if head is not None:
        summary["head"] = str(head.path)
    print(json.dumps(summary, indent=1))
    if provenance["held_out"]["auroc"] <= 0.5:  # written (the figures are honest), but the user should know
        print(
            f"qualoader calibrate: warning: the held-out AUROC is {provenance['held_out']['auroc']:.3f} (<= 0.5): this difficulty does not "
            "rank "
            "the network's errors; check the network's accuracy, --labels and the input transform, or use more images",
            file=sys.stderr,
        )
    return 0


def run(args: argparse.Namespace) -> int:
    profile_mode = args.reference is not None or args.profile is not None
    _check_arguments(args, profile_mode)
    check_outputs(
        args.out,
        "--out",
        cli_inputs(args, {"weights": "--weights", "source": "--data", "profile": "--profile", "reference": "--reference"}),
    )
    return _run_profile(args) if profile_mode else _run_legacy(args)

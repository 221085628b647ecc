"""``qualoader calibrate --reference/--profile``: one sweep, one profile per metric, measured on held-out images.

The command line is turned into: the metrics and their parameters (``--metric``, ``--metric-param``),
where each profile goes (``--out``), the held-out images (``--holdout``), and the sweep's size
(``--sweep-rows``); then :func:`qualoader.calibration.joint.fit_joint` runs the one sweep, and the
profiles are written only when every fit is defined and, unless ``--allow-weak``, strong enough.
"""

from __future__ import annotations

import argparse
import hashlib
import inspect
import json
import math
import sys
import tempfile
from pathlib import Path
from typing import Any

from qualoader.cli._errors import UserError, as_option, user_errors

__all__ = ["check_profile_arguments", "output_paths", "parse_metric_params", "run_profiles"]

#: What a task-guided profile's provenance records of its head's training (the rest of the recipe is the profile's own).
_HEAD_RECIPE = ("inputs", "target", "feature_names", "hidden", "steps", "n_images", "n_rows", "final_bce", "train_fit")
#: Constructor arguments ``--metric-param`` may not set: the profile decides them (its network, its head file).
_RESERVED = frozenset({"reference", "weights", "check_values", "checkpoint", "strict", "convention"})
#: The default held-out fraction of --data when no other data is held out (30%, as the fit/held-out split always was).
_HOLDOUT_FRACTION = 0.3


def check_profile_arguments(args: argparse.Namespace) -> None:
    """Check the profile options before anything is built; resolves ``args.metrics``, ``args.params`` and ``args.outputs``."""
    from qualoader._validation import check_positive_int

    if args.profile is not None and args.reference is not None:
        raise UserError(
            f"--reference should be left out with --profile (the profile names its network), but got --reference={args.reference!r} and "
            f"--profile={str(args.profile)!r}"
        )
    if args.profile is not None and args.weights is not None:
        raise UserError(f"--weights should be left out with --profile (the profile names its weights), but got --weights={args.weights!r}")
    if args.input_size is not None and len(args.input_size) not in (1, 2):
        raise UserError(f"--input-size should be H or H W, but got --input-size={args.input_size}")
    with user_errors():
        check_positive_int(args.sweep_rows, "--sweep-rows")
        if args.holdout_images is not None:
            check_positive_int(args.holdout_images, "--holdout-images")
    args.holdout_fraction, args.holdout_source = _parse_holdout(args)
    args.metrics = _metric_names(args.metric) if args.metric is not None else None
    args.params = parse_metric_params(args.metric_param, args.metrics)
    if args.metrics is not None:
        args.outputs = output_paths(args.out, args.metrics)


def _parse_holdout(args: argparse.Namespace) -> tuple[float | None, Any]:
    """``(fraction, None)`` or ``(None, Source)`` of ``--holdout`` (default: Fashion-MNIST TEST for its TRAIN split, else 0.3)."""
    from qualoader.cli._sources import SOURCE_KINDS, parse_source

    text = args.holdout
    if text is None:
        if args.source.kind == "fashion-mnist" and args.split == "train":
            text = "fashion-mnist:test"
        else:
            return _HOLDOUT_FRACTION, None
    try:
        fraction = float(text)
    except ValueError:
        fraction = None
    if fraction is not None:
        if not 0.0 < fraction < 1.0:
            raise UserError(f"--holdout should be a fraction in (0, 1) or a SOURCE, but got --holdout={text!r}")
        if args.holdout_images is not None:
            raise UserError(f"--holdout-images should come with a --holdout SOURCE, but got --holdout={text!r}, a fraction of --data")
        return fraction, None
    with user_errors():
        source = parse_source([text], kinds=SOURCE_KINDS, name="--holdout")
    if source.kind == args.source.kind and source.text == args.source.text and source.kind != "fashion-mnist":
        raise UserError(f"--holdout should be other data than --data (or a fraction of it), but got --holdout={text!r} for both")
    if source.kind == "fashion-mnist" and args.source.kind == "fashion-mnist" and source.resolved_split(None, "test") == args.split:
        raise UserError(
            f"--holdout should be another split than --data's {args.split!r} (or a fraction of it), but got --holdout={text!r}"
        )
    return None, source


def _metric_names(text: str) -> list[str]:
    """The distinct aligned metrics ``--metric`` names (``a,b,c`` or a suite)."""
    from qualoader.engine import parse_metric_spec
    from qualoader.metrics.aligned._reference_metric import ReferenceMetric
    from qualoader.metrics.registry import _lookup

    with user_errors():
        try:
            names = parse_metric_spec(text)
            classes = {name: _lookup(name) for name in names}
        except (KeyError, ValueError) as error:
            raise as_option(error, "spec", "--metric") from error
    foreign = [name for name, cls in classes.items() if not issubclass(cls, ReferenceMetric)]
    if foreign:
        raise UserError(
            "--metric should be an aligned metric with a reference network (bn-shift, feature-distance, confidence, task-guided) to "
            f"build a profile, but got --metric={text!r}" + (f", which names {', '.join(foreign)}" if text not in foreign else "")
        )
    return names


def _parse_value(key: str, text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        # layer lists read naturally as a,b,c; any other bare word is a string
        return [part.strip() for part in text.split(",")] if "," in text or key == "layers" else text


def parse_metric_params(items: list[str], metrics: list[str] | None) -> dict[str, dict[str, Any]]:
    """``{metric: {key: value}}`` of ``--metric-param METRIC.KEY=VALUE`` items, each checked against the metric's parameters."""
    from qualoader.calibration.joint import HeadSettings
    from qualoader.metrics.registry import _lookup

    params: dict[str, dict[str, Any]] = {}
    for item in items:
        name, dot, rest = item.partition(".")
        key, equals, value = rest.partition("=")
        if not (dot and equals and name and key):
            raise UserError(f"--metric-param should be METRIC.KEY=VALUE (e.g. bn-shift.layers=a,b), but got --metric-param={item!r}")
        if metrics is not None and name not in metrics:
            raise UserError(f"--metric-param should set a parameter of a --metric ({', '.join(metrics)}), but got --metric-param={item!r}")
        if name == "task-guided":
            allowed = set(HeadSettings._fields)
        else:
            with user_errors():
                try:
                    signature = inspect.signature(_lookup(name).__init__)
                except KeyError as error:
                    raise as_option(error, "name", "--metric-param") from error
            allowed = {p for p, spec in signature.parameters.items() if p != "self" and spec.kind is not spec.VAR_KEYWORD} - _RESERVED
        if key not in allowed:
            raise UserError(
                f"--metric-param should name a parameter of {name} ({', '.join(sorted(allowed)) or 'none'}), but got "
                f"--metric-param={item!r}"
            )
        params.setdefault(name, {})[key] = _parse_value(key, value)
    return params


def output_paths(out: Path, metrics: list[str]) -> dict[str, Path]:
    """Where each metric's profile goes: a ``{metric}`` pattern, ``DIR/<metric>.json``, or ``out`` itself for one metric."""
    if "{metric}" in str(out):
        paths = {name: Path(str(out).replace("{metric}", name)) for name in metrics}
    elif len(metrics) == 1 and not out.is_dir() and out.suffix:
        paths = {metrics[0]: out}
    else:
        if out.exists() and not out.is_dir():
            raise UserError(f"--out should be a folder for one profile per metric, but got --out={str(out)!r}, an existing file")
        paths = {name: out / f"{name}.json" for name in metrics}
    for name, path in paths.items():
        if path.is_dir():
            raise UserError(f"--out should give a file path for the {name} profile, but got {str(path)!r}, which is a folder")
    return paths


def _head_path(out: Path) -> Path:
    """Where a task-guided profile's head goes: beside the profile, ``profile.json`` -> ``profile.head.pt``."""
    return out.with_suffix(".head.pt").resolve()


def _report(phase: str, message: str) -> None:
    print(f"qualoader calibrate: {phase}: {message}", file=sys.stderr, flush=True)


def _build_metrics(args: argparse.Namespace, network: Any) -> dict[str, Any]:
    """The metrics other than task-guided, built on ``network`` (a network they cannot read fails here, before the data)."""
    import warnings

    from qualoader.metrics import create_metric
    from qualoader.metrics.aligned._reference_metric import check_layers_visible

    metrics = {}
    for name in args.metrics:
        if name == "task-guided":
            check_layers_visible(network, name)  # its head is built after the data, from the network's response
            continue
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            metrics[name] = create_metric(name, reference=network, **args.params.get(name, {}))
        for warning in caught:  # said once, on the command's error stream, in its own words
            print(f"qualoader calibrate: warning: {warning.message}", file=sys.stderr)
    return metrics


def _load_data(args: argparse.Namespace, spec: Any) -> tuple[Any, tuple[Any, Any], tuple[Any, Any], dict[str, Any]]:
    """``(data, fit (images, labels), held-out (images, labels), provenance of the split)``."""
    from qualoader.calibration.heldout import held_out_split
    from qualoader.cli._labelled import load_labelled

    def load(source: Any, split: str, max_images: int) -> Any:
        return load_labelled(source, spec.labels, spec.transform.input_size, spec.transform.in_channels,
                             split=split, label_key=args.label_key, max_images=max_images, seed=args.seed)

    data = load(args.source, args.split, args.max_images)
    if args.holdout_source is None:
        fit_index, held_index = held_out_split(int(data.images.shape[0]), args.holdout_fraction, args.seed)
        fit = (data.images[fit_index], data.labels[fit_index])
        held = (data.images[held_index], data.labels[held_index])
        split = {"holdout": args.holdout_fraction, "seed": args.seed, "n_fit": int(fit_index.numel())}
        split["n_held_out"] = int(held_index.numel())
        return data, fit, held, split
    count = args.holdout_images or max(1, math.ceil(args.max_images * 3 / 7))  # 70/30, as the fraction split
    source = args.holdout_source
    held_data = load(source, source.resolved_split(None, default="test"), count)
    held = (held_data.images, held_data.labels)
    split = {"holdout": held_data.description, "seed": args.seed, "n_fit": int(data.images.shape[0]), "n_held_out": int(held[0].shape[0])}
    return data, (data.images, data.labels), held, split


def _conditions_per_batch(args: argparse.Namespace, n_images: int) -> int | None:
    """How many corrupted conditions each batch gets so the sweep stays within ``--sweep-rows`` (``None``: all of them)."""
    from qualoader.corruptions import list_corruptions

    corrupted = len(args.corruptions or list_corruptions()) * len([s for s in set(args.severities) if s > 0])
    per_image = args.sweep_rows // max(1, n_images) - (1 if 0 in args.severities else 0)
    return None if per_image >= corrupted else max(1, per_image)


def run_profiles(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from qualoader._atomic import write_bytes_atomic
    from qualoader.calibration.joint import HeadSettings, fit_joint
    from qualoader.calibration.strength import weak_fit_reason
    from qualoader.cli.commands._calibrate_reference import reference_spec
    from qualoader.profiles import InputDomain, MetricSpec, QualityProfile, WeightsFile, build_reference, save_profile

    spec = reference_spec(args)
    refit = None
    if args.profile is not None:
        from qualoader.profiles import load_profile

        with user_errors():
            refit = load_profile(args.profile, trust=args.trust_profile)
        if args.metrics is not None and args.metrics != [refit.metric.name]:
            raise UserError(
                f"--metric should be the profile's metric {refit.metric.name!r} (or left out), but got --metric={args.metric!r}"
            )
        args.metrics = [refit.metric.name]
        args.params = {refit.metric.name: {**refit.metric.params, **args.params.get(refit.metric.name, {})}}
        args.outputs = output_paths(args.out, args.metrics)
    if args.metrics is None:
        raise UserError("--metric should name the aligned metric(s) of the profile, e.g. confidence,bn-shift, but got no --metric")
    with user_errors():
        network = build_reference(spec)  # checks the weights' hash, their keys and shapes, and one output per label
        metrics = _build_metrics(args, network)
        head = None
        if "task-guided" in args.metrics:
            head = HeadSettings(steps=args.steps, **args.params.get("task-guided", {}))
    data, fit_data, held_data, split = _load_data(args, spec)
    n_images = int(fit_data[0].shape[0] + held_data[0].shape[0])
    per_batch = _conditions_per_batch(args, n_images)
    with user_errors():
        results = fit_joint(
            network, metrics, fit_data, held_data, args.corruptions, tuple(args.severities), head=head, seed=args.seed,
            method=args.method, conditions_per_batch=per_batch, report=None if args.no_progress else _report,
        )
    weak = {name: reason for name, result in results.items() if (reason := weak_fit_reason(result.figures["held_out"]))}
    if weak and not args.allow_weak:
        shown = "; ".join(f"{name}: {reason}" for name, reason in weak.items())
        raise UserError(
            f"the held-out fit should rank the network's errors better than chance, but got {shown}; nothing was written: use more "
            "images or another metric, or --allow-weak to write it marked weak"
        )
    domain = InputDomain.measure(fit_data[0], spec.transform.in_channels, spec.transform.input_size, source_sizes=data.sizes)
    data_text = data.description if args.source.kind != "fashion-mnist" else f"fashion-mnist:{args.split}"
    profiles, heads = {}, {}
    with user_errors(), tempfile.TemporaryDirectory(prefix="qualoader-calibrate-") as scratch:
        for name in args.metrics:
            result = results[name]
            out = args.outputs[name]
            params = dict(args.params.get(name, {})) if name != "task-guided" else {}
            metric = metrics.get(name)
            skipped = getattr(metric, "skipped_layers", None)
            if skipped:  # the kept layers, named: the profile scores exactly what was calibrated, and says what was left out
                params["layers"] = list(metric.layers)
            provenance = _provenance(args, data_text, split, result, per_batch, refit, weak.get(name))
            if skipped:
                provenance["skipped_layers"] = {layer: list(size) for layer, size in skipped.items()}
            head_file = None
            if result.trained is not None:
                from qualoader.metrics.aligned.task_guided_training import save_head_checkpoint

                provenance["head"] = {key: result.trained.recipe[key] for key in _HEAD_RECIPE}
                head_bytes = save_head_checkpoint(result.trained, Path(scratch) / f"{name}.head.pt", result.calibration).read_bytes()
                head_file = WeightsFile(_head_path(out), hashlib.sha256(head_bytes).hexdigest())
                heads[name] = head_bytes
            default_name = f"{spec.name or Path(str(args.reference)).stem}/{name}"
            profile_name = args.name or (refit.name if refit is not None else default_name)
            if args.name and len(args.metrics) > 1:
                profile_name = f"{args.name}/{name}"
            profiles[name] = QualityProfile(profile_name, replace(spec, domain=domain), MetricSpec(name, params), result.calibration,
                                            head_file, provenance)
            # strict JSON before any write: a NaN anywhere stops here, and no file appears
            json.dumps(profiles[name].to_dict(), allow_nan=False)
        summary = {}
        for name, profile in profiles.items():
            out = args.outputs[name]
            out.parent.mkdir(parents=True, exist_ok=True)
            if name in heads:
                write_bytes_atomic(profile.head.path, heads[name])
            path = save_profile(profile, out)
            summary[name] = {"profile": str(path), "identity": profile.identity, "held_out": profile.provenance["held_out"],
                             "fit": profile.provenance["fit"]}
            if name in heads:
                summary[name]["head"] = str(profile.head.path)
    print(json.dumps(summary[args.metrics[0]] if len(args.metrics) == 1 else summary, indent=1))
    for name, reason in weak.items():
        print(f"qualoader calibrate: warning: the {name} profile is weak ({reason}); it was written because of --allow-weak",
              file=sys.stderr)
    return 0


def _provenance(
    args: argparse.Namespace, data_text: str, split: dict[str, Any], result: Any, per_batch: int | None, refit: Any, weak: str | None
) -> dict[str, Any]:
    figures = result.figures
    provenance: dict[str, Any] = {
        "data": data_text,
        "split": split,
        "sweep": {
            "corruptions": result.calibration.info["corruptions"],
            "severities": result.calibration.info["severities"],
            "conditions_per_batch": per_batch,
            "sweep_rows": args.sweep_rows,
        },
        "seed": args.seed,
        "method": args.method,
        "held_out": {**figures["held_out"], "clean_error_rate": figures["clean_error_rate"]},
        "fit": figures["fit"],
    }
    if per_batch is None:
        del provenance["sweep"]["conditions_per_batch"]
    if refit is not None:
        provenance["refit_of"] = refit.identity
    if weak is not None:
        provenance["weak"] = weak
    return provenance

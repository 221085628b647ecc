"""The network of a ``qualoader calibrate`` profile as the command line describes it: ``--reference``, ``--weights``,
``--labels`` and the input convention (size, channels, mean/std), checked before any data is loaded.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from qualoader.cli._errors import UserError, user_errors

__all__ = ["read_labels", "reference_kind", "reference_spec"]


def read_labels(text: str) -> tuple[str, ...]:
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


def reference_kind(reference: str) -> tuple[str, str | None]:
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


def reference_spec(args: argparse.Namespace) -> Any:
    """The :class:`~qualoader.profiles.ReferenceSpec` the command line describes (domain measured later)."""
    from qualoader.cli._labelled import source_class_names
    from qualoader.profiles import InputDomain, InputTransform, ReferenceSpec, WeightsFile, default_profile_path, load_profile

    if args.profile is not None:
        with user_errors():
            return load_profile(args.profile, trust=args.trust_profile).reference
    source, name = reference_kind(args.reference)
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
        from qualoader.cli._profiles import labels_for_num_classes

        labels = labels_for_num_classes(args.num_classes, None if args.labels is None else read_labels(args.labels), args.source)
    elif args.labels is not None:
        labels = read_labels(args.labels)
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

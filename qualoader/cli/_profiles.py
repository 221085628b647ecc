"""``--profile PATH`` and ``--strict`` of the scoring commands: metrics defined by quality profiles beside the ``--metric`` names.

A profile (``qualoader calibrate --reference ...``) defines an aligned metric completely (reference
network, transform, parameters, calibration), so ``--profile`` can stand in for ``--metric``. A
``--metric NAME`` that a given profile defines is taken from the profile, not built twice.

An aligned metric warns once (:class:`~qualoader.profiles.DomainWarning`) when images fall far
outside its reference network's input domain; ``--strict`` builds the aligned metrics with
``strict=True``, so such images stop the command with a :class:`~qualoader.profiles.DomainError`,
which the commands report as a one-line user error (exit code 2).

A profile whose reference is an entry point or a TorchScript file runs its author's code when its
network is built; it is refused unless the user passes ``--trust-profile`` (or lists its sha256 in the
file named by ``QUALOADER_TRUSTED_PROFILES``). ``add_trust_argument`` defines that option once for
every command that takes ``--profile``. A command that only reads stored scores (``export``) reads
the profile's numbers and builds no network (:func:`stored_profile_metrics`).
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from qualoader.cli._errors import UserError, as_option, create_cli_metric, user_errors

__all__ = ["add_profile_argument", "add_trust_argument", "cli_metrics", "labels_for_num_classes", "stored_profile_metrics"]


def add_profile_argument(parser: argparse.ArgumentParser, *, repeat: bool, scoring: bool = True) -> None:
    """Add ``--profile PATH`` (repeatable for the commands that take several metrics), and ``--strict`` and ``--downscale``.

    ``scoring=False`` leaves out ``--strict`` and ``--downscale``, which only act on images being
    scored, for the commands that read stored scores (``export``).
    """
    parser.add_argument(
        "--profile",
        type=Path,
        action="append" if repeat else "store",
        default=[] if repeat else None,
        metavar="PATH",
        help="quality profile JSON (from 'qualoader calibrate') defining an aligned metric" + ("; repeat for several" if repeat else ""),
    )
    add_trust_argument(parser)
    if not scoring:
        return
    parser.add_argument(
        "--strict",
        action="store_true",
        help="stop with an error when images fall far outside an aligned metric's reference domain (default: warn once)",
    )
    parser.add_argument(
        "--downscale",
        type=int,
        default=1,
        metavar="F",
        help="score sharpness, gradient-energy and noise on the luma averaged over F x F blocks (1, 2 or 4; default 1: full "
        "resolution; the other classical measures always read every pixel); their scores change scale and are stored apart",
    )


def add_trust_argument(parser: argparse.ArgumentParser) -> None:
    """Add ``--trust-profile``: accept a ``--profile`` whose reference runs its author's code (an entry point or a TorchScript file)."""
    parser.add_argument(
        "--trust-profile",
        action="store_true",
        help="use a --profile whose reference network is code (a module:function entry point or a TorchScript file), which runs "
        "when the network is built; only for profiles from someone you trust (or list their sha256 in the file named by "
        "QUALOADER_TRUSTED_PROFILES)",
    )


def labels_for_num_classes(num_classes: int, labels: Sequence[str] | None, source: Any) -> tuple[str, ...]:
    """The label set of ``--num-classes N``: ``--labels`` (N of them), else the data's class names when it has N, else ``0..N-1``.

    Raises:
        UserError: ``N`` below 2, or ``--labels`` of another count.
    """
    from qualoader.cli._labelled import source_class_names

    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
        raise UserError(f"--num-classes should be an int >= 2 (the network's outputs), but got --num-classes={num_classes!r}")
    if labels is not None:
        if len(labels) != num_classes:
            raise UserError(
                f"--labels should name --num-classes={num_classes} classes, but got {len(labels)} names in --labels"
            )
        return tuple(labels)
    names = source_class_names(source)
    if names is not None and len(names) == num_classes:
        return tuple(names)
    # Digits: labelled data may give a class by its index (see qualoader.cli._labelled)
    return tuple(str(index) for index in range(num_classes))


def _is_registered(name: str, kind: type) -> bool:
    """Whether the registered metric ``name`` is a ``kind`` subclass; prefixed (pyiqa:...) and unknown names are not
    (unknown ones are left to create_metric, which names them)."""
    from qualoader.metrics.registry import _lookup

    if ":" in name:
        return False
    try:
        return issubclass(_lookup(name), kind)
    except KeyError:
        return False


def _checks_domain(name: str) -> bool:
    """Whether ``name`` is an aligned metric (one that takes ``strict``)."""
    from qualoader.metrics.aligned._reference_metric import ReferenceMetric

    return _is_registered(name, ReferenceMetric)


def _accepts_downscale(name: str) -> bool:
    """Whether ``name`` is a classical measure (one that takes ``downscale``)."""
    from qualoader.metrics.classical import ClassicalMetric

    return _is_registered(name, ClassicalMetric)


def _metric_names(values: Sequence[str] | None) -> list[str]:
    """``--metric`` values (each a name, ``a,b,c`` or a suite such as ``classical``) as distinct metric names."""
    from qualoader.engine import parse_metric_spec  # the one parser of metric specifications

    if not values:
        return []
    try:
        return parse_metric_spec(list(values))
    except (KeyError, ValueError, TypeError) as error:
        raise as_option(error, "spec", "--metric") from error


def cli_metrics(
    names: Sequence[str] | None,
    profiles: Sequence[Path] | Path | None,
    device: str | None = None,
    *,
    strict: bool = False,
    downscale: int = 1,
    trust: bool = False,
) -> list[Any]:
    """The metrics of ``--metric`` names and ``--profile`` paths, in that order, no-reference only.

    With ``strict`` (``--strict``), the aligned metrics among them raise
    :class:`~qualoader.profiles.DomainError` for images far outside their reference's domain.
    ``downscale`` (``--downscale``) is given to the metrics that take it (the classical measures).
    ``trust`` (``--trust-profile``) accepts profiles whose reference runs their author's code.

    Raises:
        UserError: neither is given, a profile is invalid, untrusted or altered, two profiles define the same
            metric name, or a metric needs a clean reference image.
    """
    from qualoader.metrics import create_metric
    from qualoader.profiles import load_profile

    names = _metric_names(names)
    paths = [profiles] if isinstance(profiles, Path) else list(profiles or [])
    if not names and not paths:
        raise UserError("--metric or --profile should name at least one metric, but got neither")
    by_name: dict[str, Any] = {}
    for path in paths:
        with user_errors():
            profile = load_profile(path, trust=trust)  # trust and the weights' sha256 are checked here, before any file is written
            metric = create_metric(profile.metric.name, device=device, profile=profile, strict=strict)
        if metric.name in by_name:
            raise UserError(
                f"--profile should define each metric once, but got two profiles of {metric.name!r} (the second is {str(path)!r})"
            )
        if metric.requires_reference:
            raise UserError(
                f"--profile should define a no-reference metric (this command has no clean reference image), but got {str(path)!r} of "
                f"{metric.name!r}"
            )
        by_name[metric.name] = metric
    from qualoader.metrics.classical._features import check_downscale

    try:
        check_downscale(downscale)
    except (TypeError, ValueError) as error:
        raise as_option(error, "downscale", "--downscale") from error
    if downscale != 1 and not any(_accepts_downscale(name) for name in names):
        raise UserError(f"--downscale applies to the classical measures, but got --downscale={downscale} and none of them in --metric")
    metrics = [
        by_name.pop(name)
        if name in by_name
        else create_cli_metric(
            name,
            device=device,
            **({"strict": True} if strict and _checks_domain(name) else {}),
            **({"downscale": downscale} if downscale != 1 and _accepts_downscale(name) else {}),
        )
        for name in names
    ]
    return metrics + list(by_name.values())


def _weights_hash(profile: Any) -> str | None:
    """:attr:`ReferenceNetwork.weights_hash` of the profile's network, from its state_dict file alone (no network is built).

    ``None`` for a TorchScript reference, whose tensors only a TorchScript load could read. The
    tensors are taken in the dtypes a freshly built network holds (float32, int64 counters).
    """
    import hashlib
    import json

    import torch

    from qualoader.reference import load_state_dict_file

    reference = profile.reference
    if reference.source == "torchscript":
        return None
    transform = reference.transform
    state = load_state_dict_file(reference.weights.verify("profile['reference']['weights']"))  # tensors only: nothing runs

    def buffer(values: tuple[float, ...]) -> list[float]:
        # ReferenceNetwork keeps mean and std as float32 buffers, one value per channel, and hashes their float32 values.
        return torch.tensor(values, dtype=torch.float32).expand(transform.in_channels).tolist()

    digest = hashlib.sha256()
    config = {"input_size": transform.input_size, "in_channels": transform.in_channels, "mean": buffer(transform.mean),
              "std": buffer(transform.std), "feature_layer": reference.feature_layer}
    digest.update(json.dumps(config, sort_keys=True).encode())
    for key, tensor in sorted(state.items()):
        # As load_state_dict would cast them into a freshly built network: floats to the default float32,
        # BatchNorm's counters to int64 (a file may hold them as floats).
        if key.endswith("num_batches_tracked"):
            tensor = tensor.to(torch.int64)
        elif tensor.is_floating_point():
            tensor = tensor.to(torch.get_default_dtype())
        digest.update(key.encode())
        if tensor.numel():
            digest.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()[:16]


def _describes(profile: Any, config: dict[str, Any], weights_hash: str | None) -> bool:
    """Whether a table's metric ``config`` is the one ``profile`` defines."""
    network = config.get("reference")
    if not isinstance(network, dict):
        return False
    transform = profile.reference.transform
    expected = {"name": profile.reference.name or "torchscript", "input_size": list(transform.input_size),
                "in_channels": transform.in_channels, "feature_layer": profile.reference.feature_layer}
    if any(network.get(key) != value for key, value in expected.items()):
        return False
    if weights_hash is not None and network.get("weights_hash") != weights_hash:
        return False
    return all(config.get(key) == value for key, value in profile.metric.params.items() if key in config)


def stored_profile_metrics(paths: Sequence[Path] | None, tables: Sequence[Any]) -> list[Any]:
    """For each ``--profile`` of a command that reads stored scores: its calibration, attached to the store table it scored.

    The profile is read, not built: no network is constructed and none of its code runs, so no trust
    is needed. A table is the profile's when its metric, reference name, input convention, metric
    parameters and (for a state_dict reference) weights hash are the profile's.

    Raises:
        UserError: a profile that is invalid or whose files are missing or altered, or that matches
            no table or several tables it cannot tell apart.
    """
    from qualoader.metrics.base import QualityMetric
    from qualoader.profiles import load_profile

    class StoredScores(QualityMetric):
        """A profile's current calibration for the scores a table already holds: it scores nothing."""

        def __init__(self, name: str, fingerprint: str, calibration: Any) -> None:
            super().__init__()
            self.name = name
            self._fingerprint = fingerprint
            self.calibration = calibration

        def score(self, images: Any, reference: Any = None) -> Any:
            raise RuntimeError("a profile read for its stored scores scores nothing")

        def fingerprint(self) -> str:
            return self._fingerprint

    found = []
    for path in paths or []:
        with user_errors():
            # trust=True: nothing of the profile runs here (no network is built), so there is nothing to refuse
            profile = load_profile(path, trust=True)
            weights_hash = _weights_hash(profile)
        matches = [
            table for table in tables if table.metric_name == profile.metric.name and _describes(profile, table.config, weights_hash)
        ]
        if len(matches) != 1:
            held = ", ".join(f"{table.metric_name} [{table.fingerprint}]" for table in tables) or "none"
            raise UserError(
                f"--profile should name the profile that scored one of the store's tables, but got {str(path)!r}, which matches "
                f"{'none' if not matches else f'{len(matches)} of them (they differ only in what the profile cannot show)'} ({held})"
            )
        found.append(StoredScores(profile.metric.name, matches[0].fingerprint, profile.calibration))
    return found

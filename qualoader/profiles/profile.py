"""Reading, writing, trusting and building quality profiles (their layout is :mod:`qualoader.profiles.schema`).

**Trust.** A profile whose reference is an entry point (``module:function``) or a TorchScript file
runs code its author wrote when its network is built: the module is imported and the function
called, or the TorchScript program run. :func:`load_profile` therefore refuses such a profile with one
line saying what would run, unless the user opts in for it: ``load_profile(path, trust=True)``
(``create_metric(name, profile=path, trust_profile=True)``, ``--trust-profile`` on the command line),
or by listing the sha256 of the profile's JSON file in the allow-list named by the environment
variable ``QUALOADER_TRUSTED_PROFILES`` (one 64-hex-digit digest per line, ``#`` starts a comment;
see :mod:`qualoader.profiles.trust`).
A trusted entry point resolves from the current folder as ``python -m`` does; the folder is put on
``sys.path`` for that import only. Embedded, torchvision and timm references run only library code.

**Weak profiles.** A profile whose held-out fit does not clear chance
(:func:`qualoader.calibration.strength.weak_fit_reason`) warns with :class:`WeakProfileWarning`
whenever it is loaded: its difficulty ranks images little better than a coin toss.
"""

from __future__ import annotations

import importlib
import io
import os
import sys
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import replace
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from qualoader._atomic import write_json_atomic
from qualoader._json import loads_json, read_bounded
from qualoader._validation import check_type
from qualoader.calibration.strength import weak_fit_reason
from qualoader.profiles._guard_messages import caller_stacklevel
from qualoader.profiles.schema import (
    ProfileError,
    QualityProfile,
    ReferenceSpec,
    WeightsFile,
    parse_profile,
)
from qualoader.profiles.trust import check_trusted

if TYPE_CHECKING:
    from qualoader.reference import ReferenceNetwork

__all__ = [
    "WeakProfileWarning",
    "build_reference",
    "default_profile_path",
    "load_profile",
    "read_profile",
    "save_profile",
    "weak_reason",
]

class WeakProfileWarning(UserWarning):
    """A profile's difficulty calibration did not beat chance on its held-out images."""


def default_profile_path(metric_name: str) -> Path:
    """The shipped Fashion-MNIST profile of an aligned metric, ``qualoader/assets/profile_fashion-mnist_<name>.json``.

    The file may not exist (not every metric ships one); see :data:`qualoader.calibration.SHIPPED_DEFAULTS`.
    """
    check_type(metric_name, "metric_name", str, "a metric name (str)")
    return Path(str(resources.files("qualoader") / "assets" / f"profile_fashion-mnist_{metric_name}.json"))


def _read(path: Path) -> tuple[Any, str]:
    """The parsed JSON of ``path`` and the sha256 of its bytes (what the allow-list names)."""
    import hashlib

    what = f"profile {str(path)!r}"
    try:
        data = read_bounded(path, what=what)
        return loads_json(data, what=what), hashlib.sha256(data).hexdigest()
    except ValueError as error:
        raise ProfileError(str(error)) from error


def read_profile(path: str | os.PathLike[str]) -> tuple[QualityProfile, str]:
    """The profile at ``path`` and the sha256 of its file, with no trust check and no file verified (nothing runs).

    Only for showing a profile (``qualoader profile show``): its result never goes to
    :func:`build_reference` or a metric, which would run an untrusted reference; use :func:`load_profile`.
    """
    check_type(path, "path", (str, os.PathLike), "a path to a profile JSON (str or PathLike)")
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"path should be an existing profile JSON file, but got path={str(path)!r}, which does not exist")
    data, digest = _read(path)
    return replace(parse_profile(data, path.resolve().parent, repr(str(path))), path=path.resolve()), digest


def load_profile(path: str | os.PathLike[str], *, verify: bool = True, trust: bool = False) -> QualityProfile:
    """Read a profile written by :func:`save_profile` (never downloads anything).

    Args:
        path: the profile JSON; relative file paths inside resolve against its folder.
        verify: check that every weights / head file exists and has its recorded sha256.
        trust: accept a profile whose reference runs its author's code (an entry point or a
            TorchScript file; see the module docstring). Without it such a profile is refused
            unless its sha256 is in the :data:`TRUSTED_PROFILES_ENV` allow-list.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ProfileTrustError: the reference would run code and the profile is not trusted.
        ProfileError: invalid JSON or layout (too large, too deep, bad numbers), a newer
            ``format_version``, or (``verify``) a missing, oversized or altered weights file.

    Warns:
        WeakProfileWarning: the profile's difficulty did not beat chance on its held-out images.

    Example:
        >>> load_profile(default_profile_path("bn-shift")).metric.name
        'bn-shift'
    """
    check_type(trust, "trust", bool, "a bool")
    profile, digest = read_profile(path)
    where = repr(str(path))
    check_trusted(profile, digest, trust, where)
    if verify:
        profile.reference.weights.verify("profile['reference']['weights']")
        if profile.head is not None:
            profile.head.verify("profile['head']")
    reason = weak_reason(profile)
    if reason is not None:
        warnings.warn(
            f"profile {where} is weak ({reason}): its difficulty may rank images no better than chance; rebuild it on more or other "
            "data ('qualoader calibrate')",
            WeakProfileWarning,
            stacklevel=caller_stacklevel(),  # the user's line, however many qualoader frames lie between
        )
    return profile


def weak_reason(profile: QualityProfile) -> str | None:
    """Why ``profile``'s difficulty is too weak to trust, or ``None`` (also when it has no difficulty calibration)."""
    if profile.calibration is None:
        return None
    held_out = profile.provenance.get("held_out")
    return weak_fit_reason(held_out if isinstance(held_out, Mapping) else None)


def save_profile(profile: QualityProfile, path: str | os.PathLike[str]) -> Path:
    """Write ``profile`` as JSON to ``path`` (atomically), with file paths relative to its folder when they lie inside it.

    Raises:
        ValueError: the profile holds NaN or Inf (strict JSON has none; nothing is written).
    """
    check_type(profile, "profile", QualityProfile, "a QualityProfile")
    path = Path(path)
    if not path.parent.is_dir():
        raise FileNotFoundError(f"path should be in an existing folder, but got path={str(path)!r} whose folder does not exist")
    return write_json_atomic(path, profile.to_dict(path.resolve().parent), indent=1)


# -- building the reference network -----------------------------------------------------------------
def _read_state(weights: WeightsFile) -> dict[str, torch.Tensor]:
    from qualoader.reference import load_state_dict_file

    path = weights.verify("profile['reference']['weights']")
    try:
        return load_state_dict_file(path)
    except ValueError as error:  # unreadable or not a state_dict: same message, profile error type
        raise ProfileError(str(error)) from error


def _fit_state(model: nn.Module, state: Mapping[str, torch.Tensor], weights: WeightsFile, architecture: str) -> None:
    """Load ``state`` strictly, with an error naming every missing, unexpected or mis-shaped key."""
    own = model.state_dict()
    # Compared by hand instead of load_state_dict's RuntimeError: a ProfileError naming the file, with at
    # most five keys of each kind (a wrong architecture mismatches hundreds).
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    shapes = [
        f"{key}: {tuple(state[key].shape)} for {tuple(own[key].shape)}"
        for key in sorted(set(own) & set(state))
        if own[key].shape != state[key].shape
    ]
    if missing or unexpected or shapes:

        def cut(items: list[str]) -> str:
            return f"{items[:5]}{f' and {len(items) - 5} more' if len(items) > 5 else ''}"

        raise ProfileError(
            f"weights should fit the architecture {architecture}, but got {str(weights.path)!r} with missing keys {cut(missing)}, "
            f"unexpected keys {cut(unexpected)} and shape mismatches {cut(shapes)}; a network with another number of classes "
            "takes its class names (--labels) or their count (--num-classes N; num_classes=N in Python)"
        )
    model.load_state_dict(state)


def _entry_point(name: str) -> Any:
    """The function ``module:function`` names, imported with the current folder first on ``sys.path`` as ``python -m`` has it.

    The folder is added for this import only (and only if missing), never left behind: a profile
    or a module beside it must not decide what later imports find.
    """
    module_name, _, function_name = name.partition(":")
    folder = os.getcwd()
    added = folder not in sys.path
    if added:
        sys.path.insert(0, folder)
    try:
        return getattr(importlib.import_module(module_name), function_name)
    except (ImportError, AttributeError) as error:
        raise ProfileError(
            f"the reference should be an importable 'module:function' (from the current folder or an installed package), but got "
            f"{name!r} ({type(error).__name__}: {error})"
        ) from error
    finally:
        if added and folder in sys.path:
            sys.path.remove(folder)


def _architecture(spec: ReferenceSpec) -> tuple[nn.Module, str]:
    """The un-initialised network of ``spec`` (TorchScript is handled by the caller)."""
    # The head is sized from the label set, so a fine-tuned network with other classes loads without edits.
    classes = len(spec.labels)
    if spec.source == "embedded":
        from qualoader.reference.architectures import FashionCNN

        return FashionCNN(num_classes=classes), f"FashionCNN(num_classes={classes})"
    if spec.source == "torchvision":
        from torchvision import models

        if spec.name not in models.list_models(module=models):
            raise ProfileError(
                f"the reference should be a torchvision classification model name, but got {spec.name!r}; see "
                "torchvision.models.list_models()"
            )
        return models.get_model(spec.name, weights=None, num_classes=classes), f"torchvision {spec.name}(num_classes={classes})"
    if spec.source == "timm":
        import timm

        if not timm.is_model(spec.name):
            raise ProfileError(f"the reference should be a timm model name (timm:<name>), but got {spec.name!r}")
        return timm.create_model(spec.name, pretrained=False, num_classes=classes), f"timm {spec.name}(num_classes={classes})"
    factory = _entry_point(str(spec.name))
    model = factory()
    if not isinstance(model, nn.Module):
        raise ProfileError(
            f"the reference's entry point should return an nn.Module, but got {spec.name!r} returning {type(model).__name__}"
        )
    return model, spec.name


def build_reference(profile: QualityProfile | ReferenceSpec) -> ReferenceNetwork:
    """The profile's reference network, weights checked against their sha256 and loaded strictly, in eval mode.

    Raises:
        ProfileError: missing or altered weights, an unreadable file, weights that do not fit the
            architecture (the message lists missing / unexpected keys), or a network whose output
            size differs from the number of labels.
    """
    from qualoader.reference import ReferenceNetwork

    spec = profile.reference if isinstance(profile, QualityProfile) else profile
    check_type(spec, "profile", ReferenceSpec, "a QualityProfile or ReferenceSpec")
    if spec.source == "torchscript":
        path = spec.weights.verify("profile['reference']['weights']")
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", FutureWarning)  # torch.jit.load is deprecated but still reads the archives users have
                model = torch.jit.load(io.BytesIO(path.read_bytes()), map_location="cpu")
        except (RuntimeError, ValueError) as error:
            raise ProfileError(
                f"weights should be a TorchScript archive for source='torchscript', but got {str(path)!r} that torch.jit.load cannot read "
                f"({error})"
            ) from error
    else:
        model, architecture = _architecture(spec)
        _fit_state(model, _read_state(spec.weights), spec.weights, architecture)
    model.eval()
    transform = spec.transform
    network = ReferenceNetwork(
        model,
        input_size=transform.input_size,
        in_channels=transform.in_channels,
        mean=transform.mean,
        std=transform.std,
        feature_layer=spec.feature_layer,
        name=spec.name or "torchscript",
    )
    _labels_fit(network, spec.labels)
    return network


def _labels_fit(network: ReferenceNetwork, labels: Sequence[str]) -> None:
    """Check one forward pass: the network has one output per label."""
    with torch.no_grad():
        outputs = network(torch.zeros(1, network.in_channels, *network.input_size)).shape[-1]
    if outputs != len(labels):
        raise ProfileError(f"labels should name one class per network output ({outputs}), but got {len(labels)} labels")

"""Quality profiles: one versioned JSON artifact that fully defines an aligned score.

A profile names the reference network (its source, local weights and their sha256, input
transform, label set and input domain), the metric and its parameters, any trained head, the
difficulty calibration, and where it all came from (data, split, sweep, seed, held-out fit). The
same profile gives the same scores and difficulties wherever it is loaded. Weight files live
beside the JSON (paths are stored relative to it) and are never downloaded.

Layout (``format_version`` 1)::

    {"format": "qualoader-profile", "format_version": 1, "name": "...",
     "reference": {"source": "embedded" | "torchvision" | "timm" | "torchscript" | "entry_point",
                   "name": "resnet18" | "timm-name" | "package.module:function" | null,
                   "weights": {"path": "weights.pt", "sha256": "..."},
                   "transform": {"input_size": [H, W], "in_channels": C, "mean": [...], "std": [...],
                                 "resize": "bilinear-antialias"},
                   "feature_layer": "..." | null, "labels": ["...", ...], "domain": {...}},
     "metric": {"name": "bn-shift", "params": {...}},
     "head": {"path": "...", "sha256": "..."} | null,
     "calibration": {...DifficultyCalibration.state_dict()...} | null,
     "provenance": {"data": "...", "split": "...", "sweep": {...}, "seed": 0, "held_out": {...}}}
"""

from __future__ import annotations

import hashlib
import importlib
import io
import json
import os
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from qualoader._atomic import write_json_atomic
from qualoader._validation import check_choice, check_type
from qualoader.calibration.mapping import DifficultyCalibration
from qualoader.profiles.domain import InputDomain

if TYPE_CHECKING:
    from qualoader.reference import ReferenceNetwork

__all__ = [
    "PROFILE_FORMAT",
    "PROFILE_VERSION",
    "RESIZE_POLICIES",
    "SOURCES",
    "InputTransform",
    "MetricSpec",
    "ProfileError",
    "QualityProfile",
    "ReferenceSpec",
    "WeightsFile",
    "build_reference",
    "file_sha256",
    "load_profile",
    "save_profile",
]

PROFILE_FORMAT = "qualoader-profile"
#: The newest format this version reads and the one it writes.
PROFILE_VERSION = 1
#: Where a reference network's architecture comes from.
SOURCES = frozenset({"embedded", "entry_point", "timm", "torchscript", "torchvision"})
#: How images are brought to the input size (:func:`qualoader.reference.preprocess_images`).
RESIZE_POLICIES = frozenset({"bilinear-antialias"})
_EMBEDDED = frozenset({"fashion-mnist-cnn"})
_TOP_KEYS = frozenset({"format", "format_version", "name", "reference", "metric", "head", "calibration", "provenance"})


class ProfileError(ValueError):
    """A profile or one of its files is invalid, missing, altered or incompatible; the message says which and why."""


def file_sha256(path: str | os.PathLike[str]) -> str:
    """Hex sha256 of a file's bytes (read in 1 MiB chunks)."""
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        # Chunked: reference weights can be hundreds of MB, and hashing them must not need that much memory.
        for chunk in iter(lambda: file.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _keys(data: Any, name: str, required: set[str], optional: set[str] = frozenset()) -> dict[str, Any]:  # type: ignore[assignment]
    if not isinstance(data, Mapping):
        raise ProfileError(f"{name} should be a JSON object, but got {name} of type {type(data).__name__}")
    missing, unknown = sorted(required - set(data)), sorted(set(data) - required - set(optional))
    if missing or unknown:
        raise ProfileError(
            f"{name} should have the keys {sorted(required)} (optional {sorted(optional)}), but got missing {missing} and unexpected "
            f"{unknown}"
        )
    return dict(data)


@dataclass(frozen=True)
class WeightsFile:
    """A local file and the sha256 it must have.

    Attributes:
        path: absolute path (a loaded profile resolves the stored relative path against its folder).
        sha256: 64 hex digits.
    """

    path: Path
    sha256: str

    def __post_init__(self) -> None:
        object.__setattr__(self, "path", Path(self.path))
        # Lower case only: hexdigest() is lower case, so an upper-case record would never match in verify().
        if not (isinstance(self.sha256, str) and len(self.sha256) == 64 and all(c in "0123456789abcdef" for c in self.sha256)):
            raise ProfileError(f"sha256 should be 64 lower-case hex digits, but got sha256={self.sha256!r}")

    @classmethod
    def of(cls, path: str | os.PathLike[str]) -> WeightsFile:
        """Record an existing file with its current hash."""
        path = Path(path).resolve()
        if not path.is_file():
            raise FileNotFoundError(f"path should be an existing file, but got path={str(path)!r}, which does not exist")
        return cls(path, file_sha256(path))

    def verify(self, what: str = "weights") -> Path:
        """The path, after checking that it exists and has the recorded hash.

        Raises:
            ProfileError: missing file or a different hash (nothing is downloaded or repaired).
        """
        if not self.path.is_file():
            raise ProfileError(
                f"{what} should be the local file {str(self.path)!r} named by the profile, but got no such file; copy it there (qualoader "
                "never downloads)"
            )
        digest = file_sha256(self.path)
        if digest != self.sha256:
            raise ProfileError(
                f"{what} should have the sha256 {self.sha256} recorded in the profile, but got {str(self.path)!r} with sha256 {digest}; "
                "the file was changed or replaced: restore the original or rebuild the profile with 'qualoader calibrate'"
            )
        return self.path

    def to_dict(self, base: Path | None) -> dict[str, str]:
        path = self.path
        if base is not None:
            try:
                path = path.relative_to(base.resolve())
            except ValueError:
                pass  # outside the profile's folder: keep it absolute
        return {"path": path.as_posix(), "sha256": self.sha256}

    @classmethod
    def from_dict(cls, data: Any, name: str, base: Path) -> WeightsFile:
        data = _keys(data, name, {"path", "sha256"})
        check_type(data["path"], f"{name}['path']", str, "a path (str)")
        path = Path(data["path"])
        # Relative to the profile's folder, not the working directory: a profile folder can be moved as a whole.
        return cls(path if path.is_absolute() else (base / path).resolve(), data["sha256"])


@dataclass(frozen=True)
class InputTransform:
    """How images in [0, 1] become the network input: resize to ``input_size``, convert channels, normalise."""

    input_size: tuple[int, int]
    in_channels: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    resize: str = "bilinear-antialias"

    def __post_init__(self) -> None:
        check_choice(self.in_channels, "in_channels", {1, 3})
        check_choice(self.resize, "resize", RESIZE_POLICIES)
        size = self.input_size
        if not (isinstance(size, (tuple, list)) and len(size) == 2 and all(isinstance(v, int) and v > 0 for v in size)):
            raise ProfileError(f"input_size should be a (height, width) pair of positive ints, but got input_size={size!r}")
        object.__setattr__(self, "input_size", (int(size[0]), int(size[1])))
        for name in ("mean", "std"):
            values = getattr(self, name)
            if not (
                isinstance(values, (tuple, list))
                # One value is accepted for any channel count and broadcasts over the channels.
                and len(values) in (1, self.in_channels)
                and all(isinstance(v, (int, float)) for v in values)
            ):
                raise ProfileError(f"{name} should be 1 or {self.in_channels} numbers, but got {name}={values!r}")
            object.__setattr__(self, name, tuple(float(v) for v in values))

    def to_dict(self) -> dict[str, Any]:
        return {
            "input_size": list(self.input_size),
            "in_channels": self.in_channels,
            "mean": list(self.mean),
            "std": list(self.std),
            "resize": self.resize,
        }


@dataclass(frozen=True)
class ReferenceSpec:
    """The reference network of a profile.

    Attributes:
        source: one of :data:`SOURCES`.
        name: ``"fashion-mnist-cnn"`` (embedded), a torchvision or timm model name, a
            ``"package.module:function"`` entry point returning the ``nn.Module``, or ``None``
            for a TorchScript file.
        weights: the weights file (a ``state_dict``, or the TorchScript archive itself).
        transform: input transform.
        labels: the class names, one per output logit.
        domain: the input domain the network was trained on.
        feature_layer: module whose output is the embedding (``None``: input of the last Linear).
    """

    source: str
    name: str | None
    weights: WeightsFile
    transform: InputTransform
    labels: tuple[str, ...]
    domain: InputDomain
    feature_layer: str | None = None

    def __post_init__(self) -> None:
        check_choice(self.source, "source", SOURCES)
        if self.source == "torchscript":
            if self.name is not None:
                raise ProfileError(f"name should be None for a TorchScript reference, but got name={self.name!r}")
        elif not isinstance(self.name, str) or not self.name:
            raise ProfileError(f"name should be a non-empty str for source={self.source!r}, but got name={self.name!r}")
        if self.source == "embedded":
            check_choice(self.name, "name", _EMBEDDED)
        if self.source == "entry_point" and (self.name is None or self.name.count(":") != 1):
            raise ProfileError(f"name should be 'package.module:function' for source='entry_point', but got name={self.name!r}")
        if (
            isinstance(self.labels, str)
            or not isinstance(self.labels, (tuple, list))
            or len(self.labels) < 2
            or not all(isinstance(v, str) for v in self.labels)
        ):
            raise ProfileError(f"labels should be at least 2 class names (str), but got labels={self.labels!r}")
        object.__setattr__(self, "labels", tuple(self.labels))


@dataclass(frozen=True)
class MetricSpec:
    """The metric of a profile: its registry name and the constructor parameters that shape its scores."""

    name: str
    params: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class QualityProfile:
    """Everything that defines an aligned score; see the module docstring for the JSON layout.

    Build one in code, write it with :func:`save_profile`, read it with :func:`load_profile`, turn
    it into a metric with ``create_metric(name, profile=...)``.
    """

    name: str
    reference: ReferenceSpec
    metric: MetricSpec
    calibration: DifficultyCalibration | None = None
    head: WeightsFile | None = None
    provenance: Mapping[str, Any] = field(default_factory=dict)
    path: Path | None = None  # where it was loaded from (not part of its identity)

    def to_dict(self, base: Path | None = None) -> dict[str, Any]:
        """The JSON object, with file paths relative to ``base`` when they lie below it."""
        reference = self.reference
        return {
            "format": PROFILE_FORMAT,
            "format_version": PROFILE_VERSION,
            "name": self.name,
            "reference": {
                "source": reference.source,
                "name": reference.name,
                "weights": reference.weights.to_dict(base),
                "transform": reference.transform.to_dict(),
                "feature_layer": reference.feature_layer,
                "labels": list(reference.labels),
                "domain": reference.domain.to_dict(),
            },
            "metric": {"name": self.metric.name, "params": dict(self.metric.params)},
            "head": None if self.head is None else self.head.to_dict(base),
            "calibration": None if self.calibration is None else self.calibration.state_dict(),
            # Round-tripped through JSON (anything else as str) so that Paths or numpy numbers in the provenance
            # cannot make save_profile fail half-way, and the identities below hash plain JSON.
            "provenance": json.loads(json.dumps(dict(self.provenance), default=str)),
        }

    @property
    def score_identity(self) -> str:
        """16 hex digits over what shapes the scores (network, transform, metric, head), not calibration or provenance."""
        data = self.to_dict()
        for key in ("weights",):
            data["reference"][key] = data["reference"][key]["sha256"]
        if data["head"] is not None:
            data["head"] = data["head"]["sha256"]
        payload = {key: data[key] for key in ("reference", "metric", "head")}
        # Weights by hash, not path (moving files keeps the identity); domain and labels describe the network
        # but do not change a single score, so editing them must not invalidate stored scores.
        payload["reference"] = {k: v for k, v in payload["reference"].items() if k not in ("domain", "labels")}
        return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]

    @property
    def identity(self) -> str:
        """16 hex digits over the whole profile (scores and calibration), independent of file locations."""
        data = self.to_dict()
        data["reference"]["weights"] = data["reference"]["weights"]["sha256"]
        if data["head"] is not None:
            data["head"] = data["head"]["sha256"]
        return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]

    def with_calibration(self, calibration: DifficultyCalibration | None, **provenance: Any) -> QualityProfile:
        """A copy with another calibration (and provenance entries updated)."""
        return replace(self, calibration=calibration, provenance={**self.provenance, **provenance})


def _parse(data: Any, base: Path, where: str) -> QualityProfile:
    data = _keys(data, "profile", {"format", "format_version", "name", "reference", "metric"}, set(_TOP_KEYS))
    if data["format"] != PROFILE_FORMAT:
        raise ProfileError(f"profile['format'] should be {PROFILE_FORMAT!r}, but got profile['format']={data['format']!r} in {where}")
    version = data["format_version"]
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise ProfileError(f"profile['format_version'] should be a positive int, but got {version!r} in {where}")
    # Refused rather than read best-effort: a newer format may give the same keys another meaning.
    if version > PROFILE_VERSION:
        raise ProfileError(
            f"profile['format_version'] should be at most {PROFILE_VERSION} (the newest this qualoader reads), but got "
            f"format_version={version} in {where}: it was written by a newer qualoader; upgrade qualoader to read it"
        )
    ref = _keys(
        data["reference"], "profile['reference']", {"source", "name", "weights", "transform", "labels", "domain"}, {"feature_layer"}
    )
    transform = _keys(ref["transform"], "profile['reference']['transform']", {"input_size", "in_channels", "mean", "std"}, {"resize"})
    metric = _keys(data["metric"], "profile['metric']", {"name"}, {"params"})
    try:
        reference = ReferenceSpec(
            source=ref["source"],
            name=ref["name"],
            weights=WeightsFile.from_dict(ref["weights"], "profile['reference']['weights']", base),
            transform=InputTransform(
                tuple(transform["input_size"]),
                transform["in_channels"],
                tuple(transform["mean"]),
                tuple(transform["std"]),
                transform.get("resize", "bilinear-antialias"),
            ),
            labels=tuple(ref["labels"]),
            domain=InputDomain.from_dict(ref["domain"]),
            feature_layer=ref.get("feature_layer"),
        )
        calibration = None if data.get("calibration") is None else DifficultyCalibration.from_state_dict(data["calibration"])
    # ProfileError is a ValueError: without this it would be re-wrapped below with a vaguer message.
    except ProfileError:
        raise
    except (TypeError, ValueError) as error:
        raise ProfileError(f"profile should be valid, but got {where} with an invalid entry: {error}") from error
    check_type(metric["name"], "profile['metric']['name']", str, "a metric name (str)")
    params = metric.get("params") or {}
    check_type(params, "profile['metric']['params']", dict, "a JSON object of constructor parameters")
    head = None if data.get("head") is None else WeightsFile.from_dict(data["head"], "profile['head']", base)
    provenance = data.get("provenance") or {}
    check_type(provenance, "profile['provenance']", dict, "a JSON object")
    check_type(data["name"], "profile['name']", str, "a str")
    return QualityProfile(data["name"], reference, MetricSpec(metric["name"], params), calibration, head, provenance)


def load_profile(path: str | os.PathLike[str], *, verify: bool = True) -> QualityProfile:
    """Read a profile written by :func:`save_profile` (never downloads anything).

    Args:
        path: the profile JSON; relative file paths inside resolve against its folder.
        verify: check that every weights / head file exists and has its recorded sha256.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ProfileError: invalid JSON or layout, a newer ``format_version``, or (``verify``) a
            missing or altered weights file.

    Example:
        >>> from qualoader.profiles import default_profile_path
        >>> load_profile(default_profile_path("bn-shift")).metric.name
        'bn-shift'
    """
    check_type(path, "path", (str, os.PathLike), "a path to a profile JSON (str or PathLike)")
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"path should be an existing profile JSON file, but got path={str(path)!r}, which does not exist")
    try:
        data = json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ProfileError(f"path should be a profile JSON file, but got path={str(path)!r} that is not valid JSON ({error})") from error
    profile = replace(_parse(data, path.resolve().parent, repr(str(path))), path=path.resolve())
    if verify:
        profile.reference.weights.verify("profile['reference']['weights']")
        if profile.head is not None:
            profile.head.verify("profile['head']")
    return profile


def save_profile(profile: QualityProfile, path: str | os.PathLike[str]) -> Path:
    """Write ``profile`` as JSON to ``path`` (atomically), with file paths relative to its folder.

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
            f"unexpected keys {cut(unexpected)} and shape mismatches {cut(shapes)}"
        )
    model.load_state_dict(state)


def _architecture(spec: ReferenceSpec) -> tuple[nn.Module, str]:
    """The un-initialised network of ``spec`` (TorchScript is handled by the caller)."""
    # The head is sized from the label set, so a fine-tuned network with other classes loads without edits.
    classes = len(spec.labels)
    if spec.source == "embedded":
        from qualoader.reference.architectures import FashionCNN

        return FashionCNN(num_classes=classes), f"FashionCNN(num_classes={classes})"
    if spec.source == "torchvision":
        from torchvision import models

        check_choice(spec.name, "profile['reference']['name']", set(models.list_models(module=models)))
        return models.get_model(spec.name, weights=None, num_classes=classes), f"torchvision {spec.name}(num_classes={classes})"
    if spec.source == "timm":
        import timm

        if not timm.is_model(spec.name):
            raise ProfileError(f"profile['reference']['name'] should be a timm model name, but got name={spec.name!r}")
        return timm.create_model(spec.name, pretrained=False, num_classes=classes), f"timm {spec.name}(num_classes={classes})"
    module_name, _, function_name = str(spec.name).partition(":")
    try:
        factory = getattr(importlib.import_module(module_name), function_name)
    except (ImportError, AttributeError) as error:
        raise ProfileError(
            f"profile['reference']['name'] should be an importable 'module:function', but got name={spec.name!r} ({error})"
        ) from error
    model = factory()
    if not isinstance(model, nn.Module):
        raise ProfileError(
            f"profile['reference']['name'] should return an nn.Module, but got {spec.name!r} returning {type(model).__name__}"
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

"""What a quality profile is: its JSON layout, its parts as frozen dataclasses, and their checks.

A profile names the reference network (its source, local weights and their sha256, input
transform, label set and input domain), the metric and its parameters, any trained head, the
difficulty calibration, and where it all came from (data, split, sweep, seed, held-out fit). The
same profile gives the same scores and difficulties wherever it is loaded. Weight files beside the
JSON are stored relative to it (a profile folder can be moved whole); files elsewhere keep their
absolute path. Nothing is ever downloaded. Reading, writing, trusting and building live in
:mod:`qualoader.profiles.profile`; this module runs no code a profile names.

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
import json
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from qualoader._validation import check_choice, check_type
from qualoader.calibration.mapping import DifficultyCalibration
from qualoader.profiles.domain import InputDomain

__all__ = [
    "CODE_SOURCES",
    "MAX_INPUT_SIZE",
    "MAX_WEIGHTS_BYTES",
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
    "file_sha256",
    "parse_profile",
]

PROFILE_FORMAT = "qualoader-profile"
#: The newest format this version reads and the one it writes.
PROFILE_VERSION = 1
#: Where a reference network's architecture comes from.
SOURCES = frozenset({"embedded", "entry_point", "timm", "torchscript", "torchvision"})
#: The sources whose network is code the profile's author wrote (imported and called, or a TorchScript
#: program run): loading a profile of these needs the user's trust (:func:`qualoader.profiles.load_profile`).
CODE_SOURCES = frozenset({"entry_point", "torchscript"})
#: How images are brought to the input size (:func:`qualoader.reference.preprocess_images`).
RESIZE_POLICIES = frozenset({"bilinear-antialias"})
#: The largest input side a profile may ask for: 4096 px is beyond any classifier's native size, and one
#: (3, 4096, 4096) float32 input is 200 MB, while a side of 10^5 would allocate 40 GB per image.
MAX_INPUT_SIZE = 4096
#: The largest weights / head file a profile may name, checked before it is hashed: 8 GiB holds a
#: ViT-g in float32 twice over, while hashing a (sparse) file of hundreds of GB would hang for minutes.
MAX_WEIGHTS_BYTES = 8 * 1024**3
_EMBEDDED = frozenset({"fashion-mnist-cnn"})
_TOP_KEYS = frozenset({"format", "format_version", "name", "reference", "metric", "head", "calibration", "provenance"})


class ProfileError(ValueError):
    """A profile or one of its files is invalid, missing, altered or incompatible; the message says which and why."""


def _check_file_size(path: Path, what: str) -> None:
    """Refuse a file over :data:`MAX_WEIGHTS_BYTES` before anything reads it (a sparse file reports its full size)."""
    size = path.stat().st_size
    if size > MAX_WEIGHTS_BYTES:
        raise ProfileError(
            f"{what} should be a file of at most {MAX_WEIGHTS_BYTES} bytes (8 GiB), but got {str(path)!r} of {size} bytes; "
            "it is not a network's weights, so it is not read or hashed"
        )


def file_sha256(path: str | os.PathLike[str], what: str = "weights") -> str:
    """Hex sha256 of a file's bytes (read in 1 MiB chunks).

    Raises:
        ProfileError: the file is larger than :data:`MAX_WEIGHTS_BYTES` (checked before reading).
    """
    _check_file_size(Path(path), what)
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        # Chunked: reference weights can be hundreds of MB, and hashing them must not need that much memory.
        for chunk in iter(lambda: file.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _short(value: Any, limit: int = 80) -> str:
    """``repr(value)`` cut to ``limit`` characters: a hostile profile's value must not flood the one-line error."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


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
        digest = file_sha256(self.path, what)
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
        if not (
            isinstance(size, (tuple, list))
            and len(size) == 2
            and all(isinstance(v, int) and not isinstance(v, bool) and 0 < v <= MAX_INPUT_SIZE for v in size)
        ):
            raise ProfileError(
                f"input_size should be a (height, width) pair of ints in [1, {MAX_INPUT_SIZE}], but got input_size={_short(size)}"
            )
        object.__setattr__(self, "input_size", (int(size[0]), int(size[1])))
        for name in ("mean", "std"):
            values = getattr(self, name)
            if not (
                isinstance(values, (tuple, list))
                # One value is accepted for any channel count and broadcasts over the channels.
                and len(values) in (1, self.in_channels)
                and all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in values)
            ):
                raise ProfileError(
                    f"{name} should be finite numbers, 1 or one per channel ({self.in_channels}), but got {name}={_short(values)}"
                )
            object.__setattr__(self, name, tuple(float(v) for v in values))
        # The input is divided by std: zero or a negative value would give Inf or flip every score's sign.
        if not all(v > 0 for v in self.std):
            raise ProfileError(f"std should be positive numbers, but got std={list(self.std)}")

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
        if self.source == "entry_point":
            module, _, function = str(self.name).partition(":")
            # Identifiers only: a path ('../x'), a relative import ('.x') or a call expression is not an entry point.
            if not (function.isidentifier() and all(part.isidentifier() for part in module.split("."))):
                raise ProfileError(
                    f"name should be 'package.module:function' for source='entry_point', but got name={_short(self.name)}"
                )
        if (
            isinstance(self.labels, str)
            or not isinstance(self.labels, (tuple, list))
            or len(self.labels) < 2
            or not all(isinstance(v, str) for v in self.labels)
        ):
            raise ProfileError(f"labels should be at least 2 class names (str), but got labels={self.labels!r}")
        object.__setattr__(self, "labels", tuple(self.labels))

    @property
    def runs_code(self) -> str | None:
        """What building this network runs besides qualoader, torchvision and timm (``None``: nothing), in words."""
        if self.source == "entry_point":
            module, _, function = str(self.name).partition(":")
            return f"imports the Python module {module!r} and calls its {function!r}"
        if self.source == "torchscript":
            return f"runs the TorchScript program in {str(self.weights.path)!r}"
        return None


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


def parse_profile(data: Any, base: Path, where: str) -> QualityProfile:
    """The profile in the parsed JSON ``data``; relative file paths resolve against ``base``; ``where`` names it in errors.

    Raises:
        ProfileError: a wrong layout, a newer ``format_version`` or an invalid entry.
    """
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

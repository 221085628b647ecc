"""Difficulty prior: map any quality score to the expected error of a reference network.

A :class:`DifficultyCalibration` is a monotone map ``score -> expected error in [0, 1]``, fitted on
a corruption sweep whose target is the reference network's error (``1 - correct``) on each image.
Two fits are offered: isotonic regression (pool-adjacent-violators, piecewise linear between the
pooled blocks) and a monotone logistic curve. Either way the direction is fixed by
``higher_is_better``: when a higher score means a better image, the expected error never increases
with the score. Attach a calibration to a metric with ``metric.calibration = cal`` and read the
prior with ``metric.difficulty(scores)``.

Calibrations are plain JSON (:meth:`DifficultyCalibration.save` / :meth:`DifficultyCalibration.load`);
the package ships fitted ones for the aligned metrics (:func:`default_calibration`).
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterator, Sequence
from importlib import resources
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
from torch import Tensor, nn

from qualoader._validation import (
    check_choice,
    check_images,
    check_positive_int,
    check_type,
)

__all__ = [
    "CALIBRATION_METHODS",
    "DifficultyCalibration",
    "Sweep",
    "calibrate_metric",
    "calibration_report",
    "corruption_sweep",
    "default_calibration",
    "default_calibration_path",
    "iterate_sweep",
]

CALIBRATION_METHODS = frozenset({"isotonic", "logistic"})
_FORMAT_VERSION = 1
_STATE_KEYS = frozenset({"format_version", "method", "higher_is_better", "params", "info"})


def _as_float64(values: Any, name: str) -> np.ndarray:
    """Validate a 1-D finite real sequence or tensor and return it as a float64 numpy array."""
    if isinstance(values, Tensor):
        array = values.detach().to("cpu", torch.float64).numpy()
    elif isinstance(values, (np.ndarray, Sequence)) and not isinstance(values, (str, bytes)):
        try:
            array = np.asarray(values, dtype=np.float64)
        except (TypeError, ValueError) as error:
            raise TypeError(f"{name} should be a 1-D sequence of real numbers, but got {name} that numpy cannot read as floats") from error
    else:
        raise TypeError(f"{name} should be a 1-D tensor or sequence of real numbers, but got {name} of type {type(values).__name__}")
    if array.ndim != 1 or array.size == 0:
        raise ValueError(f"{name} should be a non-empty 1-D sequence, but got {name}.shape={array.shape}")
    if not np.isfinite(array).all():
        raise ValueError(f"{name} should be finite, but got {name} with {int((~np.isfinite(array)).sum())} NaN/Inf values")
    return array


def _pool_adjacent_violators(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Non-decreasing least-squares fit of ``y`` on ``x``; returns knots (strictly increasing x, y).

    Equal ``x`` values are merged first (their mean target, weighted by count); each pooled block
    becomes one knot at its weighted mean ``x``.
    """
    order = np.argsort(x, kind="stable")
    xs, ys = x[order], y[order]
    unique, start = np.unique(xs, return_index=True)
    counts = np.diff(np.append(start, xs.size)).astype(np.float64)
    sums = np.add.reduceat(ys, start)
    # Stack of blocks: (sum of weights, weighted sum of x, weighted sum of y).
    weight: list[float] = []
    x_sum: list[float] = []
    y_sum: list[float] = []
    for value, count, total in zip(unique.tolist(), counts.tolist(), sums.tolist()):
        weight.append(count)
        x_sum.append(value * count)
        y_sum.append(total)
        while len(weight) > 1 and y_sum[-2] * weight[-1] >= y_sum[-1] * weight[-2]:
            w, xsum, ysum = weight.pop(), x_sum.pop(), y_sum.pop()
            weight[-1] += w
            x_sum[-1] += xsum
            y_sum[-1] += ysum
    w = np.asarray(weight)
    return np.asarray(x_sum) / w, np.asarray(y_sum) / w


def _fit_logistic(z: np.ndarray, y: np.ndarray, sign: float, iterations: int = 100) -> tuple[float, float]:
    """Newton fit of ``y ~ sigmoid(a * z + b)`` with ``sign * a >= 0`` (tiny ridge for stability)."""
    mean = float(np.clip(y.mean(), 1e-6, 1 - 1e-6))
    a, b = 0.0, math.log(mean / (1 - mean))
    ridge = 1e-6
    for _ in range(iterations):
        p = 1.0 / (1.0 + np.exp(-(a * z + b)))
        w = p * (1 - p)
        grad = np.array([np.dot(p - y, z) + ridge * a, np.sum(p - y)])
        hess = np.array([[np.dot(w, z * z) + ridge, np.dot(w, z)], [np.dot(w, z), np.sum(w) + ridge]])
        step = np.linalg.solve(hess + 1e-12 * np.eye(2), grad)
        a, b = a - float(step[0]), b - float(step[1])
        if sign * a < 0:  # the unconstrained optimum has the wrong direction: the constrained one is flat
            return 0.0, math.log(mean / (1 - mean))
        if np.abs(step).max() < 1e-10:
            break
    return a, b


class DifficultyCalibration:
    """Monotone map from quality scores :math:`(B,)` to expected error in [0, 1].

    Build one with :meth:`fit` (or :func:`calibrate_metric`, or :meth:`load`), then call it on
    scores. The call is batched, runs on the scores' device and dtype, and does no host sync;
    NaN scores give NaN.

    Args:
        method: ``"isotonic"`` (piecewise linear through pooled-adjacent-violator blocks, constant
            outside the fitted range) or ``"logistic"`` (``sigmoid(a * (s - mean) / std + b)``).
        higher_is_better: direction of the score; when ``True`` the expected error is
            non-increasing in the score, otherwise non-decreasing.
        params: fitted parameters (``{"x": [...], "y": [...]}`` for isotonic,
            ``{"mean", "std", "slope", "bias"}`` for logistic), as produced by :meth:`fit`.
        info: free JSON metadata (metric name, reference network, sweep, fit quality).

    Example:
        >>> cal = DifficultyCalibration.fit(torch.tensor([0.1, 0.5, 0.9]), torch.tensor([1.0, 0.0, 0.0]), True)
        >>> cal(torch.tensor([0.0, 1.0]))
        tensor([1., 0.])
    """

    def __init__(self, method: str, higher_is_better: bool, params: dict[str, Any], info: dict[str, Any] | None = None) -> None:
        check_choice(method, "method", CALIBRATION_METHODS)
        check_type(higher_is_better, "higher_is_better", bool, "a bool")
        check_type(params, "params", dict, "a dict of fitted parameters")
        self.method = method
        self.higher_is_better = higher_is_better
        self.info: dict[str, Any] = dict(info or {})
        if method == "isotonic":
            if set(params) != {"x", "y"}:
                raise ValueError(f"params should have the keys {{'x', 'y'}} for method='isotonic', but got params keys={sorted(params)}")
            x = _as_float64(params["x"], "params['x']")
            y = _as_float64(params["y"], "params['y']")
            if x.size != y.size:
                raise ValueError(f"params['y'] should have the length of params['x'] ({x.size}), but got len(params['y'])={y.size}")
            if np.any(np.diff(x) <= 0):
                raise ValueError("params['x'] should be strictly increasing, but got params['x'] with repeated or decreasing knots")
            steps = np.diff(y) * (-1.0 if higher_is_better else 1.0)
            if np.any(steps < 0) or y.min() < 0 or y.max() > 1:
                raise ValueError(f"params['y'] should be monotone in the direction higher_is_better={higher_is_better} and in [0, 1], but got params['y'] in [{y.min():.4g}, {y.max():.4g}] that is not")
            self.params: dict[str, Any] = {"x": x.tolist(), "y": y.tolist()}
        else:
            keys = {"mean", "std", "slope", "bias"}
            if set(params) != keys:
                raise ValueError(f"params should have the keys {sorted(keys)} for method='logistic', but got params keys={sorted(params)}")
            values = {key: float(_as_float64([params[key]], f"params[{key!r}]")[0]) for key in sorted(keys)}
            if values["std"] <= 0:
                raise ValueError(f"params['std'] should be positive, but got params['std']={values['std']}")
            if values["slope"] * (-1.0 if higher_is_better else 1.0) < 0:
                raise ValueError(f"params['slope'] should have the sign of the direction higher_is_better={higher_is_better}, but got params['slope']={values['slope']}")
            self.params = values
        self._cache: dict[tuple[torch.device, torch.dtype], tuple[Tensor, ...]] = {}

    # -- fitting -------------------------------------------------------------------------------
    @classmethod
    def fit(
        cls,
        scores: Tensor | Sequence[float] | np.ndarray,
        errors: Tensor | Sequence[float] | np.ndarray,
        higher_is_better: bool,
        method: str = "isotonic",
        info: dict[str, Any] | None = None,
    ) -> DifficultyCalibration:
        """Fit a monotone map from ``scores`` to ``errors``.

        Args:
            scores: metric scores :math:`(N,)`, finite.
            errors: targets :math:`(N,)` in [0, 1]: the reference network's error ``1 - correct``
                on each image (or any error rate).
            higher_is_better: the score's direction (``metric.higher_is_better``).
            method: ``"isotonic"`` or ``"logistic"``.
            info: metadata stored with the calibration.

        Returns:
            The fitted calibration.

        Raises:
            TypeError: wrong argument types.
            ValueError: empty, non-1-D, NaN/Inf, mismatched lengths, errors outside [0, 1].
        """
        check_choice(method, "method", CALIBRATION_METHODS)
        check_type(higher_is_better, "higher_is_better", bool, "a bool")
        x = _as_float64(scores, "scores")
        y = _as_float64(errors, "errors")
        if x.size != y.size:
            raise ValueError(f"errors should have the length of scores ({x.size}), but got len(errors)={y.size}")
        if y.min() < 0 or y.max() > 1:
            raise ValueError(f"errors should be in [0, 1], but got errors in [{y.min():.4g}, {y.max():.4g}]")
        info = {"n_fit": int(x.size), **(info or {})}
        if method == "isotonic":
            sign = -1.0 if higher_is_better else 1.0  # fit a non-decreasing map of sign * score
            knots_x, knots_y = _pool_adjacent_violators(sign * x, y)
            if higher_is_better:
                knots_x, knots_y = -knots_x[::-1], knots_y[::-1]
            return cls("isotonic", higher_is_better, {"x": knots_x.tolist(), "y": np.clip(knots_y, 0.0, 1.0).tolist()}, info)
        mean, std = float(x.mean()), float(x.std())
        std = std if std > 0 else 1.0
        slope, bias = _fit_logistic((x - mean) / std, y, -1.0 if higher_is_better else 1.0)
        return cls("logistic", higher_is_better, {"mean": mean, "std": std, "slope": slope, "bias": bias}, info)

    # -- evaluation ----------------------------------------------------------------------------
    def _tensors(self, device: torch.device, dtype: torch.dtype) -> tuple[Tensor, ...]:
        key = (device, dtype)
        if key not in self._cache:
            if self.method == "isotonic":
                values = (self.params["x"], self.params["y"])
            else:
                values = ([self.params[k] for k in ("mean", "std", "slope", "bias")],)
            self._cache[key] = tuple(torch.tensor(v, dtype=torch.float64).to(device=device, dtype=dtype) for v in values)
        return self._cache[key]

    def __call__(self, scores: Tensor) -> Tensor:
        """Expected error of the reference network for each score.

        Args:
            scores: tensor of scores, shape :math:`(B,)` (any shape works elementwise).

        Returns:
            Expected error in [0, 1], same shape and device; float dtype of ``scores``
            (``float32`` for integer or half input).
        """
        check_type(scores, "scores", Tensor, "a torch.Tensor of shape (B,)")
        out_dtype = scores.dtype if scores.is_floating_point() else torch.float32
        work_dtype = torch.float64 if scores.dtype == torch.float64 else torch.float32
        s = scores.to(work_dtype)
        if self.method == "logistic":
            (theta,) = self._tensors(s.device, work_dtype)
            out = torch.sigmoid(theta[2] * (s - theta[0]) / theta[1] + theta[3])
            return out.to(out_dtype)
        x, y = self._tensors(s.device, work_dtype)
        if x.numel() == 1:
            return (y.expand_as(s) + s * 0).clamp(0.0, 1.0).to(out_dtype)  # s * 0 keeps NaN
        flat = s.reshape(-1).contiguous()
        right = torch.searchsorted(x, flat, right=True).clamp_(1, x.numel() - 1)
        x0, x1, y0, y1 = x[right - 1], x[right], y[right - 1], y[right]
        t = ((flat - x0) / (x1 - x0)).clamp(0.0, 1.0)
        return (y0 + t * (y1 - y0)).clamp(0.0, 1.0).reshape(s.shape).to(out_dtype)

    # -- persistence ---------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Plain JSON-serialisable state; :meth:`from_state_dict` rebuilds an identical calibration."""
        return {
            "format_version": _FORMAT_VERSION,
            "method": self.method,
            "higher_is_better": self.higher_is_better,
            "params": {key: list(value) if isinstance(value, list) else value for key, value in self.params.items()},
            "info": json.loads(json.dumps(self.info, default=str)),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Replace this calibration's mapping with ``state`` (from :meth:`state_dict`)."""
        other = type(self).from_state_dict(state)
        self.method, self.higher_is_better, self.params, self.info = other.method, other.higher_is_better, other.params, other.info
        self._cache = {}

    @classmethod
    def from_state_dict(cls, state: dict[str, Any]) -> DifficultyCalibration:
        """Build a calibration from :meth:`state_dict` output.

        Raises:
            TypeError: ``state`` is not a dict.
            ValueError: missing keys, an unknown format version, or invalid parameters.
        """
        check_type(state, "state", dict, "a dict from DifficultyCalibration.state_dict()")
        missing = sorted({"method", "higher_is_better", "params"} - set(state))
        if missing or not set(state) <= _STATE_KEYS:
            raise ValueError(f"state should have the keys {sorted(_STATE_KEYS)}, but got state keys={sorted(state)}")
        version = state.get("format_version", _FORMAT_VERSION)
        if version != _FORMAT_VERSION:
            raise ValueError(f"state['format_version'] should be {_FORMAT_VERSION}, but got state['format_version']={version!r}")
        return cls(state["method"], state["higher_is_better"], dict(state["params"]), state.get("info"))

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the calibration as JSON to ``path``."""
        Path(path).write_text(json.dumps(self.state_dict(), indent=1) + "\n")

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> DifficultyCalibration:
        """Read a calibration written by :meth:`save`.

        Raises:
            FileNotFoundError: ``path`` does not exist.
            ValueError: the file is not a valid calibration.
        """
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"path should be an existing calibration JSON file, but got path={str(path)!r}, which does not exist")
        try:
            state = json.loads(path.read_text())
        except json.JSONDecodeError as error:
            raise ValueError(f"path should be a calibration JSON file, but got path={str(path)!r} that is not valid JSON ({error})") from error
        return cls.from_state_dict(state)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, DifficultyCalibration):
            return NotImplemented
        return self.state_dict() == other.state_dict()

    __hash__ = None  # type: ignore[assignment]

    def __getstate__(self) -> dict[str, Any]:  # pickling for DataLoader workers: drop device caches
        return {**self.__dict__, "_cache": {}}

    def __repr__(self) -> str:
        size = f"knots={len(self.params['x'])}" if self.method == "isotonic" else f"slope={self.params['slope']:.4g}"
        return f"DifficultyCalibration(method={self.method!r}, higher_is_better={self.higher_is_better}, {size})"


# -- default calibrations shipped with the package ------------------------------------------------
def default_calibration_path(metric_name: str) -> Path:
    """Where the shipped calibration of ``metric_name`` lives (``qualoader/assets/calibration_<name>.json``)."""
    check_type(metric_name, "metric_name", str, "a metric name (str)")
    return Path(str(resources.files("qualoader") / "assets" / f"calibration_{metric_name}.json"))


def default_calibration(metric_name: str) -> DifficultyCalibration | None:
    """The shipped calibration of an aligned metric against the embedded default reference.

    Args:
        metric_name: registry name, e.g. ``"feature-distance"``, ``"bn-shift"``, ``"task-guided"``.

    Returns:
        The calibration, or ``None`` when the package ships none for that metric.

    Example:
        >>> metric.calibration = default_calibration(metric.name)  # doctest: +SKIP
    """
    path = default_calibration_path(metric_name)
    return DifficultyCalibration.load(path) if path.is_file() else None


# -- corruption sweeps ------------------------------------------------------------------------------
class Sweep(NamedTuple):
    """Scores and reference-network errors of a corruption sweep, all shape :math:`(N,)`.

    ``corruption`` indexes ``names`` (-1 for the clean images, which appear once); ``severity``
    is 0 for clean images.
    """

    scores: Tensor
    errors: Tensor
    corruption: Tensor
    severity: Tensor
    names: tuple[str, ...]


@torch.no_grad()
def _reference_errors(reference: nn.Module, images: Tensor, labels: Tensor) -> Tensor:
    logits = reference(images)
    return (logits.argmax(dim=1) != labels).to(torch.float32)


def iterate_sweep(
    images: Tensor,
    labels: Tensor,
    reference: nn.Module,
    corruptions: Sequence[str] | None,
    severities: Sequence[int],
    generator: torch.Generator | None,
    batch_size: int,
) -> tuple[tuple[str, ...], Iterator[tuple[Tensor, Tensor, Tensor, int, int]]]:
    """Validate a corruption sweep and return ``(names, batches)``.

    ``batches`` yields ``(clean, corrupted, labels, corruption_index, severity)`` per batch of
    ``batch_size`` images and condition (index ``-1`` and severity 0 for the clean images), with
    ``reference`` in eval mode while it runs (its mode is restored afterwards). Arguments as in
    :func:`corruption_sweep`.
    """
    from qualoader.corruptions import list_corruptions

    images = check_images(images)
    check_type(labels, "labels", Tensor, "a torch.Tensor of class indices (N,)")
    if labels.shape != (images.shape[0],):
        raise ValueError(f"labels should have shape ({images.shape[0]},), but got labels.shape={tuple(labels.shape)}")
    check_type(reference, "reference", nn.Module, "an nn.Module returning logits (N, K)")
    check_positive_int(batch_size, "batch_size")
    names = tuple(list_corruptions() if corruptions is None else corruptions)
    if not names:
        raise ValueError("corruptions should name at least one corruption, but got corruptions=()")
    for name in names:
        check_choice(name, "corruptions[i]", set(list_corruptions()))
    levels = sorted(set(severities))
    if any(isinstance(level, bool) or not isinstance(level, int) or not 0 <= level <= 5 for level in levels):
        raise ValueError(f"severities should be ints in 0..5, but got severities={tuple(severities)!r}")
    conditions = ([(-1, 0)] if 0 in levels else []) + [(k, s) for k in range(len(names)) for s in levels if s > 0]
    return names, _sweep_batches(images, labels.to(images.device), reference, names, conditions, generator, batch_size)


def _sweep_batches(
    images: Tensor,
    labels: Tensor,
    reference: nn.Module,
    names: tuple[str, ...],
    conditions: list[tuple[int, int]],
    generator: torch.Generator | None,
    batch_size: int,
) -> Iterator[tuple[Tensor, Tensor, Tensor, int, int]]:
    from qualoader.corruptions import corrupt

    was_training = reference.training
    reference.eval()
    try:
        for start in range(0, images.shape[0], batch_size):
            clean, label = images[start : start + batch_size], labels[start : start + batch_size]
            for index, level in conditions:
                batch = clean if index < 0 else corrupt(clean, names[index], level, generator=generator).clamp(0.0, 1.0)
                yield clean, batch, label, index, level
    finally:
        reference.train(was_training)


@torch.no_grad()
def corruption_sweep(
    metric: nn.Module,
    images: Tensor,
    labels: Tensor,
    reference: nn.Module,
    corruptions: Sequence[str] | None = None,
    severities: Sequence[int] = (0, 1, 2, 3, 4, 5),
    generator: torch.Generator | None = None,
    batch_size: int = 500,
) -> Sweep:
    """Score corrupted copies of ``images`` and record whether ``reference`` still classifies them.

    Args:
        metric: a :class:`~qualoader.metrics.QualityMetric`; full-reference metrics get the clean
            images as their ``reference``.
        images: clean images :math:`(N, C, H, W)`, uint8 or float in [0, 1].
        labels: class indices :math:`(N,)` for ``reference``.
        reference: the reference network: ``reference(images) -> logits (N, K)``.
        corruptions: names from :func:`qualoader.corruptions.list_corruptions` (default: all).
        severities: severities in 0..5; 0 means the clean images (included once).
        generator: seeds the random corruptions.
        batch_size: images per forward pass.

    Returns:
        A :class:`Sweep` whose ``errors`` are ``1 - correct`` of ``reference`` per image.
    """
    parts: dict[str, list[Tensor]] = {"scores": [], "errors": [], "corruption": [], "severity": []}
    names, batches = iterate_sweep(images, labels, reference, corruptions, severities, generator, batch_size)
    for clean, batch, label, index, level in batches:
        scores = metric(batch, clean) if getattr(metric, "requires_reference", False) else metric(batch)
        parts["scores"].append(scores.float())
        parts["errors"].append(_reference_errors(reference, batch, label))
        parts["corruption"].append(torch.full_like(label, index))
        parts["severity"].append(torch.full_like(label, level))
    merged = {key: torch.cat(value) for key, value in parts.items()}
    return Sweep(merged["scores"], merged["errors"], merged["corruption"], merged["severity"], names)


def calibrate_metric(
    metric: nn.Module,
    images: Tensor,
    labels: Tensor,
    reference: nn.Module,
    corruptions: Sequence[str] | None = None,
    severities: Sequence[int] = (0, 1, 2, 3, 4, 5),
    generator: torch.Generator | None = None,
    method: str = "isotonic",
    batch_size: int = 500,
) -> DifficultyCalibration:
    """Fit a metric's difficulty prior on a corruption sweep (see :func:`corruption_sweep`).

    The target is the reference network's error ``1 - correct`` on every corrupted image.

    Returns:
        The fitted calibration (attach it with ``metric.calibration = cal``); its ``info`` records
        the metric, sweep and in-sample fit quality (:func:`calibration_report`).

    Example:
        >>> cal = calibrate_metric(metric, images, labels, default_reference())  # doctest: +SKIP
    """
    check_choice(method, "method", CALIBRATION_METHODS)
    sweep = corruption_sweep(metric, images, labels, reference, corruptions, severities, generator, batch_size)
    info = {
        "metric": getattr(metric, "name", type(metric).__name__),
        "reference": str(getattr(reference, "weights_hash", type(reference).__name__)),
        "corruptions": list(sweep.names),
        "severities": sorted(set(severities)),
        "n_images": int(images.shape[0]),
    }
    calibration = DifficultyCalibration.fit(sweep.scores, sweep.errors, bool(metric.higher_is_better), method, info)
    calibration.info["fit"] = calibration_report(calibration(sweep.scores), sweep.errors)
    return calibration


def calibration_report(predicted: Tensor, errors: Tensor) -> dict[str, float]:
    """Fit quality of a difficulty prior against observed errors.

    Args:
        predicted: expected errors :math:`(N,)` in [0, 1].
        errors: observed errors :math:`(N,)`, 0 or 1.

    Returns:
        ``brier`` (mean squared error), ``brier_base`` (Brier of predicting the base rate),
        ``auroc`` (probability that an erroneous image gets a higher prior than a correct one,
        ties counted half; NaN when only one class is present), and ``error_rate``.
    """
    check_type(predicted, "predicted", Tensor, "a torch.Tensor (N,)")
    check_type(errors, "errors", Tensor, "a torch.Tensor (N,)")
    if predicted.shape != errors.shape or predicted.ndim != 1:
        raise ValueError(f"errors should have the 1-D shape of predicted {tuple(predicted.shape)}, but got errors.shape={tuple(errors.shape)}")
    p = predicted.detach().double().cpu()
    e = errors.detach().double().cpu()
    rate = float(e.mean())
    positives, negatives = float(e.sum()), float((1 - e).sum())
    if positives == 0 or negatives == 0:
        auroc = float("nan")
    else:
        ranks = torch.from_numpy(_average_ranks(p.numpy()))
        auroc = float(((ranks * e).sum() - positives * (positives + 1) / 2) / (positives * negatives))
    return {
        "auroc": auroc,
        "brier": float(((p - e) ** 2).mean()),
        "brier_base": rate * (1 - rate),
        "error_rate": rate,
    }


def _average_ranks(values: np.ndarray) -> np.ndarray:
    """1-based ranks with ties given their average rank."""
    order = np.argsort(values, kind="stable")
    sorted_values = values[order]
    _, start, counts = np.unique(sorted_values, return_index=True, return_counts=True)
    average = start + (counts + 1) / 2.0
    ranks = np.empty(values.size, dtype=np.float64)
    ranks[order] = np.repeat(average, counts)
    return ranks

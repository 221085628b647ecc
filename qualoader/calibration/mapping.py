"""The score -> expected-error map that metrics carry: the :class:`Calibration` protocol and its implementation.

A calibration is a monotone map ``score -> expected error in [0, 1]`` of a reference network,
fitted on a corruption sweep whose target is that network's error (``1 - correct``) on each image.
:class:`DifficultyCalibration` offers two fits: isotonic regression (piecewise linear between
the pooled blocks) and a monotone logistic curve. Either way the direction is fixed by
``higher_is_better``: when a higher score means a better image, the expected error never increases
with the score. Attach one with ``metric.calibration = cal`` and read the prior with
``metric.difficulty(scores)``.

This module knows nothing of metrics or sweeps (those live in :mod:`.sweep` and :mod:`.fit`), so
metrics can depend on it without a cycle.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from qualoader._atomic import write_json_atomic
from qualoader._calibration_protocol import Calibration
from qualoader._validation import check_choice, check_type
from qualoader.calibration.curves import fit_isotonic, fit_monotone_logistic

__all__ = ["CALIBRATION_METHODS", "Calibration", "DifficultyCalibration"]

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


def _json_safe(value: Any) -> Any:
    """``value`` as strict JSON: non-finite floats (an undefined statistic) become ``None``, other objects ``str``."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(key): _json_safe(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(item) for item in value]
    if value is None or isinstance(value, (str, int, bool)):
        return value
    return str(value)


class DifficultyCalibration:
    """Monotone map from quality scores :math:`(B,)` to expected error in [0, 1].

    Build one with :meth:`fit` (or :func:`~qualoader.calibration.calibrate_metric`, or :meth:`load`),
    then call it on scores. The call is batched, runs on the scores' device and dtype, and does no
    host sync; NaN scores give NaN.

    Args:
        method: ``"isotonic"`` (piecewise linear through the pooled blocks, constant outside the
            fitted range) or ``"logistic"`` (``sigmoid(a * (s - mean) / std + b)``).
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
            # Strictly: the interpolation in __call__ divides by x1 - x0. The checks run on loaded states too, so a
            # hand-edited file cannot yield a map that is not monotone.
            if np.any(np.diff(x) <= 0):
                raise ValueError("params['x'] should be strictly increasing, but got params['x'] with repeated or decreasing knots")
            steps = np.diff(y) * (-1.0 if higher_is_better else 1.0)
            if np.any(steps < 0) or y.min() < 0 or y.max() > 1:
                raise ValueError(
                    f"params['y'] should be monotone in the direction higher_is_better={higher_is_better} and in [0, 1], "
                    f"but got params['y'] in [{y.min():.4g}, {y.max():.4g}] that is not"
                )
            self.params: dict[str, Any] = {"x": x.tolist(), "y": y.tolist()}
        else:
            keys = {"mean", "std", "slope", "bias"}
            if set(params) != keys:
                raise ValueError(f"params should have the keys {sorted(keys)} for method='logistic', but got params keys={sorted(params)}")
            values = {key: float(_as_float64([params[key]], f"params[{key!r}]")[0]) for key in sorted(keys)}
            if values["std"] <= 0:
                raise ValueError(f"params['std'] should be positive, but got params['std']={values['std']}")
            if values["slope"] * (-1.0 if higher_is_better else 1.0) < 0:
                raise ValueError(
                    f"params['slope'] should have the sign of the direction higher_is_better={higher_is_better}, but got "
                    f"params['slope']={values['slope']}"
                )
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
        # A better image (higher score when higher_is_better) must never get a larger expected error.
        increasing = not higher_is_better
        if method == "isotonic":
            knots_x, knots_y = fit_isotonic(x, y, increasing=increasing)
            return cls("isotonic", higher_is_better, {"x": knots_x.tolist(), "y": np.clip(knots_y, 0.0, 1.0).tolist()}, info)
        # Standardised before the fit so slope and bias are well scaled whatever the metric's units.
        mean, std = float(x.mean()), float(x.std())
        std = std if std > 0 else 1.0  # constant scores: any scale gives the same flat curve
        slope, bias = fit_monotone_logistic((x - mean) / std, y, increasing=increasing)
        return cls("logistic", higher_is_better, {"mean": mean, "std": std, "slope": slope, "bias": bias}, info)

    # -- evaluation ----------------------------------------------------------------------------
    def _tensors(self, device: torch.device, dtype: torch.dtype) -> tuple[Tensor, ...]:
        key = (device, dtype)
        # Knots are converted once per (device, dtype): a host-to-device copy per call would cost a sync per batch.
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
        # half precision would round the knots; compute in float32 at least
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
        # Clamped so right - 1 and right are valid knots for scores outside the fitted range as well.
        right = torch.searchsorted(x, flat, right=True).clamp_(1, x.numel() - 1)
        x0, x1, y0, y1 = x[right - 1], x[right], y[right - 1], y[right]
        # clamping t makes the curve constant outside the fitted range instead of extrapolating
        t = ((flat - x0) / (x1 - x0)).clamp(0.0, 1.0)
        return (y0 + t * (y1 - y0)).clamp(0.0, 1.0).reshape(s.shape).to(out_dtype)

    # -- persistence ---------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Plain strict-JSON state; :meth:`from_state_dict` rebuilds an identical calibration.

        Non-finite numbers in ``info`` (an undefined statistic such as the AUROC of a sweep with one
        class) are stored as ``None``: JSON has no NaN.
        """
        return {
            "format_version": _FORMAT_VERSION,
            "method": self.method,
            "higher_is_better": self.higher_is_better,
            # Copies: a caller editing the returned state must not change this calibration behind its cache.
            "params": {key: list(value) if isinstance(value, list) else value for key, value in self.params.items()},
            "info": _json_safe(self.info),
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
        """Write the calibration as JSON to ``path`` (atomically: temporary file, then rename)."""
        write_json_atomic(path, self.state_dict())

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
        from qualoader._json import read_json  # bounded: a received file may be huge or nested thousands deep

        try:
            state = read_json(path, what=f"calibration {str(path)!r}")
        except ValueError as error:
            raise ValueError(
                f"path should be a calibration JSON file, but got path={str(path)!r} that is not valid JSON ({error})"
            ) from error
        return cls.from_state_dict(state)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, DifficultyCalibration):
            return NotImplemented
        return self.state_dict() == other.state_dict()

    # Equal by value but mutable (load_state_dict), so it must not be usable as a dict key.
    __hash__ = None  # type: ignore[assignment]

    def __getstate__(self) -> dict[str, Any]:  # pickling for DataLoader workers: drop device caches
        return {**self.__dict__, "_cache": {}}

    def __repr__(self) -> str:
        size = f"knots={len(self.params['x'])}" if self.method == "isotonic" else f"slope={self.params['slope']:.4g}"
        return f"DifficultyCalibration(method={self.method!r}, higher_is_better={self.higher_is_better}, {size})"

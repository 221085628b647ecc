"""Yes/no quality flags per image: values that are outliers for their dataset, in a measure's bad direction.

A flag marks an image whose measure lies beyond a threshold on the measure's bad side. The
threshold is either given by the user (in the measure's own units) or fitted robustly from the
dataset itself: ``median - k * spread`` (``"low"`` flags) or ``median + k * spread`` (``"high"``
flags), where ``spread`` is the median absolute deviation scaled by 1.4826 (the standard deviation
of a normal sample), floored at the rule's ``min_spread`` so that a measure that is constant on
most images (clipping is 0 on most photos) does not flag every image that differs from it.
Median and MAD are computed on the rule's scale (``"log"`` for the measures that vary by factors,
such as sharpness or noise), so a few extreme images move neither, and thresholds are reported back
in the measure's units. Images without a finite value are never flagged and never used in a fit.

Default rules (:data:`FLAG_RULES`):

================ ============================= ========= ===== ========== ==========
flag             measure                       direction scale default k min spread
================ ============================= ========= ===== ========== ==========
``blurry``       ``sharpness``                 low       log   3.0        0.05
``noisy``        ``noise``                     high      lin   3.0        0.002
``jpeg``         ``blockiness``                high      lin   3.0        0.02
``dark``         ``brightness``                low       lin   3.0        0.02
``light``        ``brightness``                high      lin   3.0        0.02
``low-contrast`` ``contrast``                  low       log   3.0        0.05
``clipped``      ``clipping``                  high      lin   3.0        0.05
``hard``         ``<metric>_difficulty``       high      lin   3.0        0.02
================ ============================= ========= ===== ========== ==========

``hard`` reads the calibrated difficulty (expected error of the reference network) of an aligned
metric; with several aligned metrics in one set of columns it becomes one flag per metric,
``hard-<metric>``. The classical measures' own difficulty columns are not used for it.

Example:
    >>> import numpy as np
    >>> sharpness = np.array([0.010, 0.012, 0.011, 0.009, 0.010, 0.0001])
    >>> result = compute_flags({"sharpness": sharpness}, flags=["blurry"])
    >>> result.flags["blurry"].tolist()
    [False, False, False, False, False, True]
    >>> result.thresholds["blurry"].source
    'fitted'
    >>> compute_flags({"sharpness": sharpness}, thresholds={"blurry": 0.0095}).flags["blurry"].tolist()
    [False, False, False, True, False, True]
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import torch

from qualoader._validation import check_type

__all__ = [
    "FLAG_RULES",
    "FlagResult",
    "FlagRule",
    "FlagThreshold",
    "compute_flags",
    "fit_threshold",
    "parse_flag_spec",
    "parse_flag_specs",
    "worst_indices",
]

#: MAD times this is the standard deviation of a normal sample: ``k`` then reads as "k sigmas".
_MAD_TO_SIGMA = 1.4826
#: Values below this are clamped before a log (a flat image has sharpness 0, which is still "low").
_LOG_FLOOR = 1e-12
#: A fitted threshold needs this many finite values: a median of three images states nothing about a dataset.
MIN_FIT_SAMPLES = 5


@dataclass(frozen=True)
class FlagRule:
    """How one flag is decided.

    Attributes:
        measure: the column it reads (``"difficulty"`` stands for every aligned metric's ``<metric>_difficulty``).
        direction: ``"low"`` flags values below the threshold, ``"high"`` values above it.
        scale: ``"log"`` or ``"linear"``: where median and MAD are taken.
        k: default number of robust standard deviations from the median.
        min_spread: floor of the robust standard deviation, on ``scale``.
        description: what the flag means, in a few words.
        bounds: the values the measure can take, ``(low, high)``: a threshold past them on the bad side
            can flag nothing, which :class:`FlagThreshold` says.
    """

    measure: str
    direction: Literal["low", "high"]
    scale: Literal["log", "linear"]
    k: float
    min_spread: float
    description: str
    bounds: tuple[float, float] = (-math.inf, math.inf)


#: The shipped flags, one table (see the module docs).
FLAG_RULES: Mapping[str, FlagRule] = {
    "blurry": FlagRule("sharpness", "low", "log", 3.0, 0.05, "low sharpness (blur, defocus)"),
    # linear, not log: clean photos' noise estimates spread over a decade (flat sky to fine texture), and
    # on a log scale median + 3 spreads lands above sigma 0.3, past every noise a camera makes
    "noisy": FlagRule("noise", "high", "linear", 3.0, 0.002, "high estimated noise sigma"),
    "jpeg": FlagRule("blockiness", "high", "linear", 3.0, 0.02, "8x8 block artefacts (strong JPEG compression)"),
    "dark": FlagRule("brightness", "low", "linear", 3.0, 0.02, "low mean brightness (under-exposed)", (0.0, 1.0)),
    "light": FlagRule("brightness", "high", "linear", 3.0, 0.02, "high mean brightness (over-exposed, washed out)", (0.0, 1.0)),
    "low-contrast": FlagRule("contrast", "low", "log", 3.0, 0.05, "low RMS contrast (flat, hazy)"),
    # clipping is 0 on most photos (MAD 0): the floor makes the default threshold 15% of values saturated,
    # which photos with black backgrounds or white text stay below
    "clipped": FlagRule("clipping", "high", "linear", 3.0, 0.05, "many pixels saturated at black or white", (0.0, 1.0)),
    "hard": FlagRule("difficulty", "high", "linear", 3.0, 0.02, "high calibrated difficulty (expected error of the network)", (0.0, 1.0)),
}

#: Measures that are classical scores, not aligned metrics: their ``_difficulty`` columns do not make a ``hard`` flag.
_CLASSICAL = frozenset(
    {"sharpness", "gradient-energy", "noise", "contrast", "brightness", "colorfulness", "blockiness", "clipping", "entropy"}
)


@dataclass(frozen=True)
class FlagThreshold:
    """The threshold one flag used, and how it was reached.

    Attributes:
        flag: the flag's name (``"blurry"``, ``"hard-task-guided"``).
        measure: the column read.
        direction: ``"low"`` or ``"high"``.
        threshold: in the measure's units; flagged: ``value < threshold`` (low) or ``value > threshold`` (high).
        source: ``"fitted"`` (median +/- k * spread) or ``"user"``.
        k: the k of a fitted threshold (``None`` for a user threshold).
        median: median of the finite values, in the measure's units (``None`` when there is none).
        count: images flagged.
        finite: images with a finite value.
        reachable: ``False`` when the threshold lies past every value the measure can take (a fitted
            fence below 0 for ``dark``, say, where brightness varies too much between images): the
            flag cannot fire on any image, and :meth:`describe` says so.
    """

    flag: str
    measure: str
    direction: str
    threshold: float
    source: str
    k: float | None
    median: float | None
    count: int
    finite: int
    reachable: bool = True

    def describe(self) -> str:
        """One line: ``blurry: sharpness < 0.00123 (fitted, median - 3 x MAD): 12 of 512``."""
        sign = "<" if self.direction == "low" else ">"
        how = "user" if self.source == "user" else f"fitted, median {'-' if self.direction == 'low' else '+'} {self.k:g} x MAD"
        line = f"{self.flag}: {self.measure} {sign} {self.threshold:.4g} ({how}): {self.count} of {self.finite}"
        if not self.reachable:
            line += f" - CANNOT FIRE: no {self.measure} is {'below' if self.direction == 'low' else 'above'} it; give a threshold"
        return line

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dictionary."""
        return {
            "flag": self.flag, "measure": self.measure, "direction": self.direction, "threshold": self.threshold, "source": self.source,
            "k": self.k, "median": self.median, "count": self.count, "finite": self.finite, "reachable": self.reachable,
        }


@dataclass
class FlagResult:
    """Flags of a set of images.

    Attributes:
        flags: flag name -> bool array :math:`(N,)`, in the order the flags were requested.
        thresholds: flag name -> :class:`FlagThreshold`.
        skipped: flag name -> why it was not computed (its measure absent, too few finite values).
    """

    flags: dict[str, np.ndarray]
    thresholds: dict[str, FlagThreshold]
    skipped: dict[str, str] = field(default_factory=dict)


def _as_array(values: Any, name: str) -> np.ndarray:
    if isinstance(values, torch.Tensor):
        values = values.detach().cpu().double().numpy()
    check_type(values, name, (np.ndarray, list, tuple), "a 1-D array of numbers (numpy, torch or a list)")
    array = np.asarray(values, dtype=np.float64)
    if array.ndim != 1:
        raise ValueError(f"{name} should be a 1-D array, but got {name} of shape {tuple(array.shape)}")
    return array


def _check_real(value: Any, name: str, *, positive: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} should be a real number, but got {name} of type {type(value).__name__}")
    if not math.isfinite(value) or (positive and value <= 0):
        raise ValueError(f"{name} should be a {'positive ' if positive else ''}finite number, but got {name}={value}")
    return float(value)


def _forward(values: np.ndarray, scale: str) -> np.ndarray:
    return np.log(np.maximum(values, _LOG_FLOOR)) if scale == "log" else values


def _backward(value: float, scale: str) -> float:
    return float(math.exp(value)) if scale == "log" else float(value)


def fit_threshold(values: Any, rule: FlagRule, k: float | None = None) -> float:
    """The robust threshold of ``rule`` on ``values``: median -/+ k * max(1.4826 * MAD, min_spread), on the rule's scale.

    Args:
        values: the measure per image :math:`(N,)` (numpy, torch or list; non-finite values are ignored).
        rule: a :class:`FlagRule` (e.g. ``FLAG_RULES["blurry"]``).
        k: robust standard deviations from the median (default: ``rule.k``).

    Returns:
        The threshold in the measure's units.

    Raises:
        ValueError: fewer than :data:`MIN_FIT_SAMPLES` finite values, or a non-finite / non-positive ``k``.
    """
    check_type(rule, "rule", FlagRule, "a FlagRule")
    k = rule.k if k is None else _check_real(k, "k", positive=True)
    array = _as_array(values, "values")
    finite = array[np.isfinite(array)]
    if finite.size < MIN_FIT_SAMPLES:
        raise ValueError(f"values should hold at least {MIN_FIT_SAMPLES} finite numbers to fit a threshold, but got {finite.size}")
    scaled = _forward(finite, rule.scale)
    median = float(np.median(scaled))
    spread = max(_MAD_TO_SIGMA * float(np.median(np.abs(scaled - median))), rule.min_spread)
    return _backward(median - k * spread if rule.direction == "low" else median + k * spread, rule.scale)


def parse_flag_spec(spec: str) -> tuple[list[str] | None, dict[str, float]]:
    """Parse a command-line flag specification: ``"all"``, ``"blurry,noisy"`` or ``"blurry=0.001,hard=0.4"``.

    Returns:
        ``(names, thresholds)``: ``names`` is ``None`` for ``"all"``; ``thresholds`` holds the user thresholds given with ``=``.

    Raises:
        ValueError: an empty item, an unknown flag or a threshold that is not a finite number.
    """
    check_type(spec, "flags", str, "a string")
    if spec.strip() == "all":
        return None, {}
    names: list[str] = []
    thresholds: dict[str, float] = {}
    for item in spec.split(","):
        name, sep, text = item.strip().partition("=")
        name = name.strip()
        if not name:
            raise ValueError(f"flags should be comma-separated flag names (optionally name=threshold), but got flags={spec!r}")
        _check_flag_name(name)
        if sep:
            try:
                value = float(text)
            except ValueError:
                value = math.nan
            if not math.isfinite(value):
                raise ValueError(f"flags should give thresholds as finite numbers, but got flags={spec!r} ({name}={text.strip()!r})")
            thresholds[name] = value
        if name not in names:
            names.append(name)
    return names, thresholds


def parse_flag_specs(specs: Sequence[str]) -> tuple[list[str] | None, dict[str, float]]:
    """Merge several :func:`parse_flag_spec` specifications (a repeated ``--flags``): ``"all"`` in any of them means every flag.

    Example:
        >>> parse_flag_specs(["blurry", "noisy=0.02,blurry"])
        (['blurry', 'noisy'], {'noisy': 0.02})
    """
    names: list[str] | None = []
    thresholds: dict[str, float] = {}
    for spec in specs:
        spec_names, spec_thresholds = parse_flag_spec(spec)
        names = None if names is None or spec_names is None else names + [name for name in spec_names if name not in names]
        thresholds.update(spec_thresholds)
    return names, thresholds


def _check_flag_name(name: str) -> None:
    if name in FLAG_RULES or (name.startswith("hard-") and len(name) > 5):
        return
    import difflib

    close = difflib.get_close_matches(name, list(FLAG_RULES), n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    raise ValueError(f"flags should be among {', '.join(sorted(FLAG_RULES))} or hard-<metric>, but got flags={name!r}{hint}")


def _difficulty_columns(columns: Mapping[str, Any]) -> list[str]:
    """Aligned metrics whose ``<metric>_difficulty`` column holds a finite value."""
    found = []
    for column, values in columns.items():
        if not column.endswith("_difficulty"):
            continue
        metric = column[: -len("_difficulty")]
        # a store with two configurations of one measure names them <measure>-<fingerprint>
        if metric in _CLASSICAL or any(metric.startswith(f"{name}-") for name in _CLASSICAL):
            continue
        array = _as_array(values, column)
        if np.isfinite(array).any():
            found.append(metric)
    return found


def _expand(names: Sequence[str] | None, columns: Mapping[str, Any]) -> tuple[list[tuple[str, FlagRule, str]], dict[str, str]]:
    """``(flag, rule, column)`` per flag to compute, and why each requested flag that cannot be computed is skipped."""
    difficulty = _difficulty_columns(columns)
    wanted = list(FLAG_RULES) if names is None else list(names)
    planned: list[tuple[str, FlagRule, str]] = []
    skipped: dict[str, str] = {}
    for name in wanted:
        if name == "hard" or name.startswith("hard-"):
            rule = FLAG_RULES["hard"]
            metrics = difficulty if name == "hard" else [name[len("hard-"):]]
            if name == "hard" and not metrics:
                skipped[name] = "no aligned metric with a calibrated difficulty"
            for metric in metrics:
                column = f"{metric}_difficulty"
                flag = "hard" if name == "hard" and len(difficulty) == 1 else f"hard-{metric}"
                if column not in columns:
                    skipped[flag] = f"no column {column}"
                else:
                    planned.append((flag, rule, column))
            continue
        rule = FLAG_RULES[name]
        if rule.measure in columns:
            planned.append((name, rule, rule.measure))
        else:
            skipped[name] = f"no column {rule.measure}"
    return planned, skipped


def compute_flags(
    columns: Mapping[str, Any],
    flags: Sequence[str] | None = None,
    *,
    thresholds: Mapping[str, float] | None = None,
    k: float | Mapping[str, float] | None = None,
) -> FlagResult:
    """Flag the images whose measures are outliers for their dataset (or past the user's thresholds).

    Args:
        columns: ``{column: values (N,)}``, as from :func:`qualoader.data.export.store_columns`:
            classical measures by name (``sharpness``, ``noise``, ...) and ``<metric>_difficulty``
            for aligned metrics. Other columns are ignored.
        flags: flag names (see :data:`FLAG_RULES`; ``hard-<metric>`` for one aligned metric), or
            ``None`` for every flag whose measure is present (the others are listed in ``skipped``).
        thresholds: ``{flag: threshold}`` in the measure's units; replaces the fitted threshold.
        k: robust standard deviations for fitted thresholds: one number for all flags or ``{flag: k}``
            (default: each rule's ``k``).

    Returns:
        A :class:`FlagResult`. A flag named in ``flags`` whose column is absent raises instead.

    Raises:
        KeyError: ``flags`` names a flag whose measure is not among ``columns``.
        ValueError: an unknown flag name, a non-finite threshold or k, columns of different lengths,
            or a flag named in ``flags`` with too few finite values to fit.
        TypeError: arguments of the wrong type.
    """
    check_type(columns, "columns", Mapping, "a mapping of column name to values")
    if flags is not None:
        check_type(flags, "flags", (list, tuple), "a list of flag names, or None")
        for name in flags:
            check_type(name, "flags[i]", str, "a flag name")
            _check_flag_name(name)
    user = dict(thresholds or {})
    check_type(user, "thresholds", dict, "a mapping of flag name to threshold")
    for name, value in user.items():
        _check_flag_name(name)
        _check_real(value, f"thresholds[{name!r}]")
    planned, skipped = _expand(flags, columns)
    if flags is not None and skipped:
        name, why = next(iter(skipped.items()))
        raise KeyError(f"flags should name flags whose measure is among the columns, but got {name!r} with {why} "
                       f"(columns: {', '.join(columns)})")
    lengths = {len(columns[column]) for _, _, column in planned}
    if len(lengths) > 1:
        raise ValueError(f"columns should all have the same length, but got lengths {sorted(lengths)}")
    result = FlagResult(flags={}, thresholds={}, skipped=skipped)
    for flag, rule, column in planned:
        values = _as_array(columns[column], column)
        finite = np.isfinite(values)
        flag_k = (k.get(flag, k.get(flag.split("-", 1)[0] if flag.startswith("hard-") else flag)) if isinstance(k, Mapping) else k)
        if flag in user or (flag.startswith("hard-") and "hard" in user and flag not in user):
            threshold, source, used_k = user.get(flag, user.get("hard")), "user", None
        else:
            if int(finite.sum()) < MIN_FIT_SAMPLES:
                if flags is not None:
                    raise ValueError(f"flags should name measures with at least {MIN_FIT_SAMPLES} finite values to fit a threshold, "
                                     f"but got {flag!r} with {int(finite.sum())} (give a threshold instead)")
                result.skipped[flag] = f"{int(finite.sum())} finite values, fewer than {MIN_FIT_SAMPLES}"
                continue
            used_k = rule.k if flag_k is None else _check_real(flag_k, f"k[{flag!r}]", positive=True)
            threshold, source = fit_threshold(values, rule, used_k), "fitted"
        # an image without a finite value is never flagged: NaN compares False, but an infinite score would pass the test
        marked = finite & (values < threshold if rule.direction == "low" else values > threshold)
        median = float(np.median(values[finite])) if finite.any() else None
        result.flags[flag] = marked
        reachable = threshold > rule.bounds[0] if rule.direction == "low" else threshold < rule.bounds[1]
        result.thresholds[flag] = FlagThreshold(flag, column, rule.direction, float(threshold), source, used_k, median,
                                                int(marked.sum()), int(finite.sum()), bool(reachable))
    return result


def worst_indices(columns: Mapping[str, Any], result: FlagResult, flag: str, count: int) -> list[int]:
    """Indices of up to ``count`` flagged images, worst first (furthest on the flag's bad side; ties by index).

    Args:
        columns: the columns ``result`` was computed from.
        result: a :class:`FlagResult`.
        flag: one of ``result.flags``.
        count: how many at most.
    """
    check_type(result, "result", FlagResult, "a FlagResult")
    if flag not in result.flags:
        raise KeyError(f"flag should be one of the computed flags {sorted(result.flags)}, but got flag={flag!r}")
    info = result.thresholds[flag]
    values = _as_array(columns[info.measure], info.measure)
    flagged = np.flatnonzero(result.flags[flag])
    oriented = values[flagged] if info.direction == "low" else -values[flagged]
    return flagged[np.argsort(oriented, kind="stable")][:count].tolist()

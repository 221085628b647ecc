"""The quality policies shared by the samplers and the webdataset stream stages: one vocabulary.

A sampler (:mod:`qualoader.samplers`) sees every score up front; a stream stage
(:mod:`qualoader.webdataset`) sees one sample at a time. Both apply the same policies, so they
take the same arguments, with the same defaults and the same checks, all defined here:

==================== =================== ==================================================================
argument             default             accepted values
==================== =================== ==================================================================
``num_strata``       4 (when nothing     a positive int ``K``: equal-frequency (quantile) strata
                     else fixes ``K``)
``edges``            ``None``            ``K - 1`` finite, strictly increasing inner boundaries; stratum
                                         ``k`` holds ``edges[k - 1] <= score < edges[k]`` (0: lowest)
``proportions``      ``"uniform"``       ``"uniform"``, ``"natural"`` (the strata's own shares) or ``K``
                                         non-negative floats summing to 1 (within 1e-6), stratum 0 first
``pacing``           ``"linear"``        one of :data:`PACINGS` or a picklable callable
                                         ``progress -> fraction in (0, 1]`` (forced to 1 at progress 1)
``start_fraction``   0.2                 a float in (0, 1]: the admitted fraction of the samples at progress 0
``num_steps``        4                   a positive int: steps of the ``"step"`` pacing
``temperature``      per policy          a finite float >= 0 (0: a hard rule). Rank-softmax weights: 1.0 in
                                         the weighted sampler; ``reweight`` uses them when given one (> 0,
                                         a stream has no known extreme). Curriculum stage: 0.05, the
                                         softness of its rejection in fractions of the stream
``favour``           ``"easy"``          one of :data:`FAVOUR`
``order``            ``"easy-to-hard"``  one of :data:`ORDERS`
``higher_is_better`` required for plain  a bool; a :class:`~qualoader.data.ScoreTable` carries its own,
                     scores              a difficulty is always lower-is-better
``online``           ``None``            an :class:`OnlineDifficulty`: blend the prior with the per-sample
                                         loss fed back by ``update(indices, losses)``
==================== =================== ==================================================================

Proportions must sum to 1 rather than being normalised because a list such as ``[0.3, 0.3, 0.3]``
is far more often a typo than a wish for thirds.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from itertools import pairwise
from typing import Any, TypeVar

import numpy as np
import torch
from torch import Tensor

from qualoader._validation import check_choice, check_positive_int, check_probability

__all__ = [
    "DEFAULT_NUM_STRATA",
    "DEFAULT_PACING",
    "DEFAULT_START_FRACTION",
    "FAVOUR",
    "ORDERS",
    "OnlineDifficulty",
    "PACINGS",
    "PROPORTIONS",
    "Pacing",
    "check_edges",
    "check_pacing",
    "check_proportions",
    "check_real",
    "check_start_fraction",
    "check_temperature",
    "pacing_fraction",
    "resolve_direction",
    "resolve_num_strata",
]

P = TypeVar("P", float, Tensor)

#: Named target mixes: ``"uniform"`` (every stratum equally) and ``"natural"`` (each stratum's own share).
PROPORTIONS = frozenset({"uniform", "natural"})

#: Named pacing functions ``g(t)`` for start fraction ``s``: ``linear`` ``s + (1 - s) t``;
#: ``root`` ``sqrt(s^2 + (1 - s^2) t)`` (Platanios et al. 2019); ``step`` ``s + (1 - s) floor(n t) / n``
#: with ``n = num_steps``; ``exp`` ``s^(1 - t)`` (geometric growth, Hacohen & Weinshall 2019).
PACINGS = frozenset({"linear", "root", "step", "exp"})

#: ``"easy"``: favour high-quality (easy) samples; ``"hard"``: favour low-quality ones (hard mining).
FAVOUR = frozenset({"easy", "hard"})

#: ``"easy-to-hard"`` (curriculum) or ``"hard-to-easy"`` (anti-curriculum).
ORDERS = frozenset({"easy-to-hard", "hard-to-easy"})

#: Strata when neither ``num_strata``, ``edges`` nor a list of proportions fixes their number (quartiles).
DEFAULT_NUM_STRATA = 4
#: Default pacing: linear is the plainest schedule to reason about; pass ``"root"`` for Platanios et al.
DEFAULT_PACING = "linear"
#: Fraction admitted at progress 0 by default.
DEFAULT_START_FRACTION = 0.2

#: A pacing: a name of :data:`PACINGS` or a callable ``progress -> admitted fraction``.
Pacing = str | Callable[[float], float]

# Explicit proportions are read back from float text and sums of thirds; 1e-6 forgives that and
# nothing a person would type.
_SUM_TOLERANCE = 1e-6


def check_real(value: Any, name: str) -> float:
    """``value`` as a float if it is a finite real number (not a bool).

    Raises:
        TypeError: not an int or float.
        ValueError: NaN or infinite.
    """
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"{name} should be a real number, but got {name} of type {type(value).__name__}")
    if not math.isfinite(value):
        raise ValueError(f"{name} should be finite, but got {name}={value}")
    return float(value)


def _as_float_sequence(values: Any, name: str) -> tuple[float, ...]:
    if isinstance(values, (str, bytes)) or not isinstance(values, (Sequence, np.ndarray, Tensor)):
        raise TypeError(f"{name} should be a sequence of floats, but got {name} of type {type(values).__name__}")
    array = np.asarray(values.detach().cpu() if isinstance(values, Tensor) else values)
    if array.ndim != 1 or array.size == 0:
        raise ValueError(f"{name} should be a non-empty 1-D sequence of floats, but got {name} of shape {array.shape}")
    if array.dtype == np.bool_ or not (np.issubdtype(array.dtype, np.floating) or np.issubdtype(array.dtype, np.integer)):
        raise TypeError(f"{name} should hold real numbers, but got {name}={array.tolist()!r}")
    return tuple(float(v) for v in array.tolist())


def check_edges(edges: Any, name: str = "edges") -> tuple[float, ...]:
    """Validate strata edges: ``K - 1`` finite, strictly increasing inner boundaries.

    Args:
        edges: a sequence, array or 1-D tensor of floats.
        name: argument name used in error messages.

    Returns:
        The edges as a tuple of floats.

    Raises:
        TypeError: not a sequence of real numbers.
        ValueError: empty, not finite or not strictly increasing.

    Example:
        >>> check_edges([0.2, 0.5])
        (0.2, 0.5)
    """
    values = _as_float_sequence(edges, name)
    if not all(math.isfinite(v) for v in values) or any(b <= a for a, b in pairwise(values)):
        raise ValueError(f"{name} should be finite and strictly increasing, but got {name}={list(values)}")
    return values


def resolve_num_strata(num_strata: int | None, edges: Any, proportions: Any) -> tuple[int, tuple[float, ...] | None]:
    """The number of strata ``K`` and the checked edges, from whichever of the three arguments fixes ``K``.

    ``num_strata`` and ``edges`` are alternatives (at most one); a list of proportions must then
    have ``K`` entries, or fixes ``K`` itself when neither is given; otherwise ``K`` is
    :data:`DEFAULT_NUM_STRATA`.

    Raises:
        ValueError: both ``num_strata`` and ``edges``; a list of proportions of another length.

    Example:
        >>> resolve_num_strata(None, [0.5], "uniform")
        (2, (0.5,))
        >>> resolve_num_strata(None, None, [0.5, 0.3, 0.2])
        (3, None)
    """
    if num_strata is not None and edges is not None:
        raise ValueError(f"num_strata and edges should be given one at a time, but got num_strata={num_strata!r} and edges={edges!r}")
    checked = None if edges is None else check_edges(edges)
    if num_strata is not None:
        count = check_positive_int(num_strata, "num_strata")
    elif checked is not None:
        count = len(checked) + 1
    elif not isinstance(proportions, str) and isinstance(proportions, (Sequence, np.ndarray, Tensor)):
        count = len(proportions)
    else:
        count = DEFAULT_NUM_STRATA
    return count, checked


def check_proportions(proportions: Any, num_strata: int) -> tuple[float, ...] | None:
    """Validate target proportions for ``num_strata`` strata.

    Args:
        proportions: ``"uniform"``, ``"natural"`` or ``num_strata`` non-negative floats summing to 1.
        num_strata: the number of strata ``K``.

    Returns:
        ``K`` shares summing to 1, or ``None`` for ``"natural"`` (the caller knows the strata's sizes).

    Raises:
        TypeError: neither a name nor a sequence of real numbers.
        ValueError: an unknown name; the wrong length; a negative or non-finite entry; a sum other than 1.

    Example:
        >>> check_proportions("uniform", 4)
        (0.25, 0.25, 0.25, 0.25)
    """
    if isinstance(proportions, str):
        check_choice(proportions, "proportions", PROPORTIONS)
        return None if proportions == "natural" else (1.0 / num_strata,) * num_strata
    if not isinstance(proportions, (Sequence, np.ndarray, Tensor)):
        raise TypeError(
            f"proportions should be 'uniform', 'natural' or a list of floats, but got proportions of type {type(proportions).__name__}"
        )
    shares = _as_float_sequence(proportions, "proportions")
    if len(shares) != num_strata:
        raise ValueError(f"proportions should have one entry per stratum ({num_strata}), but got proportions={list(shares)}")
    if not all(math.isfinite(p) and p >= 0 for p in shares):
        raise ValueError(f"proportions should be non-negative and finite, but got proportions={list(shares)}")
    total = math.fsum(shares)
    if abs(total - 1.0) > _SUM_TOLERANCE:
        raise ValueError(f"proportions should sum to 1, but got proportions={list(shares)} summing to {total:.6g}")
    return tuple(p / total for p in shares)


def check_pacing(pacing: Any) -> Pacing:
    """Return ``pacing`` if it is one of :data:`PACINGS` or a callable.

    Raises:
        TypeError: neither a str nor a callable.
        ValueError: an unknown name.
    """
    if callable(pacing):
        return pacing
    if not isinstance(pacing, str):
        raise TypeError(
            f"pacing should be one of {sorted(PACINGS)} or a callable progress -> fraction, but got pacing of type {type(pacing).__name__}"
        )
    check_choice(pacing, "pacing", PACINGS)
    return pacing


def pacing_fraction(pacing: Pacing, progress: P, start_fraction: float = DEFAULT_START_FRACTION, num_steps: int = 4) -> P:
    """Admitted fraction at progress in [0, 1] (clamped): in ``[start_fraction, 1]`` for a named pacing.

    Args:
        pacing: one of :data:`PACINGS`, or a callable ``progress (float) -> fraction in (0, 1]``,
            called once per distinct progress value and taken as 1 from progress 1 on.
        progress: a float, or a tensor :math:`(T,)` of progress values.
        start_fraction: the fraction at progress 0 (named pacings only).
        num_steps: steps of the ``"step"`` pacing.

    Returns:
        The fraction, of the type and shape of ``progress``; 1 from progress 1 on.

    Raises:
        ValueError: an unknown name, or a callable returning a value outside (0, 1].

    Example:
        >>> pacing_fraction("linear", 0.5, 0.5)
        0.75
        >>> pacing_fraction(lambda t: 0.5 + t / 4, 0.0)
        0.5
    """
    pacing = check_pacing(pacing)
    if callable(pacing):
        return _custom_fraction(pacing, progress)
    t = progress.clamp(0.0, 1.0) if isinstance(progress, Tensor) else min(max(float(progress), 0.0), 1.0)
    s = start_fraction
    if pacing == "linear":
        return s + (1 - s) * t
    if pacing == "root":
        return (s * s + (1 - s * s) * t) ** 0.5
    if pacing == "step":
        return s + (1 - s) * ((t * num_steps) // 1) / num_steps
    return s ** (1 - t)


def _custom_fraction(pacing: Callable[[float], float], progress: P) -> P:
    values = progress.reshape(-1).double() if isinstance(progress, Tensor) else torch.tensor([float(progress)], dtype=torch.float64)
    # Called once per distinct value: a sampler paced by sample asks for millions of equal steps.
    unique, inverse = values.clamp(0, 1).unique(return_inverse=True)
    fractions = torch.tensor([float(pacing(t)) for t in unique.tolist()], dtype=torch.float64)[inverse]
    if not bool(((fractions > 0) & (fractions <= 1)).all()):
        raise ValueError(
            f"pacing should return fractions in (0, 1], but got values in [{float(fractions.min()):.4g}, {float(fractions.max()):.4g}]"
        )
    fractions = torch.where(values >= 1, torch.ones_like(fractions), fractions)
    if isinstance(progress, Tensor):
        return fractions.reshape(progress.shape)
    return float(fractions[0])


def check_start_fraction(start_fraction: Any) -> float:
    """Return ``start_fraction`` as a float in (0, 1]."""
    return check_probability(start_fraction, "start_fraction", open_low=True)


def check_temperature(temperature: Any) -> float:
    """Return ``temperature`` as a finite float >= 0 (0: the policy's hard rule).

    Raises:
        TypeError: not a real number.
        ValueError: negative or not finite.
    """
    value = check_real(temperature, "temperature")
    if value < 0:
        raise ValueError(f"temperature should be a finite float >= 0, but got temperature={temperature!r}")
    return value


def resolve_direction(
    higher_is_better: Any,
    carried: bool | None,
    name: str = "scores",
    carrier: str = "its ScoreTable",
    plain: str = "a plain array, tensor or sequence",
) -> bool:
    """The score direction: as given, or as carried by the scores' source (a ``ScoreTable``'s metric).

    Plain arrays carry no direction, and guessing one would silently run a curriculum backwards
    for lower-is-better metrics (``bn-shift``), so it must then be given.

    Args:
        higher_is_better: ``True``, ``False`` or ``None`` (take the carried direction).
        carried: the direction the scores carry, or ``None`` for plain values.
        name: the argument holding the scores, for error messages.
        carrier: what carries the direction, for error messages.
        plain: what ``name`` is when it carries none, for error messages.

    Raises:
        TypeError: ``higher_is_better`` is not a bool or ``None``, or is ``None`` for plain values.
        ValueError: it contradicts the carried direction.

    Example:
        >>> resolve_direction(None, carried=False)
        False
    """
    if higher_is_better is not None and not isinstance(higher_is_better, bool):
        raise TypeError(f"higher_is_better should be a bool or None, but got higher_is_better of type {type(higher_is_better).__name__}")
    if carried is None:
        if higher_is_better is None:
            raise TypeError(
                f"higher_is_better should be given (True or False) when {name} is {plain}, "
                "but got higher_is_better=None; pass it (a ScoreTable, or a difficulty, carries its own direction)"
            )
        return higher_is_better
    if higher_is_better is not None and higher_is_better != carried:
        raise ValueError(
            f"higher_is_better should match the direction {carrier} carries ({carried}), but got higher_is_better={higher_is_better}; "
            f"use favour= or order= to reverse a policy"
        )
    return carried


@dataclass(frozen=True)
class OnlineDifficulty:
    """How a sampler blends its stored prior with the per-sample loss the training loop feeds back.

    With ``online=OnlineDifficulty()`` a sampler accepts ``update(indices, losses)``. A sample
    observed ``n`` times is scored ``(1 - w) * prior + w * loss_on_prior_scale`` with
    ``w = n / (n + prior_strength)`` (the loss mapped to the prior's scale by rank); a sample never
    observed keeps its prior. Observations count from the next epoch on, so the first epoch
    follows the prior alone (see :mod:`qualoader.samplers.feedback`).

    Args:
        prior_strength: observations the prior is worth (> 0; default 1.0: after one observation
            prior and loss weigh the same, after three the loss weighs 3/4).
        momentum: weight of the previous observed loss when a new one arrives, in [0, 1)
            (default 0.0: the last loss, as loss-based pruning uses it).

    Example:
        >>> OnlineDifficulty(prior_strength=2.0)
        OnlineDifficulty(prior_strength=2.0, momentum=0.0)
    """

    prior_strength: float = 1.0
    momentum: float = 0.0

    def __post_init__(self) -> None:
        strength = check_real(self.prior_strength, "prior_strength")
        if strength <= 0:
            raise ValueError(f"prior_strength should be > 0, but got prior_strength={self.prior_strength!r}")
        momentum = check_real(self.momentum, "momentum")
        if not 0 <= momentum < 1:
            raise ValueError(f"momentum should be in [0, 1), but got momentum={self.momentum!r}")
        # Stored as floats so that equal settings compare and print alike (1 and 1.0).
        object.__setattr__(self, "prior_strength", strength)
        object.__setattr__(self, "momentum", momentum)

"""A bounded-memory running quantile estimate, for stages that bin a stream they cannot sort."""

from __future__ import annotations

import math
from bisect import bisect_left, bisect_right, insort

import numpy as np

from qualoader._validation import check_positive_int
from qualoader.webdataset._common import UniformStream

__all__ = ["QuantileSketch"]


class QuantileSketch:
    """Running quantile sketch: a seeded uniform reservoir of at most ``capacity`` values, kept sorted.

    Memory is bounded by ``capacity`` whatever the stream length; quantiles and ranks have the
    error of a uniform sample of that size (about ``1 / sqrt(capacity)``).

    Args:
        capacity: reservoir size.
        rng: generator deciding which values the reservoir keeps.

    Example:
        >>> sketch = QuantileSketch(256, np.random.default_rng(0))
        >>> for value in range(1000):
        ...     sketch.update(float(value))
        >>> 400 < sketch.quantile(0.5) < 600
        True
    """

    def __init__(self, capacity: int, rng: np.random.Generator) -> None:
        self.capacity = check_positive_int(capacity, "capacity")
        self.count = 0
        self._uniform = UniformStream(rng)
        self._reservoir: list[float] = []  # arrival slots, for uniform replacement
        self._sorted: list[float] = []  # the same values sorted, for O(log n) ranks

    def __len__(self) -> int:
        return len(self._sorted)

    def update(self, value: float) -> None:
        """Add one finite value."""
        if not math.isfinite(value):
            raise ValueError(f"value should be finite, but got value={value}")
        self.count += 1
        if len(self._reservoir) < self.capacity:
            self._reservoir.append(value)
            insort(self._sorted, value)
            return
        # Algorithm R: the new value replaces a slot with probability capacity / count.
        slot = int(self._uniform() * self.count)
        if slot < self.capacity:
            old = self._reservoir[slot]
            # Any copy of an equal value will do: copies are indistinguishable in the sorted list.
            del self._sorted[bisect_left(self._sorted, old)]
            self._reservoir[slot] = value
            insort(self._sorted, value)

    def cdf(self, value: float) -> float:
        """Estimated fraction of the stream below ``value`` (ties count half)."""
        if not self._sorted:
            raise ValueError("the sketch should have seen a value before cdf(), but got an empty sketch")
        below = bisect_left(self._sorted, value)
        not_above = bisect_right(self._sorted, value)
        # Mid-rank: a run of tied values lands in the middle of its range instead of at its low end, so a
        # heavily tied tag does not pile into the lowest stratum.
        return (below + not_above) / (2.0 * len(self._sorted))

    def quantile(self, q: float) -> float:
        """Estimated ``q``-quantile, ``q`` in [0, 1]."""
        if not self._sorted:
            raise ValueError("the sketch should have seen a value before quantile(), but got an empty sketch")
        index = min(len(self._sorted) - 1, max(0, math.ceil(q * len(self._sorted)) - 1))
        return self._sorted[index]

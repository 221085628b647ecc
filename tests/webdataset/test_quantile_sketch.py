"""QuantileSketch: a bounded reservoir whose ranks estimate the stream's quantiles."""

from __future__ import annotations

import numpy as np
import pytest

from qualoader.webdataset import QuantileSketch


def test_quantile_sketch_is_bounded_and_accurate() -> None:
    rng = np.random.default_rng(0)
    sketch = QuantileSketch(512, np.random.default_rng(1))
    values = rng.normal(size=50_000)
    for value in values.tolist():
        sketch.update(value)
    assert len(sketch) == 512 and sketch.count == 50_000
    for q in (0.1, 0.5, 0.9):
        assert abs(sketch.cdf(float(np.quantile(values, q))) - q) < 0.06
    with pytest.raises(ValueError, match="finite"):
        sketch.update(float("inf"))
    with pytest.raises(ValueError, match="empty sketch"):
        QuantileSketch(4, rng).quantile(0.5)

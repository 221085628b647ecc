"""The train-with-samplers example in quick mode: every sampler trains a CNN far above chance."""

from __future__ import annotations

import pytest

_SAMPLERS = {"random", "stratified", "stratified-batch", "weighted-easy", "weighted-hard", "curriculum"}


@pytest.mark.slow
def test_quick_run_trains_every_sampler(fashion_mnist_test, load_script) -> None:
    example = load_script("examples/train_with_samplers.py")
    accuracies = example.main(["--quick"])
    assert set(accuracies) == _SAMPLERS
    for name, value in accuracies.items():
        assert isinstance(value, float), name
        assert value > 0.5, f"{name}: accuracy {value:.3f} is not far above chance (0.1)"

"""The train-with-samplers example in quick mode: every sampler trains a CNN far above chance."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

_SCRIPT = Path(__file__).resolve().parents[2] / "examples" / "train_with_samplers.py"
_SAMPLERS = {"random", "stratified", "stratified-batch", "weighted-easy", "weighted-hard", "curriculum"}


def _load_example():
    spec = importlib.util.spec_from_file_location("train_with_samplers_example", _SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("train_with_samplers_example", module)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_quick_run_trains_every_sampler(fashion_mnist_test) -> None:
    example = _load_example()
    accuracies = example.main(["--quick"])
    assert set(accuracies) == _SAMPLERS
    for name, value in accuracies.items():
        assert isinstance(value, float), name
        assert value > 0.5, f"{name}: accuracy {value:.3f} is not far above chance (0.1)"

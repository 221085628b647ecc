"""The domain guard's warning points at the user's own line, and its warning and error each say what is true of them.

Input: random RGB images at 224 px, far outside the embedded 28 px grey Fashion-MNIST reference
(colour and 8x the native size), so every path below trips the guard.
"""

from __future__ import annotations

import warnings

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from qualoader.data import QualityDataset, QualityLoader
from qualoader.engine import ScoringEngine
from qualoader.metrics import create_metric
from qualoader.profiles import DomainError, DomainWarning


@pytest.fixture
def colour_224() -> torch.Tensor:
    return torch.rand(4, 3, 224, 224, generator=torch.Generator().manual_seed(0))


def _domain_warnings(caught: list[warnings.WarningMessage]) -> list[warnings.WarningMessage]:
    return [w for w in caught if issubclass(w.category, DomainWarning)]


@pytest.mark.parametrize("name", ["bn-shift", "feature-distance"])
def test_direct_call_warns_at_the_callers_line(name: str, colour_224: torch.Tensor) -> None:
    metric = create_metric(name)
    arguments = (colour_224, colour_224) if metric.requires_reference else (colour_224,)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        line = _next_line()
        metric(*arguments)
    (warning,) = _domain_warnings(caught)
    assert (warning.filename, warning.lineno) == (__file__, line)


def test_engine_warns_at_the_callers_line(colour_224: torch.Tensor) -> None:
    engine = ScoringEngine(["bn-shift", "sharpness"], device="cpu")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        line = _next_line()
        engine.score(colour_224)
    (warning,) = _domain_warnings(caught)
    assert (warning.filename, warning.lineno) == (__file__, line)


def test_quality_loader_warns_at_the_users_loop(colour_224: torch.Tensor) -> None:
    loader = DataLoader(QualityDataset(TensorDataset(colour_224, torch.arange(4))), batch_size=2)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        line = _next_line()
        batches = list(QualityLoader(loader, create_metric("bn-shift"), "cpu"))
    assert len(batches) == 2
    (warning,) = _domain_warnings(caught)  # once per metric instance, from the first batch
    assert (warning.filename, warning.lineno) == (__file__, line)


def test_warning_says_strict_makes_it_an_error(colour_224: torch.Tensor) -> None:
    with pytest.warns(DomainWarning) as caught:
        create_metric("bn-shift")(colour_224)
    message = str(_domain_warnings(list(caught))[0].message)
    assert "qualoader calibrate --reference" in message and "profile=PROFILE.json" in message
    assert message.endswith("strict=True (--strict) turns this warning into an error")


def test_error_says_what_to_do_not_that_it_is_a_warning(colour_224: torch.Tensor) -> None:
    with pytest.raises(DomainError) as raised:
        create_metric("bn-shift", strict=True)(colour_224)
    message = str(raised.value)
    assert "warning into an error" not in message
    assert "qualoader calibrate --reference" in message and "profile=PROFILE.json" in message
    assert message.endswith("build the metric with strict=False (leave out --strict)")


def _next_line() -> int:
    """The line number after the caller's line: where the caller's next statement (the scoring call) is."""
    import inspect

    frame = inspect.currentframe()
    assert frame is not None and frame.f_back is not None
    return frame.f_back.f_lineno + 1

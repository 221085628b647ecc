"""Fixtures of the sampler tests (the shared contract checks live in ``sampler_contract.py``)."""

from __future__ import annotations

import pytest
import torch

#: Scores of a small dataset: seeded, with some ties, 1,000 samples.
N_SCORES = 1000


@pytest.fixture(scope="module")
def scores() -> torch.Tensor:
    """Scores :math:`(1000,)` in [0, 1], seeded, with some exact ties."""
    values = torch.rand(N_SCORES, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    values[::50] = 0.5
    return values

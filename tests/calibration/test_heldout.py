"""Held-out calibration fits: the seeded split, the figures, and the refusals that keep NaN out of profiles."""

from __future__ import annotations

import math

import pytest
import torch

from qualoader.calibration.heldout import fit_held_out, held_out_split
from qualoader.datasets import load_fashion_mnist
from qualoader.metrics import create_metric
from qualoader.reference import default_reference


def test_split_is_seeded_disjoint_and_complete() -> None:
    fit, held = held_out_split(50, 0.3, seed=4)
    assert len(held) == 15 and len(fit) == 35
    assert sorted(fit.tolist() + held.tolist()) == list(range(50))
    again_fit, again_held = held_out_split(50, 0.3, seed=4)
    assert torch.equal(fit, again_fit) and torch.equal(held, again_held)
    assert not torch.equal(held, held_out_split(50, 0.3, seed=5)[1])
    assert len(held_out_split(2, 0.01, seed=0)[1]) == 1  # at least one image on each side


@pytest.mark.parametrize(
    ("n", "holdout", "message"),
    [(1, 0.3, "n should be at least 2"), (10, 1.0, r"holdout should be a fraction in \(0, 1\)"), (10, True, "holdout should be")],
)
def test_split_bad_arguments(n, holdout, message) -> None:
    with pytest.raises(ValueError, match=message):
        held_out_split(n, holdout, seed=0)


@pytest.fixture(scope="module")
def fashion() -> tuple[torch.Tensor, torch.Tensor]:
    images, labels = load_fashion_mnist("test")
    return images[:40], labels[:40]


def test_figures_are_finite_and_held_out(fashion) -> None:
    images, labels = fashion
    reference = default_reference()
    calibration, figures = fit_held_out(
        create_metric("bn-shift"), images, labels, reference, ["gaussian_noise"], (0, 5), holdout=0.25, seed=2
    )
    assert figures["n_fit"] == 30 and figures["n_held_out"] == 10
    for part, rows in (("fit", 60), ("held_out", 20)):
        assert figures[part]["rows"] == rows
        assert all(math.isfinite(value) for value in figures[part].values())
        assert 0.0 < figures[part]["error_rate"] < 1.0
    assert calibration.info["fit"] == figures["fit"]
    prior = calibration(torch.linspace(0, 50, 20))
    assert bool(((prior >= 0) & (prior <= 1)).all())


def test_error_rate_of_one_is_refused(fashion) -> None:
    images, _ = fashion
    reference = default_reference()
    with torch.no_grad():
        predicted = torch.cat([reference(images[i : i + 20]).argmax(1) for i in range(0, 40, 20)])
    wrong = (predicted + 1) % 10  # labels the network never predicts on these clean images (the only condition below)
    with pytest.raises(
        ValueError,
        match=r"error rate on the fit sweep should be strictly between 0 and 1 to fit a difficulty, but got error_rate=1 \(no image right",
    ):
        fit_held_out(create_metric("bn-shift"), images, wrong, reference, ["gaussian_noise"], (0,), holdout=0.25, seed=0)


def test_labels_outside_the_outputs_are_refused(fashion) -> None:
    images, labels = fashion
    with pytest.raises(ValueError, match=r"labels should be class indices in \[0, 10\)"):
        fit_held_out(create_metric("bn-shift"), images, labels + 5, default_reference(), ["gaussian_noise"], (0, 3))

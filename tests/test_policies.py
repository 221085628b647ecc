"""The shared policy vocabulary: strata edges and counts, proportions, pacing, temperature, direction."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from qualoader.policies import (
    PACINGS,
    OnlineDifficulty,
    check_edges,
    check_pacing,
    check_proportions,
    check_temperature,
    pacing_fraction,
    resolve_direction,
    resolve_num_strata,
)


@pytest.mark.parametrize("edges", [[0.1, 0.5], (0.1, 0.5), np.array([0.1, 0.5]), torch.tensor([0.1, 0.5], dtype=torch.float64)])
def test_edges_accept_sequences_arrays_and_tensors(edges):
    assert check_edges(edges) == (0.1, 0.5)


@pytest.mark.parametrize(
    ("edges", "error", "match"),
    [
        ("0.5", TypeError, "edges should be a sequence of floats, but got edges of type str"),
        ([], ValueError, "edges should be a non-empty 1-D sequence"),
        ([0.5, 0.5], ValueError, "edges should be finite and strictly increasing, but got edges=\\[0.5, 0.5\\]"),
        ([0.1, float("inf")], ValueError, "edges should be finite and strictly increasing"),
        (["a"], TypeError, "edges should hold real numbers"),
    ],
)
def test_bad_edges_are_refused(edges, error, match):
    with pytest.raises(error, match=match):
        check_edges(edges)


def test_the_number_of_strata_comes_from_one_argument():
    assert resolve_num_strata(3, None, "uniform") == (3, None)
    assert resolve_num_strata(None, [0.2, 0.4], "natural") == (3, (0.2, 0.4))
    assert resolve_num_strata(None, None, [0.7, 0.3]) == (2, None)
    assert resolve_num_strata(None, None, "uniform") == (4, None)
    with pytest.raises(ValueError, match="num_strata and edges should be given one at a time"):
        resolve_num_strata(2, [0.5], "uniform")
    with pytest.raises(ValueError, match="num_strata should be a positive int, but got num_strata=0"):
        resolve_num_strata(0, None, "uniform")


def test_proportions_must_sum_to_one():
    assert check_proportions("uniform", 2) == (0.5, 0.5)
    assert check_proportions("natural", 3) is None
    assert check_proportions([0.2, 0.3, 0.5], 3) == pytest.approx((0.2, 0.3, 0.5))
    with pytest.raises(ValueError, match="proportions should sum to 1, but got proportions=\\[1.0, 1.0\\] summing to 2"):
        check_proportions([1, 1], 2)
    with pytest.raises(ValueError, match="proportions should have one entry per stratum \\(3\\)"):
        check_proportions([0.5, 0.5], 3)
    with pytest.raises(ValueError, match="proportions should be non-negative and finite"):
        check_proportions([1.5, -0.5], 2)
    with pytest.raises(ValueError, match="proportions should be one of \\{'natural', 'uniform'\\}, but got proportions='even'"):
        check_proportions("even", 2)
    with pytest.raises(TypeError, match="proportions should be 'uniform', 'natural' or a list of floats"):
        check_proportions(0.5, 2)


@pytest.mark.parametrize("pacing", sorted(PACINGS))
def test_named_pacings_agree_on_floats_and_tensors(pacing):
    progress = torch.linspace(0, 1, 11, dtype=torch.float64)
    tensor = pacing_fraction(pacing, progress, 0.2, 4)
    floats = [pacing_fraction(pacing, float(t), 0.2, 4) for t in progress]
    torch.testing.assert_close(tensor, torch.tensor(floats, dtype=torch.float64))
    assert float(tensor[0]) == pytest.approx(0.2) and float(tensor[-1]) == pytest.approx(1.0)


def test_custom_pacing_is_checked_and_reaches_one():
    assert pacing_fraction(lambda t: 0.25, 0.5) == 0.25
    assert pacing_fraction(lambda t: 0.25, 1.0) == 1.0
    assert pacing_fraction(lambda t: 0.25, torch.tensor([0.0, 2.0])).tolist() == [0.25, 1.0]
    with pytest.raises(ValueError, match="pacing should return fractions in \\(0, 1\\], but got values in \\[0, 0\\]"):
        pacing_fraction(lambda t: 0.0, 0.5)
    with pytest.raises(TypeError, match="pacing should be one of .* or a callable progress -> fraction, but got pacing of type int"):
        check_pacing(3)


def test_temperature_is_a_non_negative_float():
    assert check_temperature(0) == 0.0 and check_temperature(0.5) == 0.5
    with pytest.raises(ValueError, match="temperature should be a finite float >= 0, but got temperature=-1"):
        check_temperature(-1)
    with pytest.raises(ValueError, match="temperature should be finite, but got temperature=nan"):
        check_temperature(float("nan"))
    with pytest.raises(TypeError, match="temperature should be a real number, but got temperature of type bool"):
        check_temperature(True)


def test_direction_is_required_for_plain_scores_and_must_agree_with_a_table():
    assert resolve_direction(True, None) is True
    assert resolve_direction(None, False) is False and resolve_direction(False, False) is False
    with pytest.raises(TypeError, match="higher_is_better should be given \\(True or False\\) when scores is a plain array"):
        resolve_direction(None, None)
    with pytest.raises(ValueError, match="higher_is_better should match the direction its ScoreTable carries \\(True\\)"):
        resolve_direction(False, True)
    with pytest.raises(TypeError, match="higher_is_better should be a bool or None, but got higher_is_better of type int"):
        resolve_direction(1, None)


def test_online_difficulty_checks_its_settings_and_stores_floats():
    assert OnlineDifficulty(prior_strength=2, momentum=0) == OnlineDifficulty(prior_strength=2.0, momentum=0.0)
    assert isinstance(OnlineDifficulty(prior_strength=2).prior_strength, float)
    with pytest.raises(ValueError, match="prior_strength should be > 0, but got prior_strength=0"):
        OnlineDifficulty(prior_strength=0)
    with pytest.raises(ValueError, match="prior_strength should be finite"):
        OnlineDifficulty(prior_strength=float("inf"))
    with pytest.raises(ValueError, match=r"momentum should be in \[0, 1\), but got momentum=1.0"):
        OnlineDifficulty(momentum=1.0)
    with pytest.raises(TypeError, match="momentum should be a real number"):
        OnlineDifficulty(momentum="0.5")
    with pytest.raises(dataclasses.FrozenInstanceError):
        OnlineDifficulty().momentum = 0.5  # type: ignore[misc]

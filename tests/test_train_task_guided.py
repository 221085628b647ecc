"""Tests of qualoader._train_task_guided: a small seeded training run, determinism, bad input."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from qualoader._train_task_guided import (
    feature_sweep,
    head_target,
    save_trained,
    train_task_guided,
)
from qualoader.corruptions import list_corruptions
from qualoader.metrics import create_metric
from qualoader.metrics.aligned.task_guided import task_guided_features


class _MeanClassifier(nn.Module):
    """Fixed toy reference: logits from the image mean and spread; ``embed`` gives both statistics."""

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        flat = images.float().flatten(1)
        return torch.stack([flat.mean(dim=1), flat.std(dim=1), (flat[:, 1:] - flat[:, :-1]).abs().mean(dim=1)], dim=1)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.embed(images) @ torch.tensor([[4.0, -4.0], [-2.0, 2.0], [3.0, -3.0]])


@pytest.fixture(scope="module")
def small(fashion_mnist_test):
    images = fashion_mnist_test[0][:24]
    reference = _MeanClassifier()
    labels = reference(images.float() / 255).argmax(dim=1)
    return reference, images, labels, list_corruptions()[:2]


def test_small_run_is_seeded_and_loadable(small, tmp_path) -> None:
    reference, images, labels, names = small
    first = train_task_guided(reference, images, labels, names, (0, 3), seed=1, steps=30, batch_size=64)
    second = train_task_guided(reference, images, labels, names, (0, 3), seed=1, steps=30, batch_size=64)
    for a, b in zip(first.head.state_dict().values(), second.head.state_dict().values()):
        assert torch.equal(a, b)
    assert first.calibration == second.calibration
    assert first.recipe["n_rows"] == 24 * 3 and first.recipe["corruptions"] == list(names)
    checkpoint, recipe = save_trained(first, tmp_path / "head.pt")
    assert recipe.is_file()
    metric = create_metric("task-guided", checkpoint=checkpoint)
    assert metric.calibration == first.calibration
    scores = metric(images)
    assert torch.allclose(scores, first.head(task_guided_features(images.float() / 255)))


def test_sweep_targets_are_in_unit_interval(small) -> None:
    reference, images, labels, names = small
    sweep = feature_sweep(reference, images, labels, names, (0, 5), torch.Generator().manual_seed(0))
    assert sweep.features.shape[0] == sweep.similarity.shape[0] == 24 * 3
    clean = sweep.severity == 0
    assert torch.allclose(sweep.similarity[clean], torch.ones(24)) and float(sweep.errors[clean].sum()) == 0
    for target in ("blend", "correctness", "similarity"):
        values = head_target(sweep, target)
        assert bool(((values >= 0) & (values <= 1)).all())
    with pytest.raises(ValueError, match="target should be one of"):
        head_target(sweep, "accuracy")


def test_bad_input(small) -> None:
    reference, images, labels, names = small
    with pytest.raises(ValueError, match="labels should have shape"):
        feature_sweep(reference, images, labels[:5], names)
    with pytest.raises(ValueError, match="severities should be ints in 0..5"):
        feature_sweep(reference, images, labels, names, (0, 7))
    with pytest.raises(ValueError, match="corruptions"):
        feature_sweep(reference, images, labels, ["fog-of-war"])
    with pytest.raises(ValueError, match="steps should be a positive int"):
        train_task_guided(reference, images, labels, names, steps=0)
    with pytest.raises(TypeError, match="reference should be"):
        feature_sweep("default", images, labels, names)  # type: ignore[arg-type]

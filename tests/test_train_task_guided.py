"""Tests of qualoader.metrics.aligned.task_guided_training: small seeded training runs, determinism, bad input."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from qualoader.corruptions import list_corruptions
from qualoader.metrics import create_metric
from qualoader.metrics.aligned.task_guided import head_features, task_guided_features
from qualoader.metrics.aligned.task_guided_training import (
    feature_sweep,
    fit_head,
    head_target,
    save_trained,
    train_task_guided,
)
from qualoader.reference import default_reference


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
    first = train_task_guided(reference, images, labels, names, (0, 3), seed=1, hidden=(8,), steps=30, batch_size=64, inputs="image")
    second = train_task_guided(reference, images, labels, names, (0, 3), seed=1, hidden=(8,), steps=30, batch_size=64, inputs="image")
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
    with pytest.raises(TypeError, match="reference should be a ReferenceNetwork .* when inputs='both'"):
        train_task_guided(reference, images, labels, names, steps=5)  # the default inputs read the network
    with pytest.raises(TypeError, match="reference should be"):
        feature_sweep("default", images, labels, names)  # type: ignore[arg-type]


def test_network_inputs_train_with_the_reference_and_load_only_with_it(fashion_mnist_test, tmp_path) -> None:
    images, labels = fashion_mnist_test[0][:32], fashion_mnist_test[1][:32]
    network = default_reference()
    names = ["gaussian_noise", "low_light"]
    trained = train_task_guided(network, images, labels, names, (0, 5), seed=0, steps=40, batch_size=64, inputs="both")
    assert trained.recipe["inputs"] == "both" and trained.recipe["feature_names"][:16] == list(trained.head.feature_names[:16])
    checkpoint, _ = save_trained(trained, tmp_path / "both.pt")
    metric = create_metric("task-guided", checkpoint=checkpoint)
    floats = images.float() / 255
    assert metric.inputs == "both" and torch.allclose(metric(images), trained.head(head_features(floats, "both", network)))
    other = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, 10))
    with pytest.raises(ValueError, match="reference should be the network the head was fitted to"):
        create_metric("task-guided", checkpoint=checkpoint, reference=other, input_size=28, in_channels=1, mean=(0.5,), std=(0.5,))
    with pytest.raises(TypeError, match="reference should be a ReferenceNetwork"):
        feature_sweep(torch.nn.Flatten(), images, labels, names, inputs="network")


def test_sweep_shares_one_forward_pass_with_the_same_targets(fashion_mnist_test) -> None:
    images, labels = fashion_mnist_test[0][:20], fashion_mnist_test[1][:20]
    network = default_reference()
    both = feature_sweep(network, images, labels, ["occlusion"], (0, 4), torch.Generator().manual_seed(2), inputs="both")
    image = feature_sweep(network, images, labels, ["occlusion"], (0, 4), torch.Generator().manual_seed(2), inputs="image")
    assert torch.equal(both.errors, image.errors)
    torch.testing.assert_close(both.similarity, image.similarity, atol=1e-5, rtol=0)
    torch.testing.assert_close(both.features[:, :16], image.features)


def test_fit_head_checks_and_learns_a_separable_target() -> None:
    generator = torch.Generator().manual_seed(0)
    features = torch.randn(512, 3, generator=generator)
    target = (features[:, 0] > 0).float()
    head, loss = fit_head(features, target, ("a", "b", "c"), (8,), steps=200, batch_size=128, lr=1e-2, generator=generator)
    accuracy = float(((head(features) > 0.5).float() == target).float().mean())
    assert accuracy > 0.95 and loss < 0.3 and head.feature_names == ("a", "b", "c")
    with pytest.raises(ValueError, match="feature_names should name the 3 feature columns"):
        fit_head(features, target, ("a",), steps=1)
    with pytest.raises(ValueError, match="steps should be a positive int"):
        fit_head(features, target, ("a", "b", "c"), steps=0)

"""corruption_sweep / iterate_sweep on real Fashion-MNIST images: layout, full-reference dispatch, bad input."""

from __future__ import annotations

import pytest
import torch

from qualoader.calibration import corruption_sweep, iterate_sweep, reference_errors


@pytest.fixture
def sweep_inputs(fashion_mnist_test, intensity_classifier):
    images = fashion_mnist_test[0][:40]
    labels = intensity_classifier(images.float() / 255).argmax(dim=1)  # the reference is right on clean images
    return images, labels


def test_sweep_layout_and_clean_errors(sweep_inputs, intensity_classifier, toy_sharpness) -> None:
    from qualoader.corruptions import list_corruptions

    images, labels = sweep_inputs
    names = list_corruptions()[:3]
    sweep = corruption_sweep(
        toy_sharpness, images, labels, intensity_classifier, names, (0, 2, 5), torch.Generator().manual_seed(0), batch_size=16
    )
    assert sweep.scores.shape == sweep.errors.shape == (40 * (1 + 3 * 2),)
    assert sweep.names == tuple(names)
    assert float(sweep.errors[sweep.severity == 0].sum()) == 0.0
    assert set(sweep.corruption.tolist()) == {-1, 0, 1, 2} and set(sweep.severity.tolist()) == {0, 2, 5}
    again = corruption_sweep(
        toy_sharpness, images, labels, intensity_classifier, names, (0, 2, 5), torch.Generator().manual_seed(0), batch_size=16
    )
    assert torch.equal(sweep.scores, again.scores)  # seeded corruptions: the same sweep twice


def test_full_reference_metric_gets_the_clean_images(sweep_inputs, intensity_classifier) -> None:
    from qualoader.metrics import create_metric

    images, labels = sweep_inputs
    sweep = corruption_sweep(
        create_metric("ssim"), images, labels, intensity_classifier, ["gaussian_noise"], (0, 3), torch.Generator().manual_seed(0)
    )
    assert torch.allclose(sweep.scores[sweep.severity == 0], torch.ones(40), atol=1e-5)  # clean against clean
    assert float(sweep.scores[sweep.severity == 3].max()) < 0.99


def test_iterate_sweep_restores_the_reference_mode(sweep_inputs, intensity_classifier) -> None:
    images, labels = sweep_inputs
    intensity_classifier.train()
    _, batches = iterate_sweep(images, labels, intensity_classifier, ["jpeg"], (1,), None, 64)
    modes = [intensity_classifier.training for _ in batches]
    assert modes == [False] and intensity_classifier.training


def test_reference_errors_are_one_minus_correct(intensity_classifier) -> None:
    images = torch.tensor([0.1, 0.4, 0.9]).view(3, 1, 1, 1).expand(3, 1, 4, 4)
    assert reference_errors(intensity_classifier, images, torch.tensor([0, 0, 3])).tolist() == [0.0, 1.0, 0.0]


def test_sweep_rejects_bad_input(sweep_inputs, intensity_classifier, toy_sharpness) -> None:
    images, labels = sweep_inputs
    names = ["jpeg"]
    with pytest.raises(ValueError, match="severities should be ints in 0..5"):
        corruption_sweep(toy_sharpness, images, labels, intensity_classifier, names, (0, 6))
    with pytest.raises(ValueError, match="corruptions"):
        corruption_sweep(toy_sharpness, images, labels, intensity_classifier, ["no-such-corruption"])
    with pytest.raises(ValueError, match="labels should have shape"):
        corruption_sweep(toy_sharpness, images, labels[:3], intensity_classifier, names)
    with pytest.raises(TypeError, match="reference should be"):
        corruption_sweep(toy_sharpness, images, labels, "default", names)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="metric should be a QualityMetric"):
        corruption_sweep(lambda x: x.mean((1, 2, 3)), images, labels, intensity_classifier, names)  # type: ignore[arg-type]


def test_imagenet_c_names_are_one_condition_with_ours(sweep_inputs, intensity_classifier, toy_sharpness) -> None:
    images, labels = sweep_inputs

    def sweep(names):
        return corruption_sweep(toy_sharpness, images, labels, intensity_classifier, names, (0, 3), torch.Generator().manual_seed(0))

    aliased = sweep(["jpeg_compression", "jpeg", "gaussian_noise"])
    ours = sweep(["jpeg", "gaussian_noise"])
    assert aliased.names == ("jpeg", "gaussian_noise")
    assert torch.equal(aliased.scores, ours.scores) and torch.equal(aliased.errors, ours.errors)

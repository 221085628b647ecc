"""feature-distance: reference-network feature change from the clean image."""

from __future__ import annotations

import kornia
import pytest
import torch

from qualoader.corruptions import list_corruptions
from qualoader.metrics import create_metric, metric_info
from qualoader.metrics.aligned.feature_distance import (
    FeatureDistance,
    feature_distance,
    pooled_features,
)
from qualoader.reference import (
    FASHION_MNIST_MEAN,
    FASHION_MNIST_STD,
    FashionCNN,
    default_reference,
    load_reference,
)
from tests.helpers import add_noise


def _own_network(model: FashionCNN):
    return load_reference(model, input_size=28, in_channels=1, mean=FASHION_MNIST_MEAN, std=FASHION_MNIST_STD, feature_layer="classifier.2")


def test_registered_full_reference_lower_is_better_offline():
    info = metric_info("feature-distance")
    assert info.mode == "FR" and not info.higher_is_better and not info.requires_weights


def test_identical_images_have_zero_distance(clean, device, dtype):
    metric = create_metric("feature-distance", device=device)
    scores = metric(clean.to(device, dtype), clean.to(device, dtype))
    assert scores.shape == (len(clean),) and scores.dtype == dtype
    torch.testing.assert_close(scores, torch.zeros_like(scores), atol=1e-5, rtol=0)


def test_grows_with_noise_on_every_image(clean):
    metric = create_metric("feature-distance")
    mild, strong = metric(add_noise(clean, 0.05), clean), metric(add_noise(clean, 0.4), clean)
    assert bool((strong > mild).float().mean() > 0.9) and float(strong.mean()) > 3 * float(mild.mean())


def test_moves_monotonically_with_severity_for_most_corruptions(increasing_with_severity):
    monotonic = increasing_with_severity["feature-distance"]
    print(f"feature-distance increases with severity for {len(monotonic)}/{len(list_corruptions())} corruptions: {monotonic}")
    assert len(monotonic) >= 12


def test_module_agrees_with_function_and_options(clean):
    blurred = kornia.filters.gaussian_blur2d(clean, (7, 7), (1.5, 1.5))
    network = default_reference()
    torch.testing.assert_close(create_metric("feature-distance")(blurred, clean), feature_distance(network, blurred, clean))
    l2 = create_metric("feature-distance", distance="l2")(blurred, clean)
    embedded, reference = network.embed(blurred), network.embed(clean)
    torch.testing.assert_close(l2, (embedded - reference).norm(dim=1) / reference.norm(dim=1))
    layers = ["features.0.1", "features.4.1"]
    multi = create_metric("feature-distance", layers=layers)(blurred, clean)
    per_layer = [feature_distance(network, blurred, clean, layers=[layer]) for layer in layers]
    torch.testing.assert_close(multi, torch.stack(per_layer).mean(0))
    pooled = {k: v.mean((2, 3)) for k, v in network.features(torch.cat([blurred, clean]), ["features.0.1"]).items()}["features.0.1"]
    cosine = torch.nn.functional.cosine_similarity(pooled[: len(clean)], pooled[len(clean) :], dim=1)
    torch.testing.assert_close(per_layer[0], 1 - cosine, atol=1e-6, rtol=1e-5)


def test_batched_equals_per_image(clean):
    metric = create_metric("feature-distance")
    noisy = add_noise(clean[:8], 0.2)
    single = torch.cat([metric(noisy[i : i + 1], clean[i : i + 1]) for i in range(8)])
    torch.testing.assert_close(metric(noisy, clean[:8]), single, rtol=1e-4, atol=1e-6)


def test_rgb_and_resized_input_is_converted(clean):
    metric = create_metric("feature-distance")
    rgb = clean.expand(-1, 3, -1, -1)
    torch.testing.assert_close(metric(add_noise(rgb, 0.2), rgb).shape, torch.Size([len(clean)]))
    big = torch.nn.functional.interpolate(clean, size=(56, 56), mode="bilinear")
    assert float(metric(add_noise(big, 0.3), big).mean()) > float(metric(big, big).mean())


def test_network_in_train_mode_is_not_modified(clean):
    model = default_reference().model.train()
    running = model.features[0][1].running_var.clone()
    metric = FeatureDistance(reference=_own_network(model))
    noisy = add_noise(clean, 0.2)
    scores = metric(noisy, clean)
    assert model.training and torch.equal(model.features[0][1].running_var, running)
    torch.testing.assert_close(scores, create_metric("feature-distance")(noisy, clean))


def test_fingerprint_follows_weights_and_config():
    model = FashionCNN()
    metric = FeatureDistance(reference=_own_network(model))
    before = metric.fingerprint()
    assert FeatureDistance(reference=_own_network(model)).fingerprint() == before and len(before) == 16
    assert FeatureDistance(reference=_own_network(model), distance="l2").fingerprint() != before
    with torch.no_grad():
        model.classifier[1].weight[0, 0] += 0.01
    assert metric.fingerprint() != before
    assert create_metric("feature-distance").fingerprint() == create_metric("feature-distance").fingerprint()


def test_calibration_only_for_default_configuration():
    from qualoader.calibration import default_calibration

    shipped = default_calibration("feature-distance")
    assert (create_metric("feature-distance").calibration is None) == (shipped is None)
    assert create_metric("feature-distance", distance="l2").calibration is None
    assert create_metric("feature-distance", reference=_own_network(FashionCNN())).calibration is None


def test_bad_arguments(clean):
    with pytest.raises(ValueError, match="distance should be one of"):
        create_metric("feature-distance", distance="l1")
    with pytest.raises(ValueError, match="layers should be None or a non-empty list"):
        create_metric("feature-distance", layers="features.0")
    with pytest.raises(ValueError, match="should name a sub-module"):
        create_metric("feature-distance", layers=["features.9"])
    with pytest.raises(TypeError, match="source should be"):
        create_metric("feature-distance", reference=3)
    with pytest.raises(FileNotFoundError, match="resnet18"):
        create_metric("feature-distance", reference="resnet18", weights="/nonexistent/resnet18.pth")
    metric = create_metric("feature-distance")
    with pytest.raises(ValueError, match="reference should be a tensor of clean images"):
        metric(clean)
    with pytest.raises(ValueError, match="reference should have the shape of images"):
        metric(clean, clean[:2])
    with pytest.raises(TypeError, match="network should be a ReferenceNetwork"):
        feature_distance(FashionCNN(), clean, clean)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="clean should have the shape of images"):
        feature_distance(default_reference(), clean, clean[:2])


def test_pickle_round_trip_gives_identical_scores(clean):
    import pickle

    metric = create_metric("feature-distance")
    clone = pickle.loads(pickle.dumps(metric))
    noisy = add_noise(clean, 0.2)
    torch.testing.assert_close(clone(noisy, clean), metric(noisy, clean), rtol=0, atol=0)
    assert clone.fingerprint() == metric.fingerprint()


def test_cached_clean_features_give_the_same_distances(clean):
    network = default_reference()
    noisy = add_noise(clean, 0.2)
    for layers in (None, ["features.0.1", "classifier.1"]):
        cached = pooled_features(network, clean, layers=layers)
        assert len(cached) == (1 if layers is None else 2)
        torch.testing.assert_close(
            feature_distance(network, noisy, clean_features=cached, layers=layers),
            feature_distance(network, noisy, clean, layers=layers),
            rtol=1e-4,
            atol=1e-6,
        )
    with pytest.raises(ValueError, match="clean and clean_features should be given one at a time"):
        feature_distance(network, noisy)
    with pytest.raises(ValueError, match="clean and clean_features should be given one at a time"):
        feature_distance(network, noisy, clean, clean_features=pooled_features(network, clean))
    with pytest.raises(ValueError, match="clean_features should be pooled_features"):
        feature_distance(network, noisy, clean_features=pooled_features(network, clean[:3]))
    with pytest.raises(TypeError, match="network should be a ReferenceNetwork"):
        pooled_features(FashionCNN(), clean)  # type: ignore[arg-type]

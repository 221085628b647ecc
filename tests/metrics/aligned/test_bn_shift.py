"""bn-shift: distance of per-image BatchNorm input statistics from the stored running statistics."""

from __future__ import annotations

import copy
import warnings

import pytest
import torch
from torch import nn
from torch.distributions import Normal, kl_divergence

from qualoader.corruptions import list_corruptions
from qualoader.metrics import create_metric, metric_info
from qualoader.metrics.aligned.bn_shift import BNShift, batchnorm_layers, bn_shift
from qualoader.reference import (
    FASHION_MNIST_MEAN,
    FASHION_MNIST_STD,
    FashionCNN,
    ReferenceNetwork,
    default_reference,
    load_reference,
)
from tests.helpers import add_noise


def _wrap(model: nn.Module, size: int = 28) -> ReferenceNetwork:
    return load_reference(model, input_size=size, in_channels=1, mean=FASHION_MNIST_MEAN, std=FASHION_MNIST_STD)


def _one_bn_network(channels: int = 3) -> tuple[ReferenceNetwork, nn.BatchNorm2d]:
    bn = nn.BatchNorm2d(channels)
    with torch.no_grad():
        bn.running_mean.copy_(torch.linspace(-0.5, 0.5, channels))
        bn.running_var.copy_(torch.linspace(0.5, 2.0, channels))
    model = nn.Sequential(nn.Conv2d(1, channels, 1, bias=False), bn, nn.Flatten(), nn.Linear(channels * 64, 2))
    with torch.no_grad():
        model[0].weight.copy_(torch.linspace(1.0, 3.0, channels).view(channels, 1, 1, 1))
    return load_reference(model, input_size=8, in_channels=1, mean=(0.0,), std=(1.0,)), bn


def test_registered_no_reference_lower_is_better_offline():
    info = metric_info("bn-shift")
    assert info.mode == "NR" and not info.higher_is_better and not info.requires_weights


def test_scores_shape_dtype_device(clean, device, dtype):
    metric = create_metric("bn-shift", device=device)
    scores = metric(clean.to(device, dtype))
    assert scores.shape == (len(clean),) and scores.dtype == dtype and scores.device.type == device.type
    assert bool((scores >= 0).all())


def test_symmetric_kl_matches_torch_distributions():
    network, bn = _one_bn_network()
    images = torch.rand(5, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    activations = network.model[0](images)
    var, mean = torch.var_mean(activations.flatten(2), dim=2, correction=0)
    image = Normal(mean, (var + bn.eps).sqrt())
    running = Normal(bn.running_mean, (bn.running_var + bn.eps).sqrt())
    expected = (0.5 * (kl_divergence(image, running) + kl_divergence(running, image))).mean(1)
    torch.testing.assert_close(bn_shift(network, images, variance_floor=1e-6), expected.detach())


def test_other_divergences_match_their_formulas():
    network, bn = _one_bn_network()
    images = torch.rand(4, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    var, mean = torch.var_mean(network.model[0](images).detach().flatten(2), dim=2, correction=0)
    running_var = bn.running_var + bn.eps
    normalised = (mean - bn.running_mean) / running_var.sqrt()
    torch.testing.assert_close(bn_shift(network, images, divergence="mean"), normalised.abs().mean(1))
    wasserstein = normalised.square() + ((var + bn.eps).sqrt() - running_var.sqrt()).square() / running_var
    torch.testing.assert_close(bn_shift(network, images, divergence="wasserstein"), wasserstein.mean(1))


def test_variance_floor_keeps_silent_channels_finite():
    network, _ = _one_bn_network()
    flat = torch.full((2, 1, 8, 8), 0.5)
    scores = bn_shift(network, flat)
    assert bool(torch.isfinite(scores).all())
    assert float(bn_shift(network, flat, variance_floor=0.1).max()) < float(scores.max())


def test_clean_images_shift_less_than_corrupted(clean):
    metric = create_metric("bn-shift")
    base, noisy, dark = metric(clean), metric(add_noise(clean, 0.3)), metric(clean * 0.3)
    assert float(noisy.mean()) > 1.5 * float(base.mean()) and float(dark.mean()) > 1.5 * float(base.mean())


def test_moves_monotonically_with_severity_for_most_corruptions(increasing_with_severity):
    monotonic = increasing_with_severity["bn-shift"]
    print(f"bn-shift increases with severity for {len(monotonic)}/{len(list_corruptions())} corruptions: {monotonic}")
    assert len(monotonic) >= 12


def test_module_agrees_with_function_for_every_divergence(clean):
    network = default_reference()
    noisy = add_noise(clean, 0.2)
    for divergence in ("kl", "wasserstein", "mean"):
        metric = create_metric("bn-shift", divergence=divergence)
        torch.testing.assert_close(metric(noisy), bn_shift(network, noisy, divergence=divergence))


def test_batched_equals_per_image(clean):
    metric = create_metric("bn-shift")
    noisy = add_noise(clean[:8], 0.2)
    single = torch.cat([metric(noisy[i : i + 1]) for i in range(8)])
    torch.testing.assert_close(metric(noisy), single, rtol=1e-4, atol=1e-6)


def test_network_in_train_mode_is_run_in_eval_mode_and_not_modified(clean):
    model = default_reference().model
    frozen = copy.deepcopy(model).eval()
    model.train()
    metric = BNShift(reference=_wrap(model))
    scores = metric(add_noise(clean, 0.2))
    assert all(module.training for module in model.modules())
    for name, value in frozen.state_dict().items():
        assert torch.equal(model.state_dict()[name], value), name
    torch.testing.assert_close(scores, BNShift(reference=_wrap(frozen))(add_noise(clean, 0.2)))
    assert not any(module._forward_pre_hooks for module in model.modules())


def test_network_without_batchnorm_is_refused():
    plain = nn.Sequential(nn.Conv2d(1, 4, 3), nn.Flatten(), nn.Linear(4 * 26 * 26, 10))
    with pytest.raises(ValueError, match="should have BatchNorm2d layers"):
        BNShift(reference=_wrap(plain))
    untracked = nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4, track_running_stats=False), nn.Flatten(), nn.Linear(4 * 26 * 26, 10))
    assert batchnorm_layers(untracked) == {}
    with pytest.raises(ValueError, match="should have BatchNorm2d layers"):
        bn_shift(_wrap(untracked), torch.rand(2, 1, 28, 28))


def test_fingerprint_follows_running_statistics_and_config():
    model = FashionCNN()
    metric = BNShift(reference=_wrap(model))
    before = metric.fingerprint()
    assert BNShift(reference=_wrap(model)).fingerprint() == before and len(before) == 16
    assert BNShift(reference=_wrap(model), divergence="mean").fingerprint() != before
    with torch.no_grad():
        model.features[2][1].running_var[0] *= 2
    assert metric.fingerprint() != before


def test_torchvision_network_with_batchnorm(tmp_path):
    from torchvision.models import mobilenet_v3_small

    torch.manual_seed(0)
    path = tmp_path / "mnv3.pth"
    torch.save(mobilenet_v3_small().state_dict(), path)
    metric = create_metric("bn-shift", reference="mobilenet_v3_small", weights=path, input_size=64)
    photos = torch.rand(2, 3, 48, 48, generator=torch.Generator().manual_seed(0))
    assert metric(photos).shape == (2,)
    assert len(batchnorm_layers(metric.network.model)) > 10


def test_calibration_only_for_default_configuration():
    from qualoader.calibration import default_calibration

    assert (create_metric("bn-shift").calibration is None) == (default_calibration("bn-shift") is None)
    assert create_metric("bn-shift", divergence="wasserstein").calibration is None


def test_bad_arguments(clean):
    with pytest.raises(ValueError, match="divergence should be one of"):
        create_metric("bn-shift", divergence="js")
    with pytest.raises(ValueError, match=r"variance_floor should be in \(0, 1\]"):
        create_metric("bn-shift", variance_floor=0.0)
    with pytest.raises(TypeError, match="variance_floor should be a float"):
        create_metric("bn-shift", variance_floor="small")
    with pytest.raises(FileNotFoundError, match="resnet18"):
        create_metric("bn-shift", reference="resnet18", weights="/nonexistent/resnet18.pth")
    metric = create_metric("bn-shift")
    with pytest.raises(ValueError, match="reference should be None"):
        metric(clean, clean)
    with pytest.raises(TypeError, match="network should be a ReferenceNetwork"):
        bn_shift(FashionCNN(), clean)  # type: ignore[arg-type]


def test_pickle_round_trip_gives_identical_scores(clean):
    import pickle

    metric = create_metric("bn-shift")
    clone = pickle.loads(pickle.dumps(metric))
    torch.testing.assert_close(clone(clean), metric(clean), rtol=0, atol=0)
    assert clone.fingerprint() == metric.fingerprint()


def test_layer_subset_averages_the_chosen_layers(clean):
    network = default_reference()
    noisy = add_noise(clean, 0.2)
    names = list(batchnorm_layers(network.model))
    assert names == ["features.0.1", "features.2.1", "features.4.1"]
    single = [bn_shift(network, noisy, layers=[name]) for name in names]
    torch.testing.assert_close(bn_shift(network, noisy), torch.stack(single).mean(0))
    metric = create_metric("bn-shift", layers=names[1:])
    torch.testing.assert_close(metric(noisy), torch.stack(single[1:]).mean(0))
    assert metric.get_config()["layers"] == names[1:] and metric.calibration is None
    assert metric.fingerprint() != create_metric("bn-shift").fingerprint()
    with pytest.raises(ValueError, match="layers\\[i\\] should be one of"):
        create_metric("bn-shift", layers=["features.0.0"])
    with pytest.raises(ValueError, match="layers should be None or a non-empty list"):
        bn_shift(network, noisy, layers="features.0.1")  # type: ignore[arg-type]


# -- layers whose maps are too small to carry a statistic ------------------------------------------------------------------
def _tiny_maps_network() -> torch.nn.Module:
    """At 8 px: BatchNorm "1" sees 8x8 maps, "4" 4x4, "7" 1x1 (a 4x4 convolution with stride 4)."""
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Conv2d(1, 4, 3, padding=1), torch.nn.BatchNorm2d(4), torch.nn.ReLU(),
        torch.nn.Conv2d(4, 4, 3, stride=2, padding=1), torch.nn.BatchNorm2d(4), torch.nn.ReLU(),
        torch.nn.Conv2d(4, 4, 4, stride=4), torch.nn.BatchNorm2d(4), torch.nn.ReLU(),
        torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(4, 2),
    ).eval()


def test_layers_with_1x1_maps_are_left_out_and_named() -> None:
    from qualoader.metrics.aligned.bn_shift import SmallLayersWarning, bn_shift

    with pytest.warns(SmallLayersWarning, match=r"left out 1 of 3 BatchNorm layers .* \(8, 8\): 7 \(1x1\)"):
        metric = create_metric("bn-shift", reference=_tiny_maps_network(), input_size=8, in_channels=1, mean=(0.5,), std=(0.25,))
    assert metric.skipped_layers == {"7": (1, 1)} and metric.layers == ("1", "4")
    assert metric.get_config()["layers"] == ["1", "4"]  # the fingerprint says what is scored
    images = torch.rand(5, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(metric(images), bn_shift(metric.network, images, layers=["1", "4"]))
    # an explicit list of large-enough layers is taken as it is, silently
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        create_metric("bn-shift", reference=_tiny_maps_network(), input_size=8, in_channels=1, mean=(0.5,), std=(0.25,), layers=["4"])


def test_a_named_small_layer_or_none_left_is_refused() -> None:
    common = {"in_channels": 1, "mean": (0.5,), "std": (0.25,)}
    with pytest.raises(ValueError, match=r"layers should name BatchNorm2d layers whose maps are at least 4x4 .* 7 \(1x1\)"):
        create_metric("bn-shift", reference=_tiny_maps_network(), input_size=8, layers=["1", "7"], **common)
    one_layer = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 2))
    with pytest.raises(ValueError, match=r"reference should have a BatchNorm2d layer whose maps are at least 4x4 .* only 1 \(3x3\)"):
        create_metric("bn-shift", reference=one_layer, input_size=3, **common)

"""ReferenceNetwork: input convention, eval-mode guarantee, hooks, embeddings, weights hash."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from qualoader.reference import (
    FashionCNN,
    ReferenceNetwork,
    eval_mode,
    preprocess_images,
)


def _network(model: nn.Module | None = None, **overrides) -> ReferenceNetwork:
    torch.manual_seed(0)
    options = {"input_size": 28, "in_channels": 1, "mean": (0.25,), "std": (0.5,), "feature_layer": None, "name": "cnn"}
    options.update(overrides)
    return ReferenceNetwork(model if model is not None else FashionCNN(), **options)


def _images(batch: int = 4, channels: int = 1, size: int = 28, seed: int = 0) -> torch.Tensor:
    return torch.rand(batch, channels, size, size, generator=torch.Generator().manual_seed(seed))


def test_preprocess_converts_channels_size_and_normalises():
    net = _network()
    grey = torch.full((2, 1, 28, 28), 0.75)
    torch.testing.assert_close(net.preprocess(grey), torch.full((2, 1, 28, 28), 1.0))
    rgb = torch.zeros(1, 3, 28, 28)
    rgb[:, 0], rgb[:, 1], rgb[:, 2] = 1.0, 0.5, 0.0
    luma = 0.299 * 1.0 + 0.587 * 0.5
    torch.testing.assert_close(net.preprocess(rgb), torch.full((1, 1, 28, 28), (luma - 0.25) / 0.5))
    assert net.preprocess(_images(3, 3, 57)).shape == (3, 1, 28, 28)
    uint8 = (grey * 255).round().to(torch.uint8)
    torch.testing.assert_close(net.preprocess(uint8), net.preprocess(uint8.float() / 255))


def test_preprocess_grey_to_rgb_repeats_channels():
    mean, std = torch.tensor([0.1, 0.2, 0.3]).view(1, 3, 1, 1), torch.tensor([0.5, 0.5, 0.5]).view(1, 3, 1, 1)
    out = preprocess_images(torch.full((1, 1, 8, 8), 0.6), (8, 8), 3, mean, std)
    torch.testing.assert_close(out[0, :, 0, 0], (0.6 - mean.flatten()) / 0.5)


def test_resize_is_antialiased():
    stripes = torch.zeros(1, 1, 112, 112)
    stripes[..., ::2] = 1.0
    out = _network(mean=(0.0,), std=(1.0,)).preprocess(stripes)
    interior = out[..., 1:-1, 1:-1]  # the borders see a one-sided kernel
    assert torch.allclose(interior, torch.full_like(interior, 0.5), atol=0.02)


def test_forward_embed_features_shapes(device):
    net = _network().to(device)
    images = _images(5, 3, 40).to(device)
    assert net(images).shape == (5, 10)
    assert net.embed(images).shape == (5, 128)
    feats = net.features(images, ["features.0.1", "classifier.1"])
    assert list(feats) == ["features.0.1", "classifier.1"]
    assert feats["features.0.1"].shape == (5, 32, 28, 28) and feats["classifier.1"].shape == (5, 128)


def test_default_embedding_is_input_of_last_linear_and_matches_named_layer():
    model = FashionCNN()
    by_default = _network(model).embed(_images())
    named = _network(model, feature_layer="classifier.2").embed(_images())
    torch.testing.assert_close(by_default, named)
    with torch.no_grad():
        manual = model.eval().classifier[:3](model.features(_network(model).preprocess(_images())))
    torch.testing.assert_close(by_default, manual)


def test_embed_pools_spatial_feature_layer():
    net = _network(feature_layer="features.4")
    images = _images()
    torch.testing.assert_close(net.embed(images), net.features(images, ["features.4"])["features.4"].mean((2, 3)))


def test_embed_with_logits_is_one_pass_of_both():
    net = _network()
    embedding, logits = net.embed_with_logits(_images())
    torch.testing.assert_close(logits, net(_images()))
    torch.testing.assert_close(embedding, net.embed(_images()))


def test_model_in_train_mode_runs_in_eval_mode_and_is_left_untouched():
    model = FashionCNN()
    model.train()
    bn = model.features[0][1]
    before = (bn.running_mean.clone(), bn.running_var.clone(), bn.num_batches_tracked.clone())
    net = _network(model)
    logits = net(_images())
    assert all(module.training for module in model.modules())
    torch.testing.assert_close(bn.running_mean, before[0])
    torch.testing.assert_close(bn.running_var, before[1])
    assert int(bn.num_batches_tracked) == int(before[2])
    with torch.no_grad():
        expected = model.eval()(net.preprocess(_images()))
    torch.testing.assert_close(logits, expected)


def test_wrapper_train_and_eval_do_not_reach_the_model():
    model = FashionCNN().train()
    net = _network(model)
    net.eval()
    assert not net.training and model.training
    net.train()
    assert net.training and model.training
    with pytest.raises(TypeError, match="mode should be a bool"):
        net.train("yes")  # type: ignore[arg-type]


def test_eval_mode_restores_flags():
    model = nn.Sequential(nn.BatchNorm2d(2), nn.Dropout())
    model[0].eval()
    with eval_mode(model):
        assert not any(m.training for m in model.modules())
    assert model.training and not model[0].training and model[1].training


def test_hooks_are_removed_after_each_call():
    net = _network()
    net.embed(_images())
    net.features(_images(), ["features.0.0"])
    assert not any(module._forward_hooks or module._forward_pre_hooks for module in net.model.modules())


def test_batched_equals_per_image():
    net = _network()
    images = _images(6)
    single = torch.cat([net.embed(images[i : i + 1]) for i in range(6)])
    torch.testing.assert_close(net.embed(images), single, rtol=1e-5, atol=1e-6)


def test_weights_hash_is_stable_and_changes_with_weights_and_convention():
    model = FashionCNN()
    first, second = _network(model), _network(model)
    assert first.weights_hash == second.weights_hash and len(first.weights_hash) == 16
    assert _network(model, std=(0.4,)).weights_hash != first.weights_hash
    torch.manual_seed(1)
    assert ReferenceNetwork(FashionCNN(), input_size=28, in_channels=1, mean=(0.25,), std=(0.5,)).weights_hash != first.weights_hash


def test_weights_hash_follows_weight_change():
    model = FashionCNN()
    net = _network(model)
    before = net.weights_hash
    with torch.no_grad():
        model.classifier[4].bias[0] += 1e-3
    after_weight = net.weights_hash
    with torch.no_grad():
        model.features[0][1].running_mean[0] += 1e-3
    assert len({before, after_weight, net.weights_hash}) == 3


def test_network_without_linear_needs_feature_layer():
    conv = nn.Sequential(nn.Conv2d(1, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten())
    net = ReferenceNetwork(conv, input_size=8, in_channels=1, mean=(0.5,), std=(0.5,), name="conv")
    assert net(torch.rand(2, 1, 8, 8)).shape == (2, 4)
    with pytest.raises(ValueError, match="feature_layer should name the embedding module"):
        net.embed(torch.rand(2, 1, 8, 8))
    named = ReferenceNetwork(conv, input_size=8, in_channels=1, mean=(0.5,), std=(0.5,), feature_layer="0", name="conv")
    assert named.embed(torch.rand(2, 1, 8, 8)).shape == (2, 4)


def test_bad_constructor_arguments():
    with pytest.raises(TypeError, match="model should be an nn.Module"):
        _network(model="cnn")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="in_channels should be one of"):
        _network(in_channels=2)
    with pytest.raises(ValueError, match="std should contain positive floats"):
        _network(std=(0.0,))
    with pytest.raises(ValueError, match="mean should be a tuple of 1 or 3 floats"):
        _network(in_channels=3, mean=(0.1, 0.2))
    with pytest.raises(ValueError, match="input_size should be a .height, width. pair"):
        _network(input_size=(28, 28, 1))
    with pytest.raises(ValueError, match="input_size\\[0\\] should be a positive int"):
        _network(input_size=(0, 28))
    with pytest.raises(ValueError, match="did you mean 'classifier.3'"):
        _network(feature_layer="classifier.3x")
    with pytest.raises(TypeError, match="name should be a str"):
        _network(name=3)


def test_bad_call_arguments():
    net = _network()
    with pytest.raises(ValueError, match=r"images should have shape \(B, C, H, W\)"):
        net(torch.rand(1, 28, 28))
    with pytest.raises(ValueError, match="C in"):
        net(torch.rand(1, 2, 28, 28))
    with pytest.raises(TypeError, match="images should be a torch.Tensor"):
        net.embed([[0.0]])  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="layers should be a non-empty sequence"):
        net.features(_images(), "features.0")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="layers\\[i\\] should name a sub-module"):
        net.features(_images(), ["nope"])
    with pytest.raises(ValueError, match="distinct modules"):
        net.features(_images(), ["features.0", "features.0"])
    with pytest.raises(ValueError, match="name should name a sub-module"):
        net.submodule("features.9")

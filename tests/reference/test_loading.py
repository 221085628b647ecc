"""load_reference / default_reference: the embedded default, torchvision, timm and plain modules, offline."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
import torch
from torch import nn

from qualoader.metrics import create_metric
from qualoader.reference import (
    DEFAULT_CHECKPOINT,
    DEFAULT_RECORD,
    FashionCNN,
    ReferenceNetwork,
    default_reference,
    load_reference,
    load_state_dict_file,
    loading,
)


@pytest.fixture
def no_network(block_sockets) -> None:
    """Any attempt to open a socket fails, and the default checkpoint is re-read from disk."""
    block_sockets(OSError, "network access is disabled in this test")
    loading._default_checkpoint.cache_clear()
    yield
    loading._default_checkpoint.cache_clear()


@pytest.fixture
def hub_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty torch hub folder, so no cached torchvision weights exist."""
    monkeypatch.setattr(torch.hub, "_hub_dir", str(tmp_path / "hub"))
    return tmp_path / "hub"


def test_default_loads_without_network_and_scores_a_batch(no_network, fashion_mnist_test):
    images, labels = fashion_mnist_test
    net = default_reference()
    assert isinstance(net, ReferenceNetwork) and net.name == "fashion-mnist-cnn"
    logits = net(images[:64])
    assert logits.shape == (64, 10) and bool(torch.isfinite(logits).all())
    assert net.embed(images[:64]).shape == (64, 128)
    assert float((logits.argmax(1) == labels[:64]).float().mean()) > 0.8


def test_default_record_matches_checkpoint_and_measured_accuracy(fashion_mnist_test):
    record = json.loads(DEFAULT_RECORD.read_text())
    assert DEFAULT_CHECKPOINT.stat().st_size < 5 * 2**20
    assert hashlib.sha256(DEFAULT_CHECKPOINT.read_bytes()).hexdigest() == record["sha256"]
    assert {"recipe", "seed", "epochs", "test_accuracy", "torch_version"} <= set(record)
    assert record["test_accuracy"] >= 0.90
    images, labels = fashion_mnist_test
    net = default_reference()
    with torch.no_grad():
        correct = sum(int((net(images[i : i + 2000]).argmax(1) == labels[i : i + 2000]).sum()) for i in range(0, len(images), 2000))
    if len(images) == 10000:  # the full test split: the recorded accuracy to the last digit
        assert correct / len(images) == pytest.approx(record["test_accuracy"], abs=2e-4)
    else:  # the bundled sample (a prefix of the split): within 3 binomial standard errors, finite-population corrected
        p, n = record["test_accuracy"], len(images)
        assert correct / n == pytest.approx(p, abs=3 * (p * (1 - p) / n * (1 - n / 10000)) ** 0.5)


def test_default_has_batchnorm_and_float32_weights():
    net = default_reference()
    assert sum(isinstance(m, nn.BatchNorm2d) for m in net.model.modules()) == 3
    assert all(p.dtype == torch.float32 for p in net.model.parameters())


def test_default_returns_independent_modules():
    first, second = default_reference(), default_reference()
    assert first is not second and first.weights_hash == second.weights_hash
    with torch.no_grad():
        first.model.classifier[4].bias += 1.0
    assert first.weights_hash != second.weights_hash
    assert load_reference().weights_hash == second.weights_hash
    assert load_reference("default").get_config() == second.get_config()


def test_corrupt_or_missing_default_checkpoint(tmp_path, monkeypatch):
    broken = tmp_path / "default_reference.pt"
    data = DEFAULT_CHECKPOINT.read_bytes()
    broken.write_bytes(data[:-1] + bytes([data[-1] ^ 0xFF]))
    monkeypatch.setattr(loading, "DEFAULT_CHECKPOINT", broken)
    loading._default_checkpoint.cache_clear()
    try:
        with pytest.raises(RuntimeError, match="should have sha256"):
            default_reference()
        monkeypatch.setattr(loading, "DEFAULT_CHECKPOINT", tmp_path / "absent.pt")
        loading._default_checkpoint.cache_clear()
        with pytest.raises(FileNotFoundError, match="python tools/train_default.py"):
            default_reference()
    finally:
        monkeypatch.undo()
        loading._default_checkpoint.cache_clear()


def test_torchvision_name_without_weights_names_the_expected_file(hub_dir, no_network):
    with pytest.raises(FileNotFoundError) as error:
        load_reference("resnet18")
    message = str(error.value)
    assert str(hub_dir / "checkpoints" / "resnet18-f37072fd.pth") in message
    assert "https://download.pytorch.org/models/resnet18-f37072fd.pth" in message
    with pytest.raises(FileNotFoundError, match="weights should be an existing local file"):
        load_reference("resnet18", weights=hub_dir / "nope.pth")


def test_torchvision_name_with_local_weights(tmp_path, hub_dir, no_network):
    from torchvision.models import mobilenet_v3_small

    torch.manual_seed(0)
    model = mobilenet_v3_small().eval()
    path = tmp_path / "mnv3.pth"
    torch.save(model.state_dict(), path)
    net = load_reference("mobilenet_v3_small", weights=path)
    assert net.input_size == (224, 224) and net.in_channels == 3 and net.name == "mobilenet_v3_small"
    images = torch.rand(2, 1, 64, 64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected = model(net.preprocess(images))
    torch.testing.assert_close(net(images), expected)
    assert net.embed(images).shape == (2, 1024)
    cached = hub_dir / "checkpoints" / "mobilenet_v3_small-047dcff4.pth"
    cached.parent.mkdir(parents=True)
    cached.write_bytes(path.read_bytes())
    assert load_reference("mobilenet_v3_small").weights_hash == net.weights_hash
    overridden = load_reference("mobilenet_v3_small", weights=path, input_size=96, name="small")
    assert overridden.input_size == (96, 96) and overridden.name == "small"


def test_timm_name_needs_local_weights(tmp_path, no_network):
    import timm

    with pytest.raises(FileNotFoundError, match="weights should be a local file for the timm model 'mobilenetv3_small_050'"):
        load_reference("timm:mobilenetv3_small_050")
    with pytest.raises(ValueError, match="timm:<a timm model name>"):
        load_reference("timm:no_such_model_xyz")
    torch.manual_seed(0)
    model = timm.create_model("mobilenetv3_small_050", pretrained=False).eval()
    path = tmp_path / "model.pth"
    torch.save(model.state_dict(), path)
    net = load_reference("timm:mobilenetv3_small_050", weights=path)
    assert net.name == "timm:mobilenetv3_small_050" and net.input_size == (224, 224)
    images = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = model(net.preprocess(images))
    torch.testing.assert_close(net(images), expected)


def test_plain_module_is_wrapped_with_imagenet_convention_or_overrides(tmp_path):
    model = FashionCNN()
    net = load_reference(model)
    assert net.model is model and net.input_size == (224, 224) and net.in_channels == 3 and net.name == "FashionCNN"
    custom = load_reference(model, input_size=28, in_channels=1, mean=(0.3,), std=(0.3,), feature_layer="classifier.2", name="mine")
    assert custom.input_size == (28, 28) and custom.feature_layer == "classifier.2" and custom.name == "mine"
    assert load_reference(custom) is custom
    other = FashionCNN()
    path = tmp_path / "weights.pt"
    torch.save({"state_dict": {f"module.{k}": v for k, v in other.state_dict().items()}}, path)
    loaded = load_reference(model, weights=path, input_size=28, in_channels=1, mean=(0.3,), std=(0.3,))
    torch.testing.assert_close(model.classifier[4].weight, other.classifier[4].weight)
    assert loaded.weights_hash == load_reference(other, input_size=28, in_channels=1, mean=(0.3,), std=(0.3,)).weights_hash


def test_load_state_dict_file_formats(tmp_path):
    from safetensors.torch import save_file

    state = {"a": torch.arange(3.0), "b": torch.ones(2, 2)}
    save_file(state, str(tmp_path / "w.safetensors"))
    loaded = load_state_dict_file(tmp_path / "w.safetensors")
    assert set(loaded) == {"a", "b"} and torch.equal(loaded["a"], state["a"])
    torch.save({"model": state}, tmp_path / "w.pt")
    assert torch.equal(load_state_dict_file(tmp_path / "w.pt")["b"], state["b"])
    torch.save([1, 2, 3], tmp_path / "list.pt")
    with pytest.raises(ValueError, match="state_dict of tensors"):
        load_state_dict_file(tmp_path / "list.pt")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_state_dict_file(tmp_path / "missing.pt")
    for name, data in (
        ("garbage.pt", b"not a checkpoint"),
        ("garbage.safetensors", b"\x00" * 16),
        ("cut.pt", (tmp_path / "w.pt").read_bytes()[:100]),
    ):
        (tmp_path / name).write_bytes(data)
        with pytest.raises(ValueError, match="readable state_dict file .* cannot be read"):
            load_state_dict_file(tmp_path / name)


def test_bad_sources_and_options():
    with pytest.raises(TypeError, match="source should be"):
        load_reference(3)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="did you mean 'resnet18'"):
        load_reference("resnet81")
    with pytest.raises(ValueError, match="kwargs should be among"):
        load_reference(FashionCNN(), depth=3)
    with pytest.raises(ValueError, match="source='default'"):
        load_reference("default", input_size=32)
    with pytest.raises(ValueError, match="ReferenceNetwork source"):
        load_reference(default_reference(), name="x")


@pytest.mark.parametrize("source", ["resnet18", "timm:mobilenetv3_small_050"])
def test_num_classes_builds_the_users_head(source: str, tmp_path, no_network):
    """A network fine-tuned to 4 classes loads with num_classes=4; without it the error names the way out."""
    import timm
    from torchvision.models import resnet18

    torch.manual_seed(0)
    model = (resnet18(num_classes=4) if source == "resnet18" else timm.create_model(source[5:], pretrained=False, num_classes=4)).eval()
    path = tmp_path / "net.pt"
    torch.save(model.state_dict(), path)
    with pytest.raises(ValueError, match="pass num_classes=N \\(--num-classes N on the command line\\)"):
        load_reference(source, weights=path)
    net = load_reference(source, weights=path, num_classes=4)
    images = torch.rand(2, 3, 40, 40, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected = model(net.preprocess(images))
    torch.testing.assert_close(net(images), expected)
    metric = create_metric("confidence", reference=source, weights=path, num_classes=4)
    assert metric(torch.rand(2, 3, 160, 160)).shape == (2,)  # within 2x of 224 px: in the network's domain
    with pytest.raises(ValueError, match="num_classes should be None or a positive int"):
        load_reference(source, weights=path, num_classes=0)
    with pytest.raises(FileNotFoundError, match="pass the state_dict of your own network"):
        load_reference("resnet18", num_classes=4)

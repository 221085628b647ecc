"""Tests of the task-guided metric: shipped default, features, reference resolution, severity response, checkpoints."""

from __future__ import annotations

import pytest
import torch

from qualoader.calibration import DifficultyCalibration
from qualoader.corruptions import corrupt, list_corruptions
from qualoader.metrics import create_metric, list_metrics, metric_info
from qualoader.metrics.aligned.reference_features import reference_feature_names, reference_features
from qualoader.metrics.aligned.task_guided import (
    FEATURE_NAMES,
    TaskGuided,
    TaskGuidedHead,
    default_task_guided_path,
    head_feature_names,
    head_features,
    load_task_guided_head,
    save_task_guided_head,
    task_guided_features,
)
from qualoader.reference import default_reference

SEVERITIES = (1, 2, 3, 4, 5)


@pytest.fixture(scope="module")
def metric() -> TaskGuided:
    return create_metric("task-guided")


def test_registered_as_no_reference_higher_is_better() -> None:
    assert "task-guided" in list_metrics("NR")
    info = metric_info("task-guided")
    assert info.higher_is_better and info.mode == "NR" and not info.requires_weights


def test_default_loads_offline_and_scores_a_batch(metric: TaskGuided, fashion_mnist_test) -> None:
    images, _ = fashion_mnist_test
    assert default_task_guided_path().is_file() and default_task_guided_path().with_suffix(".json").is_file()
    scores = metric(images[:16])
    assert scores.shape == (16,) and scores.dtype == torch.float32
    assert not scores.requires_grad, "a frozen scorer builds no autograd graph"
    assert bool(((scores > 0) & (scores < 1)).all())
    assert isinstance(metric.calibration, DifficultyCalibration)
    difficulty = metric.difficulty(scores)
    assert difficulty.shape == (16,) and bool(((difficulty >= 0) & (difficulty <= 1)).all())


def test_function_and_module_agree(metric: TaskGuided, photos: torch.Tensor) -> None:
    expected = metric.head(head_features(photos, metric.inputs, metric.network))
    assert torch.allclose(metric(photos), expected)
    assert metric.head.feature_names == head_feature_names(metric.inputs, metric.network)


def test_features_are_computed_at_the_reference_input_size(metric: TaskGuided, photos: torch.Tensor) -> None:
    # What the network sees: a 128 px photo scores as its antialiased 28 px version does.
    small = torch.nn.functional.interpolate(photos, size=(28, 28), mode="bilinear", align_corners=False, antialias=True).clamp(0, 1)
    torch.testing.assert_close(metric(photos), metric(small), atol=1e-5, rtol=0)
    assert metric.network.input_size == (28, 28)


def test_reference_features_columns_and_meaning(photos: torch.Tensor, fashion_mnist_test) -> None:
    network = default_reference()
    names = reference_feature_names(network)
    clean = fashion_mnist_test[0][:64].float() / 255
    noisy = corrupt(clean, "gaussian_noise", 5, generator=torch.Generator().manual_seed(0))
    features = {label: reference_features(network, images) for label, images in (("clean", clean), ("noisy", noisy))}
    assert features["clean"].shape == (64, len(names)) and bool(features["clean"].isfinite().all())
    column = {name: index for index, name in enumerate(names)}
    probability = features["clean"][:, column["max_probability"]]
    assert bool(((probability > 0.1 - 1e-6) & (probability <= 1)).all())
    kl = [index for name, index in column.items() if name.endswith(".kl")]
    assert len(kl) == 3  # one per BatchNorm layer of the embedded network
    assert features["noisy"][:, kl].mean() > features["clean"][:, kl].mean()  # noise moves activation statistics
    assert features["noisy"][:, column["max_probability"]].mean() < probability.mean()


def test_features_shape_device_dtype(device: torch.device, dtype: torch.dtype, photos: torch.Tensor) -> None:
    rgb = photos[:3].to(device=device, dtype=dtype)
    features = task_guided_features(rgb)
    assert features.shape == (3, len(FEATURE_NAMES)) and features.device == rgb.device
    assert bool(features.isfinite().all())
    gray = task_guided_features(rgb.mean(dim=1, keepdim=True))
    assert torch.allclose(gray[:, FEATURE_NAMES.index("saturation")], torch.zeros(3, device=device, dtype=torch.float32))
    constant = task_guided_features(torch.full((2, 1, 9, 13), 0.5, device=device, dtype=dtype))
    assert bool(constant.isfinite().all())


def test_metric_runs_on_device_and_is_deterministic(metric: TaskGuided, device: torch.device, fashion_mnist_test) -> None:
    images = fashion_mnist_test[0][:8].to(device)
    moved = create_metric("task-guided", device=device)
    first, second = moved(images), moved(images)
    assert first.device == images.device and torch.equal(first, second)
    assert torch.allclose(first.cpu(), metric(images.cpu()), atol=1e-6)


def test_moves_monotonically_with_severity_for_12_corruptions(metric: TaskGuided, fashion_mnist_test) -> None:
    images = fashion_mnist_test[0][:200].float() / 255
    generator = torch.Generator().manual_seed(0)
    clean = float(metric(images).mean())
    monotone = []
    for name in list_corruptions():
        means = [clean] + [float(metric(corrupt(images, name, s, generator=generator).clamp(0, 1)).mean()) for s in SEVERITIES]
        steps = torch.tensor(means).diff()
        if bool((steps <= 0).all()) and means[-1] < means[0]:
            monotone.append(name)
    assert len(monotone) >= 12, f"monotone for {len(monotone)} corruptions only: {monotone}"


def test_checkpoint_round_trip(metric: TaskGuided, tmp_path, fashion_mnist_test) -> None:
    images = fashion_mnist_test[0][:32]
    path = tmp_path / "head.pt"
    save_task_guided_head(metric.head, path, metric.calibration.state_dict(), inputs=metric.inputs, reference=metric.network.weights_hash)
    loaded = create_metric("task-guided", checkpoint=path)
    assert torch.equal(loaded(images), metric(images))
    assert loaded.calibration == metric.calibration
    assert torch.equal(loaded.difficulty(loaded(images)), metric.difficulty(metric(images)))
    assert loaded.fingerprint() != create_metric("task-guided").fingerprint()  # the checkpoint path is config
    generator = torch.Generator().manual_seed(3)
    head = TaskGuidedHead(
        (8,), torch.randn(len(FEATURE_NAMES), generator=generator), torch.rand(len(FEATURE_NAMES), generator=generator) + 0.5
    )
    save_task_guided_head(head, tmp_path / "random.pt")
    custom = create_metric("task-guided", checkpoint=str(tmp_path / "random.pt"))
    assert custom.calibration is None  # no calibration stored, none guessed
    assert torch.allclose(custom(images), head(task_guided_features(images.float() / 255)))
    reloaded, calibration = load_task_guided_head(tmp_path / "random.pt")
    assert calibration is None and all(torch.equal(a, b) for a, b in zip(reloaded.state_dict().values(), head.state_dict().values()))


def test_bad_checkpoints(tmp_path, photos: torch.Tensor) -> None:
    with pytest.raises(FileNotFoundError, match="does not exist"):
        create_metric("task-guided", checkpoint=tmp_path / "missing.pt")
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="torch.load cannot read"):
        create_metric("task-guided", checkpoint=garbage)
    torch.save({"weights": torch.zeros(3)}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="task-guided head saved by qualoader"):
        create_metric("task-guided", checkpoint=tmp_path / "other.pt")
    with pytest.raises(TypeError, match="checkpoint should be a path"):
        create_metric("task-guided", checkpoint=3)


def test_bad_images(metric: TaskGuided) -> None:
    with pytest.raises(ValueError, match="images should have shape"):
        metric(torch.rand(1, 28, 28))
    with pytest.raises(ValueError, match=r"in \[0, 1\]"):
        metric(torch.full((1, 1, 8, 8), 2.0))
    with pytest.raises(ValueError, match="reference should be None"):
        metric(torch.rand(1, 1, 8, 8), torch.rand(1, 1, 8, 8))

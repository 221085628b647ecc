"""zeroshot: mechanics with a tiny local image-text model and a tiny CLIP file (no real weights offline)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from qualoader.datasets import FASHION_MNIST_CLASSES
from qualoader.metrics import create_metric, metric_info
from qualoader.metrics.aligned.zeroshot import (
    DEFAULT_ANTONYMS,
    ZeroShot,
    zeroshot_quality,
)
from qualoader.reference import CLIP_MEAN, CLIP_STD, preprocess_images
from qualoader.reference.image_text import _clip_submodule


class ByteTokenizer:
    """Bytes of each text, zero-padded to 32 positions."""

    def __call__(self, texts: list[str]) -> Tensor:
        tokens = torch.zeros(len(texts), 32, dtype=torch.long)
        for row, text in enumerate(texts):
            data = list(text.encode())[:32]
            tokens[row, : len(data)] = torch.tensor(data)
        return tokens


class TinyImageText(nn.Module):
    """encode_image: conv + BatchNorm + dropout + linear; encode_text: mean of byte embeddings."""

    def __init__(self, dim: int = 16) -> None:
        super().__init__()
        self.image = nn.Sequential(
            nn.Conv2d(3, 8, 3, stride=2),
            nn.BatchNorm2d(8),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(2),
            nn.Flatten(),
            nn.Dropout(0.5),
            nn.Linear(32, dim),
        )
        self.text = nn.EmbeddingBag(256, dim, padding_idx=0)
        self.logit_scale = nn.Parameter(torch.tensor(2.0))

    def encode_image(self, images: Tensor) -> Tensor:
        return self.image(images)

    def encode_text(self, tokens: Tensor) -> Tensor:
        return self.text(tokens)


def _model(seed: int = 0) -> TinyImageText:
    torch.manual_seed(seed)
    return TinyImageText()


def _metric(model: nn.Module | None = None, **options) -> ZeroShot:
    return create_metric("zeroshot", model=model or _model(), tokenizer=ByteTokenizer(), input_size=32, **options)


@pytest.fixture(scope="module")
def images(fashion_mnist_test) -> Tensor:
    return fashion_mnist_test[0][:24].float() / 255


def test_registered_as_no_reference_metric_needing_weights():
    info = metric_info("zeroshot")
    assert info.mode == "NR" and info.higher_is_better and info.requires_weights


def test_scores_shape_range_and_dtype(images, device, dtype):
    metric = _metric().to(device)
    scores = metric(images.to(device, dtype))
    assert scores.shape == (len(images),) and scores.dtype == dtype and scores.device.type == device.type
    assert bool(((scores >= 1 / len(FASHION_MNIST_CLASSES) - 1e-6) & (scores <= 1)).all())


def test_module_agrees_with_pure_function(images):
    model = _model()
    metric = _metric(model)
    mean, std = torch.tensor(CLIP_MEAN).view(1, 3, 1, 1), torch.tensor(CLIP_STD).view(1, 3, 1, 1)
    with torch.no_grad():
        embeddings = model.eval().encode_image(preprocess_images(images, (32, 32), 3, mean, std))
        prompts = model.encode_text(ByteTokenizer()([f"a photo of a {c}." for c in FASHION_MNIST_CLASSES]))
    expected = zeroshot_quality(embeddings, prompts, logit_scale=float(torch.tensor(2.0).exp()))
    torch.testing.assert_close(metric(images), expected)
    probabilities = (float(torch.tensor(2.0).exp()) * F.normalize(embeddings, dim=1) @ F.normalize(prompts, dim=1).T).softmax(1)
    torch.testing.assert_close(metric(images), probabilities.amax(1))


def test_confidence_variants_are_ordered(images):
    top1, margin, entropy = (_metric(confidence=c)(images) for c in ("top1", "margin", "entropy"))
    assert bool((margin <= top1 + 1e-6).all()) and bool((margin >= 0).all())
    assert bool(((entropy >= -1e-6) & (entropy <= 1 + 1e-6)).all())
    assert not torch.allclose(top1, margin)


def test_antonyms_multiply_by_positive_prompt_probability(images):
    model = _model()
    plain, contrasted = _metric(model)(images), _metric(model, antonyms=True)(images)
    ratio = contrasted / plain
    assert bool(((ratio > 0) & (ratio < 1)).all())
    custom = _metric(model, antonyms=DEFAULT_ANTONYMS)(images)
    torch.testing.assert_close(custom, contrasted)
    swapped = _metric(model, antonyms=tuple(reversed(DEFAULT_ANTONYMS)))(images)
    torch.testing.assert_close(swapped / plain + ratio, torch.ones_like(ratio))


def test_batched_equals_per_image(images):
    metric = _metric()
    single = torch.cat([metric(images[i : i + 1]) for i in range(len(images))])
    torch.testing.assert_close(metric(images), single, rtol=1e-5, atol=1e-6)


def test_model_in_train_mode_is_evaluated_in_eval_mode_and_left_untouched(images):
    model = _model().train()
    bn = model.image[1]
    running = bn.running_mean.clone()
    metric = _metric(model)
    scores = metric(images)
    assert all(m.training for m in model.modules())
    torch.testing.assert_close(bn.running_mean, running)
    torch.testing.assert_close(scores, _metric(_model().eval())(images))


def test_text_prompts_matter(images):
    model = _model()
    assert not torch.allclose(_metric(model)(images), _metric(model, template="a blurry picture of {}")(images))
    few = _metric(model, class_names=("Sandal", "Bag"))(images)
    assert bool((few >= 0.5).all())


def test_fingerprint_is_stable_and_follows_weights_and_config():
    first, second = _metric(_model(0)), _metric(_model(0))
    assert first.fingerprint() == second.fingerprint() and len(first.fingerprint()) == 16
    assert _metric(_model(1)).fingerprint() != first.fingerprint()
    assert _metric(_model(0), confidence="margin").fingerprint() != first.fingerprint()
    with torch.no_grad():
        first.model.image[-1].bias += 0.1
    assert first.fingerprint() != second.fingerprint()


def test_tiny_clip_checkpoint_end_to_end(tmp_path, images):
    torch.manual_seed(0)
    clip = _clip_submodule("model").CLIP(16, 32, 1, 64, 16, 77, 49408, 64, 1, 1)
    path = tmp_path / "tiny_clip.pt"
    torch.save(clip.state_dict(), path)
    metric = create_metric("zeroshot", model=str(path), antonyms=True)
    assert metric.input_size == (32, 32) and metric.get_config()["checkpoint"] == str(path)
    scores = metric(images[:4])
    assert scores.shape == (4,) and bool(((scores > 0) & (scores <= 1)).all())
    assert create_metric("zeroshot", model=path, antonyms=True).fingerprint() == metric.fingerprint()


def test_missing_checkpoint_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("QUALOADER_CLIP_CHECKPOINT", str(tmp_path / "ViT-B-32.pt"))
    with pytest.raises(FileNotFoundError, match="ViT-B-32.pt.*does not exist.*clip.load"):
        create_metric("zeroshot")
    with pytest.raises(FileNotFoundError, match="other.pt"):
        create_metric("zeroshot", model=tmp_path / "other.pt")


def test_bad_arguments(images):
    with pytest.raises(TypeError, match="model should have an encode_image"):
        create_metric("zeroshot", model=nn.Linear(2, 2), tokenizer=ByteTokenizer())
    with pytest.raises(TypeError, match="model should be an nn.Module"):
        create_metric("zeroshot", model=3)
    with pytest.raises(TypeError, match="tokenizer should be a callable"):
        create_metric("zeroshot", model=_model())
    with pytest.raises(ValueError, match="template should contain exactly one"):
        _metric(template="a photo")
    with pytest.raises(ValueError, match="class_names should be a sequence of at least 2"):
        _metric(class_names=("Bag",))
    with pytest.raises(ValueError, match="class_names should be"):
        _metric(class_names="Bag")
    with pytest.raises(ValueError, match="confidence should be one of"):
        _metric(confidence="max")
    with pytest.raises(ValueError, match="antonyms should be"):
        _metric(antonyms=("good",))
    with pytest.raises(ValueError, match="logit_scale should be a positive float"):
        _metric(logit_scale=0.0)
    with pytest.raises(ValueError, match="reference should be None"):
        _metric()(images, images)
    with pytest.raises(ValueError, match="C in"):
        _metric()(torch.rand(2, 2, 8, 8))
    with pytest.raises(ValueError, match=r"class_embeddings should have shape \(K >= 2, D\)"):
        zeroshot_quality(torch.rand(2, 4), torch.rand(1, 4))
    with pytest.raises(ValueError, match=r"antonym_embeddings should have shape \(2, D\)"):
        zeroshot_quality(torch.rand(2, 4), torch.rand(3, 4), antonym_embeddings=torch.rand(3, 4))

"""``zeroshot``: an image-text model's zero-shot confidence on the task's class prompts as image quality.

An image the model can confidently put in one of the task's classes (prompts ``template.format(c)``,
e.g. "a photo of a sandal.") is a good image *for that task*; a degraded one spreads its
probability over the classes. Optionally, the confidence is multiplied by the probability of a
quality prompt against its antonym (default pair: "a good photo." / "a bad photo.").

Works with any module exposing ``encode_image(images) -> (B, D)`` and ``encode_text(tokens) -> (T, D)``
(OpenAI CLIP, open_clip, or your own) plus a tokenizer ``tokenizer(list[str]) -> tokens``; OpenAI
CLIP can be built from a local checkpoint file (:func:`qualoader.reference.image_text.load_clip`).
The text embeddings are computed once, at construction.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from qualoader._validation import check_choice, check_type
from qualoader.datasets import FASHION_MNIST_CLASSES
from qualoader.metrics.base import QualityMetric
from qualoader.metrics.registry import register_metric
from qualoader.reference.image_text import (
    CLIP_MEAN,
    CLIP_STD,
    default_clip_checkpoint,
    load_clip,
)
from qualoader.reference.network import (
    _as_pair,
    _as_stats,
    eval_mode,
    preprocess_images,
)

__all__ = ["CONFIDENCES", "DEFAULT_ANTONYMS", "ZeroShot", "zeroshot_quality"]

#: ``"top1"``: top-1 probability; ``"margin"``: top-1 minus top-2 probability;
#: ``"entropy"``: 1 - normalised entropy of the class distribution. All in [0, 1].
CONFIDENCES = frozenset({"entropy", "margin", "top1"})
#: Default (positive, negative) quality prompts for ``antonyms=True``.
DEFAULT_ANTONYMS: tuple[str, str] = ("a good photo.", "a bad photo.")


def _confidence(probabilities: Tensor, confidence: str) -> Tensor:
    """Confidence :math:`(B,)` in [0, 1] of class probabilities :math:`(B, K)`."""
    if confidence == "top1":
        return probabilities.amax(1)
    if confidence == "margin":
        top = probabilities.topk(2, dim=1).values
        return top[:, 0] - top[:, 1]
    # clamp_min: a probability of exactly 0 must contribute 0, not 0 * -inf = NaN. Dividing by log K
    # makes 1 the certain image and 0 the uniform one, whatever the number of classes.
    entropy = -(probabilities * probabilities.clamp_min(1e-12).log()).sum(1)
    return 1.0 - entropy / torch.log(torch.tensor(float(probabilities.shape[1])))


def zeroshot_quality(
    image_embeddings: Tensor,
    class_embeddings: Tensor,
    *,
    logit_scale: float = 100.0,
    confidence: str = "top1",
    antonym_embeddings: Tensor | None = None,
) -> Tensor:
    """Zero-shot quality from embeddings (the pure function behind :class:`ZeroShot`).

    Args:
        image_embeddings: :math:`(B, D)` (any norm; normalised here).
        class_embeddings: :math:`(K, D)` text embeddings of the class prompts, ``K >= 2``.
        logit_scale: multiplier of the cosine similarities before the softmax (CLIP's is 100).
        confidence: one of :data:`CONFIDENCES`.
        antonym_embeddings: optional :math:`(2, D)` (positive, negative) quality prompts; the
            confidence is then multiplied by the softmax probability of the positive prompt.

    Returns:
        Quality :math:`(B,)` in [0, 1]; higher is better.
    """
    check_choice(confidence, "confidence", CONFIDENCES)
    if class_embeddings.ndim != 2 or class_embeddings.shape[0] < 2:
        raise ValueError(f"class_embeddings should have shape (K >= 2, D), but got class_embeddings.shape={tuple(class_embeddings.shape)}")
    # float32 even for a half-precision model: fp16 cosines carry ~1e-3 error, which logit_scale=100
    # turns into ~0.1 on every logit.
    images = F.normalize(image_embeddings.float(), dim=1)
    classes = F.normalize(class_embeddings.float(), dim=1)
    quality = _confidence((logit_scale * images @ classes.T).softmax(1), confidence)
    if antonym_embeddings is not None:
        if antonym_embeddings.shape[0] != 2:
            raise ValueError(
                f"antonym_embeddings should have shape (2, D), but got antonym_embeddings.shape={tuple(antonym_embeddings.shape)}"
            )
        antonyms = F.normalize(antonym_embeddings.float(), dim=1)
        quality = quality * (logit_scale * images @ antonyms.T).softmax(1)[:, 0]
    return quality


def _check_image_text_model(model: Any) -> nn.Module:
    check_type(model, "model", nn.Module, "an nn.Module with encode_image and encode_text, a checkpoint path or None")
    for method in ("encode_image", "encode_text"):
        if not callable(getattr(model, method, None)):
            raise TypeError(
                f"model should have an {method}() method (CLIP-style image-text model), but got model of type {type(model).__name__} "
                "without it"
            )
    return model


@register_metric
class ZeroShot(QualityMetric):
    """Zero-shot (NR, task-guided): an image-text model's confidence on the task's class prompts; higher is better.

    Args:
        model: an image-text ``nn.Module`` (``encode_image``/``encode_text``); or the path of a local
            OpenAI CLIP checkpoint; or ``None`` for :func:`~qualoader.reference.image_text.default_clip_checkpoint`
            (``$QUALOADER_CLIP_CHECKPOINT`` or ``~/.cache/clip/ViT-B-32.pt``). Never downloaded.
        tokenizer: ``tokenizer(list[str]) -> tokens`` accepted by ``model.encode_text``; required
            with a module, built automatically for a CLIP checkpoint.
        class_names: the task's classes (default: Fashion-MNIST's ten).
        template: prompt with one ``{}`` for the class name.
        confidence: ``"top1"`` (default), ``"margin"`` or ``"entropy"`` (see :data:`CONFIDENCES`).
        antonyms: ``None``/``False`` (off), ``True`` (:data:`DEFAULT_ANTONYMS`) or a (positive, negative) prompt pair.
        input_size: side (or ``(h, w)``) of the image encoder's input; default ``model.visual.input_resolution`` or 224.
        mean: input normalisation mean (default CLIP's).
        std: input normalisation standard deviation (default CLIP's).
        logit_scale: softmax temperature multiplier; default ``model.logit_scale.exp()`` or 100.
        check_values: validate that float input is finite and in [0, 1].

    The model is always run in eval mode without changing its own ``training`` flags. Grey
    images are repeated to RGB.

    Raises:
        FileNotFoundError: no module given and no checkpoint at the expected path.
        TypeError: ``model`` lacks ``encode_image``/``encode_text``, or ``tokenizer`` is not callable.

    Example:
        >>> metric = create_metric("zeroshot", model="/models/ViT-B-32.pt")  # doctest: +SKIP
        >>> metric(torch.rand(4, 3, 224, 224)).shape  # doctest: +SKIP
        torch.Size([4])
    """

    name = "zeroshot"
    higher_is_better = True
    requires_reference = False
    requires_weights = True

    class_embeddings: Tensor
    antonym_embeddings: Tensor | None
    mean: Tensor
    std: Tensor

    def __init__(
        self,
        model: nn.Module | str | os.PathLike[str] | None = None,
        *,
        tokenizer: Callable[[list[str]], Tensor] | None = None,
        class_names: Sequence[str] = FASHION_MNIST_CLASSES,
        template: str = "a photo of a {}.",
        confidence: str = "top1",
        antonyms: bool | tuple[str, str] | None = None,
        input_size: int | tuple[int, int] | None = None,
        mean: Sequence[float] = CLIP_MEAN,
        std: Sequence[float] = CLIP_STD,
        logit_scale: float | None = None,
        check_values: bool = True,
    ) -> None:
        super().__init__(check_values=check_values)
        check_choice(confidence, "confidence", CONFIDENCES)
        check_type(template, "template", str, "a str with one '{}'")
        if template.count("{}") != 1:
            raise ValueError(f"template should contain exactly one '{{}}' for the class name, but got template={template!r}")
        if (
            isinstance(class_names, str)
            or not isinstance(class_names, Sequence)
            or len(class_names) < 2
            or not all(isinstance(c, str) for c in class_names)
        ):
            raise ValueError(f"class_names should be a sequence of at least 2 str, but got class_names={class_names!r}")
        antonym_pair = DEFAULT_ANTONYMS if antonyms is True else (None if antonyms in (None, False) else antonyms)
        if antonym_pair is not None and (
            not isinstance(antonym_pair, (tuple, list)) or len(antonym_pair) != 2 or not all(isinstance(t, str) for t in antonym_pair)
        ):
            raise ValueError(f"antonyms should be None, a bool or a (positive, negative) pair of str, but got antonyms={antonyms!r}")
        if model is None or isinstance(model, (str, os.PathLike)):
            checkpoint = default_clip_checkpoint() if model is None else model
            self.checkpoint: str | None = str(checkpoint)
            model, clip_tokenizer, resolution = load_clip(checkpoint)
            tokenizer = tokenizer or clip_tokenizer
            input_size = input_size or resolution
        else:
            self.checkpoint = None
            _check_image_text_model(model)
        if not callable(tokenizer):
            raise TypeError(
                "tokenizer should be a callable list[str] -> tokens for model.encode_text, but got tokenizer of type "
                f"{type(tokenizer).__name__}"
            )
        visual = getattr(model, "visual", None)
        self.input_size = _as_pair(input_size or getattr(visual, "input_resolution", 224), "input_size")
        self.model = model
        self.class_names = tuple(class_names)
        self.template = template
        self.confidence = confidence
        self.antonyms = None if antonym_pair is None else tuple(antonym_pair)
        self.register_buffer("mean", torch.tensor(_as_stats(mean, "mean", 3, positive=False)).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(_as_stats(std, "std", 3, positive=True)).view(1, 3, 1, 1))
        if logit_scale is None:
            stored = getattr(model, "logit_scale", None)
            # CLIP stores the log of its learned temperature, hence exp().
            logit_scale = float(stored.detach().exp()) if isinstance(stored, Tensor) else 100.0
        check_type(logit_scale, "logit_scale", (int, float), "a positive float")
        if not logit_scale > 0:
            raise ValueError(f"logit_scale should be a positive float, but got logit_scale={logit_scale}")
        self.logit_scale = float(logit_scale)
        # Buffers, so .to(device) moves the prompt embeddings with the metric; the text encoder runs once here,
        # never per batch.
        self.register_buffer("class_embeddings", self._encode_text(tokenizer, [template.format(c) for c in self.class_names]))
        self.register_buffer("antonym_embeddings", None if self.antonyms is None else self._encode_text(tokenizer, list(self.antonyms)))

    @torch.no_grad()
    def _encode_text(self, tokenizer: Callable[[list[str]], Tensor], texts: list[str]) -> Tensor:
        with eval_mode(self.model):
            return F.normalize(self.model.encode_text(tokenizer(texts)).float(), dim=1)

    def train(self, mode: bool = True) -> ZeroShot:
        """Set only this metric's flag: the image-text model always runs in eval mode, its flags untouched."""
        check_type(mode, "mode", bool, "a bool")
        self.training = mode
        return self

    @torch.no_grad()
    def score(self, images: Tensor, reference: Tensor | None = None) -> Tensor:
        """Quality :math:`(B,)` in [0, 1] of validated images :math:`(B, C, H, W)`."""
        inputs = preprocess_images(images, self.input_size, 3, self.mean, self.std)
        parameter = next(self.model.parameters(), None)
        if parameter is not None:
            # A half-precision checkpoint refuses float32 input; a model without parameters takes it as is.
            inputs = inputs.to(parameter.dtype)
        with eval_mode(self.model):
            embeddings = self.model.encode_image(inputs)
        quality = zeroshot_quality(
            embeddings,
            self.class_embeddings,
            logit_scale=self.logit_scale,
            confidence=self.confidence,
            antonym_embeddings=self.antonym_embeddings,
        )
        return quality.to(images.dtype)

    def get_config(self) -> dict[str, Any]:
        return {
            "model": type(self.model).__name__,
            "checkpoint": self.checkpoint,
            "class_names": list(self.class_names),
            "template": self.template,
            "confidence": self.confidence,
            "antonyms": None if self.antonyms is None else list(self.antonyms),
            "input_size": list(self.input_size),
            "logit_scale": self.logit_scale,
        }

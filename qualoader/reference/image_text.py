"""Offline loading of image-text models (OpenAI CLIP checkpoints) for the ``zeroshot`` metric.

Any module with ``encode_image(images) -> (B, D)`` and ``encode_text(tokens) -> (T, D)`` works
with ``zeroshot``; this module only builds OpenAI CLIP from a LOCAL checkpoint file with the
architecture code of the installed ``openai-clip`` package (``clip.model.build_model``), and
tokenises with its BPE tokenizer. Nothing is downloaded.

The ``clip`` package's ``__init__`` imports ``pkg_resources``, which recent setuptools no longer
provides; its ``model`` and ``simple_tokenizer`` sub-modules do not need it, so they are loaded
from the installed package folder directly when ``import clip`` fails.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import warnings
from pathlib import Path
from types import ModuleType
from typing import Any

import torch
from torch import Tensor, nn

from qualoader._validation import check_positive_int, check_type
from qualoader.reference.loading import load_state_dict_file

__all__ = [
    "CLIP_MEAN",
    "CLIP_STD",
    "ClipTokenizer",
    "default_clip_checkpoint",
    "load_clip",
]

#: Normalisation of OpenAI CLIP's image preprocessing (RGB).
CLIP_MEAN: tuple[float, float, float] = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD: tuple[float, float, float] = (0.26862954, 0.26130258, 0.27577711)
_CHECKPOINT_ENV = "QUALOADER_CLIP_CHECKPOINT"


def default_clip_checkpoint() -> Path:
    """Where ``zeroshot`` looks for CLIP weights by default.

    ``$QUALOADER_CLIP_CHECKPOINT`` if set, else ``~/.cache/clip/ViT-B-32.pt`` (where
    ``clip.load("ViT-B/32")`` stores the OpenAI ViT-B/32 checkpoint on a machine with internet).
    """
    return Path(os.environ.get(_CHECKPOINT_ENV) or Path.home() / ".cache" / "clip" / "ViT-B-32.pt")


def _clip_submodule(name: str) -> ModuleType:
    """``clip.<name>`` from the installed openai-clip package, even when ``import clip`` itself fails."""
    try:
        return importlib.import_module(f"clip.{name}")
    except ImportError:
        spec = importlib.util.find_spec("clip")
        if spec is None or not spec.submodule_search_locations:
            raise ImportError(
                "the openai-clip package should be installed to build CLIP from a checkpoint, but got no 'clip' package; "
                "pip install openai-clip (pyiqa installs it), or pass your own model= and tokenizer= to zeroshot"
            ) from None
        path = Path(next(iter(spec.submodule_search_locations))) / f"{name}.py"
        module_spec = importlib.util.spec_from_file_location(f"qualoader._clip_{name}", path)
        if module_spec is None or module_spec.loader is None:
            raise ImportError(f"clip.{name} should be loadable from {path}, but got no loader for it") from None
        module = importlib.util.module_from_spec(module_spec)
        module_spec.loader.exec_module(module)
        return module


class ClipTokenizer:
    """OpenAI CLIP's BPE tokenisation: ``tokenizer(texts) -> LongTensor (T, context_length)``.

    Each text becomes ``<start> tokens <end>`` zero-padded (and truncated, keeping ``<end>``)
    to ``context_length``. Picklable; the vocabulary is read once, on the first call.

    Args:
        context_length: token positions of the text encoder (77 for OpenAI CLIP).
    """

    def __init__(self, context_length: int = 77) -> None:
        self.context_length = check_positive_int(context_length, "context_length")
        self._bpe: Any = None

    def __getstate__(self) -> dict[str, Any]:
        return {"context_length": self.context_length, "_bpe": None}

    def __call__(self, texts: list[str]) -> Tensor:
        if isinstance(texts, str) or not isinstance(texts, (list, tuple)) or not all(isinstance(t, str) for t in texts):
            raise TypeError(f"texts should be a list of str, but got texts of type {type(texts).__name__}")
        if self._bpe is None:
            self._bpe = _clip_submodule("simple_tokenizer").SimpleTokenizer()
        start, end = self._bpe.encoder["<|startoftext|>"], self._bpe.encoder["<|endoftext|>"]
        tokens = torch.zeros(len(texts), self.context_length, dtype=torch.long)
        for row, text in enumerate(texts):
            ids = [start, *self._bpe.encode(text)][: self.context_length - 1] + [end]
            tokens[row, : len(ids)] = torch.tensor(ids)
        return tokens


def load_clip(checkpoint: str | os.PathLike[str]) -> tuple[nn.Module, ClipTokenizer, int]:
    """Build an OpenAI CLIP model from a local checkpoint (TorchScript archive or ``state_dict``).

    Args:
        checkpoint: path of e.g. ``ViT-B-32.pt`` as stored by ``clip.load`` in ``~/.cache/clip``.

    Returns:
        ``(model, tokenizer, input_resolution)``: the model in float32 and eval mode, its
        tokenizer, and the side length of its square input.

    Raises:
        FileNotFoundError: no such file (the message says which file to download and where).
    """
    check_type(checkpoint, "checkpoint", (str, os.PathLike), "a path to a local CLIP checkpoint (str or PathLike)")
    path = Path(checkpoint)
    if not path.is_file():
        raise FileNotFoundError(
            f"checkpoint should be a local OpenAI CLIP checkpoint file, but got checkpoint={str(path)!r}, which does not exist; "
            f"on a machine with internet run clip.load('ViT-B/32') (it saves ~/.cache/clip/ViT-B-32.pt), copy that file here "
            f"and pass its path as model=... (or set ${_CHECKPOINT_ENV}); qualoader never downloads"
        )
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # torch.jit.load is deprecated but reads OpenAI's archives
            state = torch.jit.load(str(path), map_location="cpu").state_dict()
    except (RuntimeError, ValueError):
        state = load_state_dict_file(path)
    model = _clip_submodule("model").build_model(dict(state)).float().eval()
    context_length = int(model.positional_embedding.shape[0])
    return model, ClipTokenizer(context_length), int(model.visual.input_resolution)

"""Offline CLIP loading and tokenisation (a tiny randomly initialised CLIP stands in for real weights)."""

from __future__ import annotations

import pickle

import pytest
import torch

from qualoader.reference import ClipTokenizer, default_clip_checkpoint, load_clip
from qualoader.reference.image_text import _clip_submodule


@pytest.fixture(scope="module")
def tiny_clip_file(tmp_path_factory: pytest.TempPathFactory):
    """A randomly initialised ViT CLIP (width 64, one layer each) saved as a state_dict file."""
    torch.manual_seed(0)
    model = _clip_submodule("model").CLIP(16, 32, 1, 64, 16, 77, 49408, 64, 1, 1)
    path = tmp_path_factory.mktemp("clip") / "tiny.pt"
    torch.save(model.state_dict(), path)
    return path


def test_tokenizer_frames_pads_and_truncates():
    tokenizer = ClipTokenizer()
    tokens = tokenizer(["a photo of a cat.", "x"])
    assert tokens.shape == (2, 77) and tokens.dtype == torch.long
    start, end = 49406, 49407  # <|startoftext|>, <|endoftext|> of OpenAI CLIP's vocabulary
    assert int(tokens[0, 0]) == start and int(tokens[1, 0]) == start
    length = int((tokens[0] != 0).sum())
    assert int(tokens[0, length - 1]) == end and bool((tokens[0, length:] == 0).all())
    short = ClipTokenizer(context_length=4)(["a photo of a cat."])
    assert short.tolist()[0][0] == start and short.tolist()[0][-1] == end
    assert short.tolist()[0][1:3] == tokens.tolist()[0][1:3]


def test_tokenizer_pickles_and_rejects_bad_input():
    tokenizer = ClipTokenizer(context_length=8)
    tokenizer(["warm up"])
    clone = pickle.loads(pickle.dumps(tokenizer))
    assert torch.equal(clone(["a dress"]), tokenizer(["a dress"]))
    with pytest.raises(TypeError, match="texts should be a list of str"):
        tokenizer("a dress")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="context_length should be a positive int"):
        ClipTokenizer(context_length=0)


def test_load_clip_from_local_state_dict(tiny_clip_file):
    model, tokenizer, resolution = load_clip(tiny_clip_file)
    assert resolution == 32 and not model.training
    assert all(p.dtype == torch.float32 for p in model.parameters())
    with torch.no_grad():
        image = model.encode_image(torch.rand(2, 3, 32, 32))
        text = model.encode_text(tokenizer(["a photo of a bag.", "a photo of a coat."]))
    assert image.shape == (2, 16) and text.shape == (2, 16)


def test_load_clip_missing_file_says_what_to_download(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"clip.load\('ViT-B/32'\).*ViT-B-32.pt"):
        load_clip(tmp_path / "ViT-B-32.pt")
    with pytest.raises(TypeError, match="checkpoint should be a path"):
        load_clip(3)  # type: ignore[arg-type]


def test_default_checkpoint_location(monkeypatch, tmp_path):
    monkeypatch.delenv("QUALOADER_CLIP_CHECKPOINT", raising=False)
    assert default_clip_checkpoint().parts[-3:] == (".cache", "clip", "ViT-B-32.pt")
    monkeypatch.setenv("QUALOADER_CLIP_CHECKPOINT", str(tmp_path / "mine.pt"))
    assert default_clip_checkpoint() == tmp_path / "mine.pt"

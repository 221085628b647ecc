"""The train-with-samplers example in quick mode, on the bundled sample: the recipe and every variant train a CNN far above chance."""

from __future__ import annotations

import pytest


@pytest.mark.slow
def test_quick_run_trains_every_sampler(load_script, tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.setenv("QUALOADER_FASHION_MNIST", str(tmp_path / "no-copy-here"))  # as on a fresh machine
    example = load_script("examples/train_with_samplers.py")
    accuracies = example.main(["--quick", "--score", "confidence"])
    out = capsys.readouterr().out
    assert "data: 2000 train / 1000 test images (sample copy of Fashion-MNIST)" in out
    assert "scored 2000 training images with confidence" in out
    assert set(accuracies) == set(example.SAMPLERS)
    for name, values in accuracies.items():
        assert values["clean"] > 0.5, f"{name}: clean accuracy {values['clean']:.3f} is not far above chance (0.1)"
        # the held-out corruptions were never trained on: they cost accuracy (the same TEST images, degraded)
        assert 0.1 < values["held-out"] < values["clean"], name


def test_degrade_corrupts_the_seeded_share_only(load_script) -> None:
    import torch

    example = load_script("examples/train_with_samplers.py")
    images = torch.rand(200, 1, 28, 28)
    out = example.degrade(images, 0.5, example.TRAIN_FAMILIES, torch.Generator().manual_seed(0))
    changed = (out != images).flatten(1).any(1)
    assert int(changed.sum()) <= 100 and int(changed.sum()) > 80  # a few mild corruptions may leave an image as it was
    again = example.degrade(images, 0.5, example.TRAIN_FAMILIES, torch.Generator().manual_seed(0))
    assert torch.equal(out, again)

"""The train-with-samplers example in quick mode, on the bundled sample: every sampler trains a CNN far above chance."""

from __future__ import annotations

import pytest

_SAMPLERS = {"random", "stratified", "stratified-batch", "weighted-easy", "weighted-hard", "curriculum"}


@pytest.mark.slow
def test_quick_run_trains_every_sampler(load_script, tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.setenv("QUALOADER_FASHION_MNIST", str(tmp_path / "no-copy-here"))  # as on a fresh machine
    example = load_script("examples/train_with_samplers.py")
    accuracies = example.main(["--quick"])
    assert "data: 2000 train / 1000 test images (sample copy of Fashion-MNIST)" in capsys.readouterr().out
    assert set(accuracies) == _SAMPLERS
    for name, value in accuracies.items():
        assert isinstance(value, float), name
        assert value > 0.5, f"{name}: accuracy {value:.3f} is not far above chance (0.1)"

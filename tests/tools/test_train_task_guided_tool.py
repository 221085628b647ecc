"""tools/train_task_guided.py retrains on the shipped head's own sweep unless told otherwise."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from qualoader.metrics.aligned.task_guided import default_task_guided_path


@pytest.fixture
def tool(load_script, monkeypatch: pytest.MonkeyPatch, fashion_mnist_test: tuple[torch.Tensor, torch.Tensor]):
    """The script, reading real Fashion-MNIST images (the bundled sample where the full split is absent) as its TRAIN split."""
    module = load_script("tools/train_task_guided.py")
    monkeypatch.setattr(module, "load_fashion_mnist", lambda split, source="full": fashion_mnist_test)
    return module


@pytest.mark.parametrize("chosen", [None, ["snow", "frost"]])
def test_sweep_is_the_shipped_recipe_unless_named(tool, tmp_path: Path, chosen: list[str] | None, capsys) -> None:
    argv = ["--out", str(tmp_path / "head.pt"), "--max-images", "4", "--steps", "3"]
    assert tool.main(argv + (["--corruptions", *chosen] if chosen else [])) == 0
    recipe = json.loads((tmp_path / "head.json").read_text())
    shipped = json.loads(default_task_guided_path().with_suffix(".json").read_text())["corruptions"]
    assert recipe["corruptions"] == (chosen or shipped)
    assert recipe["n_rows"] == 4 * (1 + len(recipe["corruptions"]) * 5)
    assert json.loads(capsys.readouterr().out)["checkpoint"] == str(tmp_path / "head.pt")

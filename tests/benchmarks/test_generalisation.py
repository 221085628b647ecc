"""The leave-one-family-out benchmark on a tiny subset: the protocol runs and its figures are sound (not their values)."""

from __future__ import annotations

import json

import pytest

from benchmarks.alignment import generalisation
from qualoader.corruptions import list_corruptions


@pytest.mark.slow
def test_tiny_run_writes_every_family_and_candidate(tmp_path, fashion_mnist_test) -> None:
    argv = [
        "--out", str(tmp_path), "--train-images", "40", "--test-images", "60", "--task-train-images", "1000",
        "--train-severities", "5", "--test-severities", "1", "5", "--steps", "20", "--fit-batch", "256",
        "--hidden", "linear", "--n-boot", "50", "--threads", "1",
    ]
    assert generalisation.main(argv) == 0
    results = json.loads((tmp_path / "results.json").read_text())
    assert (tmp_path / "results.md").read_text().startswith("# Generalisation to unseen degradation types")
    candidates = results["candidates"]
    assert {"confidence", "energy", "neg-bn-shift", "shipped head", "head:image:linear", "head:network:linear", "head:both:linear"} <= set(
        candidates
    )
    for entry in candidates.values():
        assert set(entry["figures"]) == {"in-family (ImageNet-C)", *generalisation.FAMILIES}
        for by_model in entry["figures"].values():
            assert set(by_model) == {"mlp", "small-cnn", "wide-cnn-nobn"}
            for ci in by_model.values():
                if ci["low"] is not None:
                    assert -1.0 <= ci["low"] <= ci["estimate"] <= ci["high"] <= 1.0
        summary = entry["summary"]
        assert summary["leave_one_family_out"] is not None and -1 <= summary["leave_one_family_out"] <= 1
    conditions = results["conditions"]
    assert len(conditions) == 1 + len(list_corruptions()) * 2 and conditions[0]["corruption"] == "clean"
    assert {c["family"] for c in conditions} == {"clean", *generalisation.FAMILIES}
    # The sweeps are cached: a second run reads them instead of corrupting and scoring again.
    assert sorted(path.name.split("_")[1] for path in tmp_path.glob("sweep_*.pt")) == ["test", "train"]


@pytest.mark.parametrize("argv", [["--train-images", "0"], ["--test-severities", "6"], ["--hidden", "wide"]])
def test_bad_arguments(argv: list[str]) -> None:
    with pytest.raises(SystemExit):
        generalisation.parse_args(argv)

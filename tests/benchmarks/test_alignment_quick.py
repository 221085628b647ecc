"""The alignment benchmark's quick mode on a small subset: the pipeline is sound (not the values)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from benchmarks import alignment


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory: pytest.TempPathFactory, fashion_mnist_test) -> tuple[Path, dict]:
    from qualoader.corruptions import list_corruptions

    out = tmp_path_factory.mktemp("alignment")
    corruptions = list_corruptions()[:2]
    argv = [
        "--quick", "--out", str(out), "--images", "150", "--train-images", "3000", "--corruptions", *corruptions,
        "--severities", "1", "5", "--metrics", "psnr", "ssim", "pyiqa:gmsd", "sharpness", "noise", "task-guided",
        "bn-shift", "feature-distance", "zeroshot", "--n-boot", "100", "--n-boot-auroc", "20", "--metric-seconds", "2",
        "--min-images", "50", "--threads", "1",
    ]
    assert alignment.main(argv) == 0
    return out, json.loads((out / "results.json").read_text())


def _intervals(results: dict):
    for per_model in results["correlations"].values():
        for per_family in per_model.values():
            for figures in per_family.values():
                for stat in ("spearman", "pearson", "kendall"):
                    yield figures[stat]


@pytest.mark.slow
def test_quick_mode_writes_sound_results(quick_run: tuple[Path, dict]) -> None:
    out, results = quick_run
    assert (out / "results.md").read_text().startswith("# Alignment benchmark")
    assert len(results["conditions"]) == 1 + 2 * 2
    assert results["conditions"][0]["corruption"] == "clean"
    assert set(results["task_models"]) == {"mlp", "small-cnn", "wide-cnn-nobn"}
    for model in results["task_models"]:
        assert results["conditions"][0]["accuracy"][model] > 0.5  # trained, far above chance (0.1)
    assert results["metrics"], "at least the conventional metrics must have run"
    assert {"psnr", "ssim", "sharpness"} <= set(results["metrics"])
    for name in ("task-guided", "bn-shift", "feature-distance", "zeroshot"):
        assert name in results["metrics"] or results["skipped"][name].startswith("skipped:")
    defined = 0
    for interval in _intervals(results):
        if interval["low"] is not None:
            defined += 1
            assert -1.0 <= interval["low"] <= interval["estimate"] <= interval["high"] <= 1.0
    assert defined > 0
    for per_model in results["auroc"].values():
        for per_family in per_model.values():
            pooled = per_family["all"]["pooled"]
            assert 0.0 <= pooled["low"] <= pooled["estimate"] <= pooled["high"] <= 1.0
    ranked = [row["mean_abs_spearman"] for row in results["summary"] if row["mean_abs_spearman"] is not None]
    assert ranked == sorted(ranked, reverse=True)
    assert {row["kind"] for row in results["summary"]} <= {"aligned", "conventional"}
    for name in results["metrics"]:
        slug = "".join(c if c.isalnum() or c in "-_" else "_" for c in name)
        assert (out / "plots" / f"scatter_{slug}.png").is_file() and (out / "plots" / f"hist_{slug}.png").is_file()
    assert all(math.isfinite(c["accuracy"]["mlp"]) for c in results["conditions"])
    assert sorted(p.suffix for p in (out / "models").iterdir()) == [".json"] * 3 + [".pt"] * 3


@pytest.mark.parametrize(
    "argv",
    [["--images", "0"], ["--severities", "6"], ["--n-boot", "-1"], ["--models", "resnet"], ["--from-results", "no/such/results.json"]],
)
def test_bad_arguments(argv: list[str]) -> None:
    with pytest.raises(SystemExit):
        alignment.parse_args(argv)

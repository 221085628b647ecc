"""The training benchmark's quick mode end to end on a small subset: the pipeline and its bookkeeping are sound (not the values)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks import training
from benchmarks.training.arms import online_available

_ARGV = [
    "--quick", "--train-size", "2400", "--val-size", "400", "--test-size", "300", "--scores", "sharpness", "confidence",
    "--eval-every", "1", "--workers", "1",
]


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory: pytest.TempPathFactory, fashion_mnist_test) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("training")
    assert training.main([*_ARGV, "--out", str(out)]) == 0
    return out, json.loads((out / "results.json").read_text())


@pytest.mark.slow
def test_quick_mode_writes_sound_results(quick_run: tuple[Path, dict]) -> None:
    out, results = quick_run
    assert (out / "results.md").read_text().startswith("# Training benchmark")
    assert (out / "plots" / "curves.png").stat().st_size > 10_000 and (out / "plots" / "differences.png").is_file()
    expected = {"random", "weighted-hard", "weighted-easy", "stratified", "curriculum", "anti-curriculum", "prune-easy", "infobatch"}
    if online_available():
        expected.add("online")
    assert set(results["budgets"]) == {"1", "2"}
    for arch in ("mlp", "cnn-bn"):
        entry = results["archs"][arch]
        assert set(entry["arms"]) == expected and entry["seeds"] == [0, 1]
        assert entry["random_final_val"] > 0.5  # trained: far above chance (0.1)
        for arm, figures in entry["arms"].items():
            for cell in figures["cells"].values():
                for test in ("clean", "train-families", "held-out"):
                    assert 0.0 <= cell[test]["mean"] <= 1.0 and len(cell[test]["per_seed"]) == 2
                    diff = cell[test]["diff"]
                    assert diff["low"] <= diff["estimate"] <= diff["high"]
                    if arm == "random":
                        assert diff["estimate"] == 0.0 and diff["low"] == diff["high"] == 0.0  # paired with itself
            band = figures["curve"]
            assert len(band["step"]) == len(band["mean"]) == len(band["half_width"]) > 0
        # clean TEST is easier than TEST under held-out degradations for the baseline
        random_cell = entry["arms"]["random"]["cells"]["2"]
        assert random_cell["clean"]["mean"] > random_cell["held-out"]["mean"]
        # InfoBatch prunes after its first epoch: it uses fewer steps than the budget (2 epochs, the second one annealed: equal)
        assert entry["arms"]["infobatch"]["steps_used"] <= entry["random_steps"]
        assert entry["arms"]["random"]["to_target"]["step"] == entry["random_steps"]  # random reaches its own final accuracy at its end
    assert {row["arm"] for row in results["selection"]} >= {"weighted-hard"}
    assert results["protocol"]["score_of"]["mlp"] in ("sharpness", "confidence")


@pytest.mark.slow
def test_tests_are_evaluated_for_the_chosen_runs_only_and_runs_resume(quick_run: tuple[Path, dict]) -> None:
    out, results = quick_run
    chosen_ids = {
        f"{arm}__{figures['setting']}__{arch}__s{seed}"
        for arch, entry in results["archs"].items() for arm, figures in entry["arms"].items() for seed in entry["seeds"]
    }
    evaluated = {path.stem for path in (out / "tests").iterdir()}
    assert evaluated == chosen_ids  # TEST accuracy exists for nothing that was not chosen on validation
    trained = {path.stem for path in (out / "runs").iterdir()}
    assert chosen_ids < trained  # the settings that lost on validation were trained, never tested
    before = {path.name: path.stat().st_mtime_ns for path in (out / "runs").iterdir()}
    again = training.run(training.parse_args([*_ARGV, "--out", str(out)]))
    assert {path.name: path.stat().st_mtime_ns for path in (out / "runs").iterdir()} == before  # nothing retrained
    assert again["archs"]["mlp"]["arms"]["random"]["cells"] == results["archs"]["mlp"]["arms"]["random"]["cells"]


@pytest.mark.parametrize(
    "argv",
    [["--train-size", "0"], ["--val-size", "70000"], ["--epochs", "0"], ["--arms", "bogus"], ["--scores", "no-such-metric"],
     ["--selection-seeds", "3", "--seeds", "2"], ["--degraded-share", "1.5"]],
)
def test_bad_arguments(argv: list[str]) -> None:
    with pytest.raises(SystemExit):
        training.parse_args(argv)

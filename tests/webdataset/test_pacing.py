"""curriculum: progress-paced acceptance of the easiest share of samples, with the samplers' pacing vocabulary."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch
import webdataset as wds
from tag_streams import _Samples, _stream
from torch.utils.data import DataLoader

from qualoader.policies import OnlineDifficulty, pacing_fraction
from qualoader.samplers import CurriculumSampler
from qualoader.webdataset import MissingTagError, StreamLosses, TrainingProgress, curriculum


@pytest.mark.parametrize("skew", [0.2, 1.0, 5.0])
def test_curriculum_admits_a_share_of_samples_whatever_the_difficulty_scale(skew: float) -> None:
    # Difficulties bunched near 1 (skew 0.2), uniform, or bunched near 0 (skew 5): a threshold on the difficulty
    # would admit ~0%, 20% or ~72% at start_fraction 0.2; a share of samples is 20% in all three.
    difficulty = np.random.default_rng(0).random(5000) ** skew
    samples = _stream(np.zeros(5000), difficulty=difficulty)
    stage = curriculum("m", start_fraction=0.2, pacing="linear", temperature=0.0)
    early = list(stage(samples))
    assert abs(len(early) / 5000 - 0.2) < 0.02
    kept = np.array([s["__difficulty__"]["m"] for s in early])
    assert np.mean(kept <= np.quantile(difficulty, 0.25)) > 0.97, "the admitted are the easiest"
    stage.set_progress(0.5)
    assert abs(len(list(stage(samples))) / 5000 - 0.6) < 0.02
    stage.set_progress(1.0)
    assert len(list(stage(samples))) == 5000
    soft = curriculum("m", start_fraction=0.2, pacing="root", temperature=0.1)
    assert soft.acceptance(0.2, 0.0) == 1.0 and soft.acceptance(0.3, 0.0) == pytest.approx(np.exp(-1.0))
    assert soft.competence(1.0) == 1.0 and soft.competence(0.5) > curriculum("m", start_fraction=0.2, pacing="linear").competence(0.5)


@pytest.mark.parametrize("order", ["easy-to-hard", "hard-to-easy"])
@pytest.mark.parametrize("pacing", ["linear", "root"])
def test_stream_curriculum_admits_the_share_of_the_curriculum_sampler(order: str, pacing: str) -> None:
    n = 3000
    difficulty = np.random.default_rng(1).beta(0.5, 3.0, n)  # skewed towards easy, as calibrated difficulties are
    sampler = CurriculumSampler(torch.from_numpy(difficulty), higher_is_better=False, pacing=pacing, start_fraction=0.2, order=order)
    stage = curriculum("m", pacing=pacing, start_fraction=0.2, order=order, temperature=0.0)
    samples = _stream(np.zeros(n), difficulty=difficulty)
    for progress in (0.0, 0.3, 0.7, 1.0):
        stage.set_progress(progress)
        kept = {s["__key__"] for s in stage(samples)}
        pool = {f"{i:06d}" for i in sampler.ranking[: sampler.pool_size(progress)].tolist()}
        assert abs(len(kept) - len(pool)) / n < 0.02, progress
        assert len(kept & pool) / len(pool) > 0.95, progress


def test_training_progress_has_one_value_however_it_is_set() -> None:
    progress = TrainingProgress(value=0.25)
    assert progress.value == progress.get() == 0.25
    progress.value = 0.75
    assert progress.get() == 0.75
    progress.set(0.5)
    assert progress.value == 0.5
    with pytest.raises(ValueError, match=r"value should be in \[0, 1\], but got value=1.5"):
        progress.value = 1.5
    with pytest.raises(TypeError, match="value should be a real number"):
        progress.value = "1"
    assert progress.value == 0.5
    with pytest.raises(AttributeError):
        progress.valeu = 0.9  # a misspelt attribute fails instead of leaving the progress where it was
    stage = curriculum("m", progress=progress, temperature=0.0)
    progress.value = 1.0
    assert stage.competence() == 1.0, "the stage reads the value set through the attribute"
    copy = pickle.loads(pickle.dumps(progress))
    assert copy.value == 1.0


def test_curriculum_progress_reaches_persistent_worker() -> None:
    difficulty = np.linspace(0.0, 1.0, 200)
    progress = TrainingProgress(0.0)
    dataset = wds.DataPipeline(
        _Samples(_stream(np.zeros(200), difficulty=difficulty)), curriculum("m", progress=progress, start_fraction=0.5, temperature=0.0)
    )
    loader = DataLoader(dataset, batch_size=None, num_workers=1, persistent_workers=True)
    first = len(list(loader))
    progress.set(1.0)  # after the worker started: only shared memory can carry it
    second = len(list(loader))
    assert first == 100 and second == 200


def test_curriculum_needs_difficulty() -> None:
    with pytest.raises(MissingTagError, match="difficulty for metric 'm'"):
        list(curriculum("m")(_stream(np.zeros(3))))


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"start_fraction": 1.5}, ValueError),
        ({"start_fraction": 0.0}, ValueError),
        ({"pacing": 3}, TypeError),
        ({"num_steps": 0}, ValueError),
        ({"pacing": "cosine"}, ValueError),
        ({"temperature": -1.0}, ValueError),
        ({"progress": 2.0}, ValueError),
        ({"progress": "0"}, TypeError),
    ],
)
def test_curriculum_bad_arguments(kwargs: dict, error: type[Exception]) -> None:
    with pytest.raises(error, match="should"):
        curriculum("m", **kwargs)


def _three_quarters(progress: float) -> float:
    return 0.75


def test_custom_pacing_and_the_samplers_competence() -> None:
    for pacing in ("linear", "root", "step", "exp"):
        stage = curriculum("m", pacing=pacing, start_fraction=0.3, num_steps=3)
        assert stage.competence(0.4) == pytest.approx(pacing_fraction(pacing, 0.4, 0.3, 3))
    custom = pickle.loads(pickle.dumps(curriculum("m", pacing=_three_quarters, temperature=0.0)))
    assert custom.competence(0.5) == 0.75 and custom.competence(1.0) == 1.0
    difficulty = np.linspace(0.0, 1.0, 101)
    kept = list(custom(_stream(np.zeros(101), difficulty=difficulty)))
    assert len(kept) == 76  # difficulties 0.00 .. 0.75


def test_default_pacing_is_the_samplers() -> None:
    stage = curriculum("m")
    assert stage.pacing == "linear" and stage.start_fraction == 0.2


def test_hard_to_easy_admits_the_hardest_first() -> None:
    difficulty = np.linspace(0.0, 1.0, 101)
    stage = curriculum("m", start_fraction=0.3, temperature=0.0, order="hard-to-easy")
    kept = [s["__difficulty__"]["m"] for s in stage(_stream(np.zeros(101), difficulty=difficulty))]
    # mid-rank of difficulty k/100 is (2k + 1) / 202; 1 - rank <= 0.3 keeps k >= 71: the hardest 30 of 101
    assert min(kept) == pytest.approx(0.71) and len(kept) == 30
    with pytest.raises(ValueError, match="order should be one of \\{'easy-to-hard', 'hard-to-easy'\\}"):
        curriculum("m", order="random")


def _keys(samples: list[dict]) -> list[str]:
    return [s["__key__"] for s in samples]


def test_stream_losses_without_observations_change_nothing() -> None:
    difficulty = np.random.default_rng(2).random(1500)
    samples = _stream(np.zeros(1500), difficulty=difficulty)
    plain = curriculum("m", start_fraction=0.3, seed=4)
    online = curriculum("m", start_fraction=0.3, seed=4, online=StreamLosses(4096))
    assert _keys(list(online(samples))) == _keys(list(plain(samples)))


def test_stream_curriculum_lets_observed_losses_take_over_from_the_difficulty() -> None:
    n = 2000
    difficulty = np.random.default_rng(3).random(n)
    samples = _stream(np.zeros(n), difficulty=difficulty)
    easiest = [f"{i:06d}" for i in np.argsort(difficulty)[: n // 10]]  # easy by prior, hard by loss
    others = [f"{i:06d}" for i in np.argsort(difficulty)[n // 10 :]]
    losses = StreamLosses(1 << 16, policy=OnlineDifficulty(prior_strength=0.5))
    stage = curriculum("m", start_fraction=0.2, temperature=0.0, online=losses)
    before = set(_keys(list(stage(samples))))
    assert len(set(easiest) & before) > 0.95 * len(easiest)
    losses.update(easiest, [5.0] * len(easiest))
    losses.update(others, [float(v) for v in difficulty[np.argsort(difficulty)[n // 10 :]]])  # loss agrees with the prior
    after = set(_keys(list(stage(samples))))
    assert len(set(easiest) & after) < 0.1 * len(easiest), "hard by loss: no longer among the easiest 20%"
    assert abs(len(after) / n - 0.2) < 0.03, "the admitted share is still start_fraction"


def test_stream_losses_reach_a_persistent_worker() -> None:
    difficulty = np.random.default_rng(5).random(300)
    losses = StreamLosses(1 << 12, policy=OnlineDifficulty(prior_strength=0.1))
    dataset = wds.DataPipeline(
        _Samples(_stream(np.zeros(300), difficulty=difficulty)), curriculum("m", start_fraction=0.5, temperature=0.0, online=losses)
    )
    loader = DataLoader(dataset, batch_size=None, num_workers=1, persistent_workers=True)
    first = {s["__key__"] for s in loader}
    hard_by_loss = [f"{i:06d}" for i in np.argsort(difficulty)[:50]]
    assert set(hard_by_loss) <= first
    # After the worker started: only shared memory can carry it. The others' losses agree with their difficulty.
    losses.update([f"{i:06d}" for i in range(300)], [9.0 if f"{i:06d}" in hard_by_loss else float(difficulty[i]) for i in range(300)])
    second = {s["__key__"] for s in loader}
    assert abs(len(first) - 150) < 10 and abs(len(second) - 150) < 10
    assert len(set(hard_by_loss) & second) < 5

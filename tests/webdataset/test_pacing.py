"""curriculum: progress-paced acceptance by difficulty, with the samplers' pacing vocabulary."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import webdataset as wds
from tag_streams import _Samples, _stream
from torch.utils.data import DataLoader

from qualoader.policies import pacing_fraction
from qualoader.webdataset import MissingTagError, TrainingProgress, curriculum


def test_curriculum_follows_progress() -> None:
    rng = np.random.default_rng(0)
    difficulty = rng.random(5000)
    samples = _stream(np.zeros(5000), difficulty=difficulty)
    stage = curriculum("m", start_fraction=0.2, pacing="linear", temperature=0.0)
    early = list(stage(samples))
    assert max(s["__difficulty__"]["m"] for s in early) <= 0.2 and abs(len(early) / 5000 - 0.2) < 0.03
    stage.set_progress(0.5)
    middle = list(stage(samples))
    assert abs(len(middle) / 5000 - 0.6) < 0.03
    stage.set_progress(1.0)
    assert len(list(stage(samples))) == 5000
    soft = curriculum("m", start_fraction=0.2, pacing="root", temperature=0.1)
    assert soft.acceptance(0.2, 0.0) == 1.0 and soft.acceptance(0.3, 0.0) == pytest.approx(np.exp(-1.0))
    assert soft.competence(1.0) == 1.0 and soft.competence(0.5) > curriculum("m", start_fraction=0.2, pacing="linear").competence(0.5)


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
    assert min(kept) == pytest.approx(0.7) and len(kept) == 31
    with pytest.raises(ValueError, match="order should be one of \\{'easy-to-hard', 'hard-to-easy'\\}"):
        curriculum("m", order="random")

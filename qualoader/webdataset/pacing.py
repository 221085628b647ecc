"""Curriculum stage: accept easy samples early and harder ones as training progresses.

Progress lives in a :class:`TrainingProgress` (shared memory), so the training loop can move it
while DataLoader workers run the stage.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Iterator
from dataclasses import KW_ONLY, dataclass
from typing import Any

import torch

from qualoader._validation import check_choice, check_positive_int
from qualoader.policies import (
    DEFAULT_PACING,
    DEFAULT_START_FRACTION,
    ORDERS,
    Pacing,
    check_pacing,
    check_real,
    check_start_fraction,
    check_temperature,
    pacing_fraction,
)
from qualoader.webdataset._common import Handler, UniformStream, resolve_handler
from qualoader.webdataset._stage import SeededStage, TagValue, check_metric, read_values

__all__ = ["Curriculum", "TrainingProgress", "curriculum"]


class TrainingProgress:
    """Training progress in [0, 1], shared with DataLoader workers.

    The value lives in a shared-memory tensor, so ``progress.set(t)`` in the training process is
    seen by workers started before the call (persistent workers, fork or spawn).

    Example:
        >>> progress = TrainingProgress()
        >>> progress.set(0.5)
        >>> progress.get()
        0.5
    """

    def __init__(self, value: float = 0.0) -> None:
        # Moved to shared memory at construction, before any worker starts: a forked worker would otherwise
        # get a private copy-on-write copy and never see set(). float64 so get() returns what set() stored.
        self._value = torch.zeros(1, dtype=torch.float64).share_memory_()
        self.set(value)

    def set(self, value: float) -> None:
        """Set the progress (a float in [0, 1])."""
        value = check_real(value, "value")
        if not 0.0 <= value <= 1.0:
            raise ValueError(f"value should be in [0, 1], but got value={value}")
        self._value[0] = value

    def get(self) -> float:
        """The current progress."""
        return float(self._value[0])

    def __repr__(self) -> str:
        return f"TrainingProgress({self.get():.4g})"


@dataclass(eq=False)
class Curriculum(SeededStage):
    """Stage keeping a sample of difficulty ``d`` with a probability that rises with training progress.

    ``d`` is ``sample["__difficulty__"][metric]`` (expected error in [0, 1], present when the
    metric was calibrated). The competence ``c(t)`` is the admitted fraction of the samplers'
    pacing (:func:`~qualoader.policies.pacing_fraction`, as in
    :class:`~qualoader.samplers.CurriculumSampler`): it grows from ``start_fraction`` at ``t = 0``
    to 1 at ``t = 1`` (Platanios et al. 2019 with ``pacing="root"``). A sample is kept with
    probability 1 when ``d <= c(t)`` and ``exp(-(d - c(t)) / temperature)`` otherwise (0 if
    ``temperature == 0``). :func:`curriculum` is the same class.

    Args:
        metric: metric name as tagged.
        progress: a :class:`TrainingProgress` (update it from the training loop, or call
            ``stage.set_progress(t)``) or an initial value in [0, 1].
        pacing: one of :data:`~qualoader.policies.PACINGS` (default ``"linear"``) or a picklable
            callable ``progress -> competence in (0, 1]`` (a module-level function).
        start_fraction: competence at ``t = 0``, in (0, 1] (default 0.2; named pacings only).
        num_steps: steps of the ``"step"`` pacing (default 4).
        temperature: softness of the rejection of too-hard samples, in difficulty units (>= 0;
            default 0.05: a sample 0.05 harder than the competence is kept with probability 1/e).
        order: ``"easy-to-hard"`` (default) or ``"hard-to-easy"`` (anti-curriculum: the competence
            bounds ``1 - d`` instead, so the hardest samples come first).
        seed: base seed; draws depend on ``(seed, epoch, rank, worker)`` only.
        handler: ``"raise"``, ``"skip"`` or a handler for samples without difficulty.

    Example:
        >>> stage = curriculum("sharpness", start_fraction=0.3)
        >>> stage.acceptance(0.2, progress=0.0), stage.acceptance(0.9, progress=1.0)
        (1.0, 1.0)
    """

    metric: str
    _: KW_ONLY
    progress: TrainingProgress | float = 0.0
    pacing: Pacing = DEFAULT_PACING
    start_fraction: float = DEFAULT_START_FRACTION
    num_steps: int = 4
    temperature: float = 0.05
    order: str = "easy-to-hard"
    seed: int = 0
    handler: str | Handler = "raise"
    epoch: int = dataclasses.field(default=0, init=False)

    def __post_init__(self) -> None:
        check_metric(self.metric)
        if not isinstance(self.progress, TrainingProgress):
            # A plain float is wrapped so set_progress always has shared storage to write to.
            self.progress = TrainingProgress(check_real(self.progress, "progress"))
        self.pacing = check_pacing(self.pacing)
        self.start_fraction = check_start_fraction(self.start_fraction)
        check_positive_int(self.num_steps, "num_steps")
        self.temperature = check_temperature(self.temperature)
        check_choice(self.order, "order", ORDERS)
        # Non-negative because numpy's SeedSequence refuses negative entries, and it would only do so at the first pass.
        check_positive_int(self.seed, "seed", allow_zero=True)
        self.handler = resolve_handler(self.handler)

    def set_progress(self, value: float) -> None:
        """Set the training progress in [0, 1] (shared with workers, see :class:`TrainingProgress`)."""
        self.progress.set(value)  # type: ignore[union-attr]

    def competence(self, progress: float | None = None) -> float:
        """Largest difficulty accepted for sure at ``progress`` (default: the current one)."""
        now = self.progress.get() if progress is None else progress  # type: ignore[union-attr]
        return pacing_fraction(self.pacing, now, self.start_fraction, self.num_steps)

    def acceptance(self, difficulty: float, progress: float | None = None) -> float:
        """Probability of keeping a sample of ``difficulty`` at ``progress``."""
        # hard-to-easy admits by easiness (1 - difficulty), mirroring CurriculumSampler's reversed ranking
        rank = difficulty if self.order == "easy-to-hard" else 1.0 - difficulty
        excess = rank - self.competence(progress)
        if excess <= 0:
            return 1.0
        return 0.0 if self.temperature == 0 else math.exp(-excess / self.temperature)

    def __call__(self, source: Iterable[dict[str, Any]]) -> Iterator[dict[str, Any]]:
        # A fresh generator per pass (seed, epoch, rank, worker): workers reading different shards make
        # independent decisions, and a repeated pass does not reject the same samples again.
        uniform = UniformStream(self._next_rng())
        for sample, difficulty in read_values(source, TagValue("difficulty", self.metric), self.handler):  # type: ignore[arg-type]
            # Strict '<' with draws in [0, 1): acceptance 1 always keeps and acceptance 0 never does. The competence
            # is read from the shared progress at every sample, so a set() mid-epoch takes effect at once.
            if uniform() < self.acceptance(difficulty):
                yield sample


curriculum = Curriculum

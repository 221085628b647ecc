"""Curriculum stage: accept the easiest share of samples early and more of them as training progresses.

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

from qualoader._validation import check_choice, check_positive_int, check_type
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
from qualoader.webdataset._stage import SeededStage, StreamLosses, TagValue, check_metric, read_values, stream_ranks

__all__ = ["Curriculum", "StreamLosses", "TrainingProgress", "curriculum"]


class TrainingProgress:
    """Training progress in [0, 1], shared with DataLoader workers.

    The value lives in a shared-memory tensor, so setting it in the training process is seen by
    workers started before (persistent workers, fork or spawn). There is one value and it is
    checked however it is set: ``TrainingProgress(value=t)``, ``progress.value = t`` or
    ``progress.set(t)``; other attributes cannot be set, so a misspelt name fails instead of
    leaving the progress where it was.

    Example:
        >>> progress = TrainingProgress()
        >>> progress.value = 0.5
        >>> progress.get(), progress.value
        (0.5, 0.5)
    """

    __slots__ = ("_value",)

    def __init__(self, value: float = 0.0) -> None:
        # Moved to shared memory at construction, before any worker starts: a forked worker would otherwise
        # get a private copy-on-write copy and never see set(). float64 so get() returns what set() stored.
        self._value = torch.zeros(1, dtype=torch.float64).share_memory_()
        self.set(value)

    @property
    def value(self) -> float:
        """The current progress (settable: the same as :meth:`set`)."""
        return float(self._value[0])

    @value.setter
    def value(self, value: float) -> None:
        self.set(value)

    def set(self, value: float) -> None:
        """Set the progress (a float in [0, 1])."""
        value = check_real(value, "value")
        if not 0.0 <= value <= 1.0:
            raise ValueError(f"value should be in [0, 1], but got value={value}")
        self._value[0] = value

    def get(self) -> float:
        """The current progress."""
        return self.value

    def __getstate__(self) -> dict[str, Any]:
        # __slots__ without __dict__: pickled by hand so the shared tensor travels to workers as torch shares it.
        return {"_value": self._value}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self._value = state["_value"]

    def __repr__(self) -> str:
        return f"TrainingProgress({self.get():.4g})"


@dataclass(eq=False)
class Curriculum(SeededStage):
    """Stage keeping the easiest ``start_fraction`` of samples first and more of them as training progresses.

    As in :class:`~qualoader.samplers.CurriculumSampler`, the pacing gives the admitted fraction
    of samples ``c(t)`` (:func:`~qualoader.policies.pacing_fraction`): ``start_fraction`` at
    progress ``t = 0``, 1 at ``t = 1``. A stream cannot sort its samples, so each sample's rank
    ``u`` (the fraction of the stream that is easier, from a
    :class:`~qualoader.webdataset.QuantileSketch` of the difficulties seen so far) stands for
    its position in the sampler's ranking. A sample is kept with probability 1 when
    ``u <= c(t)`` and ``exp(-(u - c(t)) / temperature)`` otherwise (0 if ``temperature == 0``),
    so at every progress the stream admits the share of samples the sampler's pool holds.

    The difficulty is ``sample["__difficulty__"][metric]`` (present when the metric was
    calibrated). The first ``warmup`` samples of a pass are held until the sketch has seen them.
    :func:`curriculum` is the same class.

    Args:
        metric: metric name as tagged.
        progress: a :class:`TrainingProgress` (update it from the training loop, or call
            ``stage.set_progress(t)``) or an initial value in [0, 1].
        pacing: one of :data:`~qualoader.policies.PACINGS` (default ``"linear"``) or a picklable
            callable ``progress -> admitted fraction in (0, 1]`` (a module-level function).
        start_fraction: fraction of the samples admitted at ``t = 0``, in (0, 1] (default 0.2;
            named pacings only): the easiest 20% by default, as in the sampler.
        num_steps: steps of the ``"step"`` pacing (default 4).
        temperature: softness of the rejection of too-hard samples, in fractions of the stream
            (>= 0; default 0.05: a sample ranked 5% beyond the admitted fraction is kept with
            probability 1/e).
        order: ``"easy-to-hard"`` (default) or ``"hard-to-easy"`` (anti-curriculum: the rank counts
            from the hardest, so the hardest samples come first).
        sketch_size: reservoir of the rank estimate.
        warmup: samples held to seed the rank estimate before any is decided (``<= sketch_size``).
        online: a :class:`StreamLosses` the training loop feeds back per-sample losses to; each
            pass ranks samples by their difficulty blended with their loss as of the pass's start
            (default ``None``: by difficulty alone).
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
    sketch_size: int = 2048
    warmup: int = 256
    online: StreamLosses | None = None
    seed: int = 0
    handler: str | Handler = "raise"
    epoch: int = dataclasses.field(default=0, init=False)

    def __post_init__(self) -> None:
        check_metric(self.metric)
        if self.online is not None:
            check_type(self.online, "online", StreamLosses, "a StreamLosses or None")
        if not isinstance(self.progress, TrainingProgress):
            # A plain float is wrapped so set_progress always has shared storage to write to.
            self.progress = TrainingProgress(check_real(self.progress, "progress"))
        self.pacing = check_pacing(self.pacing)
        self.start_fraction = check_start_fraction(self.start_fraction)
        check_positive_int(self.num_steps, "num_steps")
        self.temperature = check_temperature(self.temperature)
        check_choice(self.order, "order", ORDERS)
        check_positive_int(self.sketch_size, "sketch_size")
        check_positive_int(self.warmup, "warmup", allow_zero=True)
        if self.warmup > self.sketch_size:
            raise ValueError(f"warmup should be <= sketch_size ({self.sketch_size}), but got warmup={self.warmup}")
        # Non-negative because numpy's SeedSequence refuses negative entries, and it would only do so at the first pass.
        check_positive_int(self.seed, "seed", allow_zero=True)
        self.handler = resolve_handler(self.handler)

    def set_progress(self, value: float) -> None:
        """Set the training progress in [0, 1] (shared with workers, see :class:`TrainingProgress`)."""
        self.progress.set(value)  # type: ignore[union-attr]

    def competence(self, progress: float | None = None) -> float:
        """Fraction of the samples admitted for sure at ``progress`` (default: the current one)."""
        now = self.progress.get() if progress is None else progress  # type: ignore[union-attr]
        return pacing_fraction(self.pacing, now, self.start_fraction, self.num_steps)

    def acceptance(self, rank: float, progress: float | None = None) -> float:
        """Probability of keeping a sample whose rank (fraction of the stream easier than it, in [0, 1]) is ``rank``.

        For ``order="hard-to-easy"``, ``rank`` still counts from the easiest sample.
        """
        # hard-to-easy counts from the hardest end, mirroring CurriculumSampler's reversed ranking
        position = rank if self.order == "easy-to-hard" else 1.0 - rank
        excess = position - self.competence(progress)
        if excess <= 0:
            return 1.0
        return 0.0 if self.temperature == 0 else math.exp(-excess / self.temperature)

    def __call__(self, source: Iterable[dict[str, Any]]) -> Iterator[dict[str, Any]]:
        # A fresh generator per pass (seed, epoch, rank, worker): workers reading different shards make
        # independent decisions, and a repeated pass does not reject the same samples again.
        rng = self._next_rng()
        uniform = UniformStream(rng)
        samples = read_values(source, TagValue("difficulty", self.metric, finite=True), self.handler)  # type: ignore[arg-type]
        for sample, _, rank in stream_ranks(samples, rng, self.sketch_size, self.warmup, self.online, higher_is_harder=True):
            # Strict '<' with draws in [0, 1): acceptance 1 always keeps and acceptance 0 never does. The competence
            # is read from the shared progress at every sample, so a set() mid-epoch takes effect at once.
            if uniform() < self.acceptance(rank):
                yield sample

curriculum = Curriculum

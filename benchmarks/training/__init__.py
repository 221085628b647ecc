"""Training benchmark: does quality-aware sampling make a model better or cheaper to train than ``RandomSampler``?

Fashion-MNIST TRAIN with a seeded share of the images degraded by the training families of
corruptions (:mod:`.data`); the weather and ``extra`` families are held out of training and of
every choice, and only a TEST set uses them. Two small architectures (:mod:`.models`: an MLP
without and a CNN with BatchNorm) are trained by each arm (:mod:`.arms`): the ``RandomSampler``
baseline, quality-weighted sampling favouring hard and easy images, stratified sampling with
skewed proportions, curriculum and anti-curriculum, static pruning of the easiest images, an
InfoBatch-style loss-based arm (:mod:`.infobatch`) and the samplers' online loss feedback. Every
quality arm reads its scores from a ``ScoreStore`` filled by ``precompute`` (:mod:`.scores`),
whose wall time counts as the arm's cost.

Protocol (:mod:`.run`): stage 1 chooses the score per architecture on validation with the
hard-weighted arm; stage 2 chooses every other arm's knobs on validation; stage 3 trains the
chosen settings on every seed (paired with the random arm's seeds). The TEST sets are evaluated
once, for the chosen settings only. Statistics in :mod:`.analysis`, report in :mod:`.markdown`,
plots in :mod:`.plots`; one run per arm, setting, architecture and seed serves every budget
(:mod:`.train`).

Usage (from the repository root)::

    python -m benchmarks.training --quick        # < 5 min
    python -m benchmarks.training                # the committed protocol, about an hour on 2 CPU cores
"""

from benchmarks.training.options import build_parser, parse_args
from benchmarks.training.run import main, run

__all__ = ["build_parser", "main", "parse_args", "run"]

"""Alignment benchmark: does image quality predict the accuracy of DNNs the metric never saw?

Real Fashion-MNIST test images are corrupted by every corruption of :mod:`qualoader.corruptions` at
every severity (plus the clean images). Three task classifiers of different architectures (an MLP,
a small CNN with BatchNorm, a wider CNN without BatchNorm; :mod:`.models`), trained here on the clean
TRAIN split with fixed seeds and distinct from the reference network of the aligned metrics,
classify every image. Every metric scores every image (:mod:`.candidates`): conventional IQA (our
PSNR / SSIM / MS-SSIM, pyiqa's weight-free metrics), our classical no-reference measures, and every
aligned metric. Scores are oriented so that higher = better quality (``higher_is_better``) before any
statistic.

Statistics (:mod:`.analysis`, on :mod:`qualoader.stats`):
  * per condition (corruption x severity, plus clean): mean quality vs each task model's accuracy ->
    Spearman, Pearson, Kendall tau-b, each with a percentile-bootstrap 95% CI (resampling conditions);
  * per image: AUROC of the score for predicting whether a task model is correct, pooled over all
    conditions (with a bootstrap CI over images) and within each condition (averaged);
  * all of the above for every corruption family (noise / blur / digital / weather), where each
    family's analysis also contains the clean condition (the severity-0 end of each corruption).

pyiqa's metrics (and any metric that rejects 28x28 input) are given images bilinearly upsampled to
``--iqa-size`` pixels (default 64), the same for image and reference; metrics that still fail are
skipped with the reason recorded. Nothing stops on one failing metric.

Usage (from the repository root)::

    python -m benchmarks.alignment --quick            # < 5 min, writes benchmarks/results/alignment
    python -m benchmarks.alignment --out DIR          # full mode, < 40 min on 2 CPU cores
    python -m benchmarks.alignment --from-results benchmarks/alignment_results/results.json   # re-render only

The default corruptions are the 17 of ImageNet-C; ``--with-extra`` adds the ``extra`` family
(degradations outside ImageNet-C). Leave-one-family-out figures of the aligned no-reference scores
come from ``python -m benchmarks.generalisation`` (:mod:`.generalisation`); the report
(:mod:`.markdown`) shows them beside the in-family ones, read from ``--lofo-results``.

Outputs in ``--out``: ``results.json`` (every figure), ``results.md`` (tables), ``scores.npz``
(per-image oriented scores and correctness) and PNG plots (:mod:`.plots`); trained task models are
cached in ``--out/models`` so re-runs skip training.

Modules: :mod:`.data` (data and corrupted conditions), :mod:`.models` (task models),
:mod:`.candidates` (metrics compared), :mod:`.run` (one run), :mod:`.analysis`, :mod:`.markdown`,
:mod:`.plots`, :mod:`.options` (command line), :mod:`.generalisation` (leave-one-family-out run).
"""

from benchmarks.alignment.markdown import render_markdown
from benchmarks.alignment.options import build_parser, parse_args
from benchmarks.alignment.run import main, render_from_results, run

__all__ = ["build_parser", "main", "parse_args", "render_from_results", "render_markdown", "run"]

"""Classical no-reference measures, batched torch/kornia kernels (no Python loop over the batch).

Each measure is a pure function ``f(images, ...) -> Tensor[B]`` plus a thin registered
:class:`~qualoader.metrics.base.QualityMetric`. Importing this package registers:

=================== ============================================ ================= ==========================
name                measure                                      higher_is_better  moves with
=================== ============================================ ================= ==========================
``sharpness``       variance of the 3x3 Laplacian of the luma    True              falls with blur
``gradient-energy`` mean squared Sobel gradient of the luma      True              falls with blur
``noise``           Immerkaer noise sigma of the luma            False             rises with added noise
``contrast``        RMS contrast (std of the luma)               True              falls with contrast loss
``brightness``      mean luma                                    True [*]_         rises with brightness
``colorfulness``    Hasler-Suesstrunk colourfulness (0 if C=1)   True              falls with desaturation
``blockiness``      8x8 grid steps / in-block steps              False             rises with JPEG
``clipping``        fraction of values that round to 0 or 255    False             rises with over-exposure
``entropy``         8-bit luma histogram entropy (bits)          True              falls with contrast loss
=================== ============================================ ================= ==========================

..  [*] descriptive: brighter is not always better; ``True`` by convention (see ``clipping``).

The luma is BT.601 (0.299 R + 0.587 G + 0.114 B); single-channel images are used as they are.

Every measure derives from :class:`ClassicalMetric` and reads the cached intermediates of a
:class:`BatchFeatures`, so the scoring engine (:mod:`qualoader.engine`) computes the luma,
gradients and histograms of a batch once for all of them; each function also accepts a
``BatchFeatures`` in place of the images.
"""

from qualoader.metrics.classical._common import ClassicalMetric
from qualoader.metrics.classical._features import BatchFeatures
from qualoader.metrics.classical.blockiness import Blockiness, blockiness
from qualoader.metrics.classical.brightness import MeanBrightness, mean_brightness
from qualoader.metrics.classical.clipping import ClippedFraction, clipped_fraction
from qualoader.metrics.classical.colorfulness import Colorfulness, colorfulness
from qualoader.metrics.classical.contrast import RMSContrast, rms_contrast
from qualoader.metrics.classical.entropy import HistogramEntropy, histogram_entropy
from qualoader.metrics.classical.noise import NoiseLevel, noise_level
from qualoader.metrics.classical.sharpness import (
    GradientEnergy,
    LaplacianVariance,
    gradient_energy,
    laplacian_variance,
)

__all__ = [
    "BatchFeatures",
    "Blockiness",
    "ClassicalMetric",
    "ClippedFraction",
    "Colorfulness",
    "GradientEnergy",
    "HistogramEntropy",
    "LaplacianVariance",
    "MeanBrightness",
    "NoiseLevel",
    "RMSContrast",
    "blockiness",
    "clipped_fraction",
    "colorfulness",
    "gradient_energy",
    "histogram_entropy",
    "laplacian_variance",
    "mean_brightness",
    "noise_level",
    "rms_contrast",
]

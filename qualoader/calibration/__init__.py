"""Difficulty prior: map any quality score to the expected error of a reference network.

Two layers, kept apart so that metrics can use the first without importing the second:

* the map (:mod:`.mapping`): the :class:`Calibration` protocol every metric's ``calibration``
  follows, and :class:`DifficultyCalibration`, a monotone ``score -> expected error in [0, 1]``
  (isotonic or monotone logistic, fitted with scipy), saved as plain JSON; plus the table of
  calibrations the package ships (:mod:`.defaults`);
* sweeps and fitting (:mod:`.sweep`, :mod:`.fit`), which run metrics on corrupted images to fit
  and assess a map.

Attach a calibration with ``metric.calibration = cal`` and read the prior with
``metric.difficulty(scores)``. A metric's fingerprint does not include its calibration, so
re-calibrating re-reads stored scores instead of re-scoring.
"""

from qualoader.calibration.defaults import (
    SHIPPED_DEFAULTS,
    SHIPPED_SWEEP,
    ShippedDefault,
    default_calibration,
    default_calibration_path,
    shipped_calibration,
    shipped_profile,
)
from qualoader.calibration.fit import calibrate_metric, calibration_report
from qualoader.calibration.mapping import CALIBRATION_METHODS, Calibration, DifficultyCalibration
from qualoader.calibration.sweep import Sweep, corruption_sweep, iterate_sweep, reference_errors

__all__ = [
    "CALIBRATION_METHODS",
    "SHIPPED_DEFAULTS",
    "SHIPPED_SWEEP",
    "Calibration",
    "DifficultyCalibration",
    "ShippedDefault",
    "Sweep",
    "calibrate_metric",
    "calibration_report",
    "corruption_sweep",
    "default_calibration",
    "default_calibration_path",
    "iterate_sweep",
    "reference_errors",
    "shipped_calibration",
    "shipped_profile",
]

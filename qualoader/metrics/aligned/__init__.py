"""DNN-aligned metrics: scores built from a reference network's own sensitivity."""
from qualoader.metrics.aligned import bn_shift as _bn_shift  # noqa: F401  (issue 3, bn-shift)
from qualoader.metrics.aligned import confidence as _confidence  # noqa: F401  (confidence, training-free)
from qualoader.metrics.aligned import feature_distance as _feature_distance  # noqa: F401  (issue 3, feature-distance)
from qualoader.metrics.aligned import task_guided as _task_guided  # noqa: F401  (issue 3, task-guided)
from qualoader.metrics.aligned import zeroshot as _zeroshot  # noqa: F401  (issue 3, zeroshot)

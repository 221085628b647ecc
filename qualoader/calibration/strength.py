"""When is a fitted difficulty too weak to trust? One rule for `calibrate`, `profile show`, loading and reports.

A difficulty calibration ranks images by expected error; its held-out AUROC says how well it does
(0.5 is a coin toss). A fit is **weak** when the lower end of the 95% CI of its held-out AUROC does not
clear chance by :data:`WEAK_AUROC_MARGIN`; where no CI was recorded (profiles written before CIs were),
the point estimate is held to the same bound.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

__all__ = ["WEAK_AUROC_MARGIN", "weak_fit_reason"]

#: How far above chance (0.5) the held-out AUROC's lower 95% bound must lie: 0.05 separates a ranking
#: a sampler can use from one that orders images by noise.
WEAK_AUROC_MARGIN = 0.05


def weak_fit_reason(held_out: Mapping[str, Any] | None) -> str | None:
    """Why the held-out fit ``held_out`` is weak, or ``None`` when it clears chance by the margin.

    Args:
        held_out: a profile's ``provenance["held_out"]``: ``auroc`` and, where recorded,
            ``auroc_ci`` as ``[low, high]``. ``None`` (nothing measured) is weak.

    Example:
        >>> weak_fit_reason({"auroc": 0.80, "auroc_ci": [0.74, 0.86]}) is None
        True
        >>> weak_fit_reason({"auroc": 0.52, "auroc_ci": [0.47, 0.57]})
        'held-out AUROC 0.520 [0.470, 0.570] does not clear chance (0.5) by 0.05'
    """
    if not held_out or "auroc" not in held_out:
        return "no held-out AUROC was measured"
    auroc = float(held_out["auroc"])
    interval = held_out.get("auroc_ci")
    low = float(interval[0]) if interval else auroc
    if not math.isfinite(low) or low <= 0.5 + WEAK_AUROC_MARGIN:
        shown = f"{auroc:.3f}" + (f" [{float(interval[0]):.3f}, {float(interval[1]):.3f}]" if interval else "")
        return f"held-out AUROC {shown} does not clear chance (0.5) by {WEAK_AUROC_MARGIN}"
    return None

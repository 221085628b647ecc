"""What the domain guard says (:class:`~qualoader.profiles.DomainGuard`): its advice, and the call site its warning names."""

from __future__ import annotations

import os
import sys

import torch

__all__ = ["BUILD_PROFILE_HINT", "ERROR_ADVICE", "PROFILE_ERROR_ADVICE", "PROFILE_WARNING_ADVICE", "WARNING_ADVICE", "caller_stacklevel"]

BUILD_PROFILE_HINT = (
    "build a profile for your own network and data with "
    "'qualoader calibrate --reference ARCH --weights FILE --data DATA --out PROFILE.json' "
    "and pass it as create_metric(name, profile=PROFILE.json) (--profile PROFILE.json on the command line)"
)
#: How the warning and the error each end (see :meth:`DomainGuard.check`), without a profile of the user's in use.
WARNING_ADVICE = f"{BUILD_PROFILE_HINT}; strict=True (--strict) turns this warning into an error"
ERROR_ADVICE = (
    f"to fix it, {BUILD_PROFILE_HINT}; or, to score such images anyway with one warning, "
    "build the metric with strict=False (leave out --strict)"
)
#: The same with the user's own profile in use: building one is what they just did, so it is not suggested.
PROFILE_WARNING_ADVICE = (
    "score images like the ones the profile was calibrated on, or rebuild the profile on data like these ('qualoader calibrate'); "
    "strict=True (--strict) turns this warning into an error"
)
PROFILE_ERROR_ADVICE = (
    "to fix it, score images like the ones the profile was calibrated on, or rebuild the profile on data like these "
    "('qualoader calibrate'); or, to score such images anyway with one warning, build the metric with strict=False (leave out --strict)"
)
# Frames of these packages are never the user's call site: the guard runs under qualoader's own code
# and under torch's (Module.__call__, DataLoader iteration), in any order.
_LIBRARY_DIRS: tuple[str, ...] = tuple(
    os.path.dirname(os.path.abspath(path)) + os.sep for path in (os.path.dirname(os.path.abspath(__file__)), str(torch.__file__))
)


def caller_stacklevel() -> int:
    """``stacklevel`` that makes a warning raised by the function calling this one name the user's call site.

    That is the innermost frame outside qualoader and torch: how many library frames lie above the
    guard depends on the path (a direct ``metric(images)``, the scoring engine, a ``QualityLoader``
    running it inside a ``DataLoader``), so it is counted, not fixed.
    """
    frame = sys._getframe(1)  # the function that calls warnings.warn: stacklevel 1
    level = 1
    while frame.f_back is not None and os.path.abspath(frame.f_code.co_filename).startswith(_LIBRARY_DIRS):
        frame = frame.f_back
        level += 1
    return level

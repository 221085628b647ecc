"""Quality profiles (one artifact that fully defines an aligned score) and the input-domain guard.

* :func:`load_profile` / :func:`save_profile` read and write a profile; ``create_metric(name,
  profile=path)`` (or :func:`metric_from_profile`) builds its metric; ``qualoader profile show PATH``
  prints one. The shipped Fashion-MNIST defaults are profiles too (:func:`default_profile_path`).
* :class:`InputDomain`, :func:`out_of_domain_fraction` and :class:`DomainWarning`: an aligned metric
  warns once when images fall far outside its reference network's domain (``strict=True``: error).
"""

from qualoader.profiles.building import default_profile_path, metric_from_profile
from qualoader.profiles.domain import (
    MISMATCHES,
    DomainError,
    DomainGuard,
    DomainWarning,
    InputDomain,
    domain_mismatch,
    out_of_domain,
    out_of_domain_fraction,
)
from qualoader.profiles.profile import (
    PROFILE_FORMAT,
    PROFILE_VERSION,
    RESIZE_POLICIES,
    SOURCES,
    InputTransform,
    MetricSpec,
    ProfileError,
    QualityProfile,
    ReferenceSpec,
    WeightsFile,
    build_reference,
    file_sha256,
    load_profile,
    save_profile,
)

__all__ = [
    "MISMATCHES",
    "PROFILE_FORMAT",
    "PROFILE_VERSION",
    "RESIZE_POLICIES",
    "SOURCES",
    "DomainError",
    "DomainGuard",
    "DomainWarning",
    "InputDomain",
    "InputTransform",
    "MetricSpec",
    "ProfileError",
    "QualityProfile",
    "ReferenceSpec",
    "WeightsFile",
    "build_reference",
    "default_profile_path",
    "domain_mismatch",
    "file_sha256",
    "load_profile",
    "metric_from_profile",
    "out_of_domain",
    "out_of_domain_fraction",
    "save_profile",
]

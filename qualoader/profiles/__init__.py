"""Quality profiles (one artifact that fully defines an aligned score) and the input-domain guard.

* :func:`load_profile` / :func:`save_profile` read and write a profile; ``create_metric(name,
  profile=path)`` (or :func:`qualoader.metrics.metric_from_profile`) builds its metric; ``qualoader
  profile show PATH`` prints one. The shipped Fashion-MNIST defaults are profiles too
  (:func:`default_profile_path`).
* A profile whose reference is an entry point or a TorchScript file runs its author's code when
  used: it is refused unless trusted (``trust=True``, ``--trust-profile``, or the allow-list named by
  :data:`TRUSTED_PROFILES_ENV`); a weak profile warns (:class:`WeakProfileWarning`) when loaded.
* :class:`InputDomain`, :func:`out_of_domain_fraction` and :class:`DomainWarning`: an aligned metric
  warns once when images fall far outside its reference network's domain (``strict=True``: error).
"""

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
    WeakProfileWarning,
    build_reference,
    default_profile_path,
    load_profile,
    save_profile,
    weak_reason,
)
from qualoader.profiles.schema import (
    CODE_SOURCES,
    MAX_INPUT_SIZE,
    MAX_WEIGHTS_BYTES,
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
    file_sha256,
    parse_profile,
)
from qualoader.profiles.trust import TRUSTED_PROFILES_ENV, ProfileTrustError, trusted_profile_hashes

__all__ = [
    "CODE_SOURCES",
    "MAX_INPUT_SIZE",
    "MAX_WEIGHTS_BYTES",
    "MISMATCHES",
    "PROFILE_FORMAT",
    "PROFILE_VERSION",
    "RESIZE_POLICIES",
    "SOURCES",
    "TRUSTED_PROFILES_ENV",
    "DomainError",
    "DomainGuard",
    "DomainWarning",
    "InputDomain",
    "InputTransform",
    "MetricSpec",
    "ProfileError",
    "ProfileTrustError",
    "QualityProfile",
    "ReferenceSpec",
    "WeakProfileWarning",
    "WeightsFile",
    "build_reference",
    "default_profile_path",
    "domain_mismatch",
    "file_sha256",
    "load_profile",
    "out_of_domain",
    "out_of_domain_fraction",
    "parse_profile",
    "save_profile",
    "trusted_profile_hashes",
    "weak_reason",
]

"""Whether a received profile may run its author's code: the opt-in, per profile, and the allow-list of trusted profiles.

A profile whose reference is an entry point (``module:function``) or a TorchScript file runs code its
author wrote when its network is built. It is used only when the user says they trust it: ``trust=True``
(``--trust-profile``), or the sha256 of the profile's JSON file listed in the allow-list named by
:data:`TRUSTED_PROFILES_ENV`. A reference the user names themself (``calibrate --reference``) is
trusted by intent and never passes through here.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from qualoader.profiles.schema import ProfileError

if TYPE_CHECKING:
    from qualoader.profiles.schema import QualityProfile

__all__ = ["TRUSTED_PROFILES_ENV", "ProfileTrustError", "check_trusted", "trusted_profile_hashes"]

#: Environment variable naming the allow-list of trusted profiles: a text file with the sha256 of each
#: trusted profile JSON file, one per line (``sha256sum profile.json`` prints it first).
TRUSTED_PROFILES_ENV = "QUALOADER_TRUSTED_PROFILES"
#: 1 MiB holds some 16 000 digests, more than anyone lists by hand; a larger file is not an allow-list.
_MAX_ALLOW_LIST_BYTES = 1 << 20


class ProfileTrustError(ProfileError):
    """A profile would run code its author wrote, and the user has not said they trust it."""


def trusted_profile_hashes() -> frozenset[str]:
    """The sha256 digests in the allow-list file named by :data:`TRUSTED_PROFILES_ENV` (empty when it is unset).

    Raises:
        ProfileError: the variable names a file that is missing, too large or holds a line that is
            not a 64-hex-digit digest.
    """
    name = os.environ.get(TRUSTED_PROFILES_ENV)
    if not name:
        return frozenset()
    path = Path(name)
    try:
        with path.open("rb") as file:
            data = file.read(_MAX_ALLOW_LIST_BYTES + 1)
    except OSError as error:
        raise ProfileError(
            f"{TRUSTED_PROFILES_ENV} should name a readable allow-list file, but got {TRUSTED_PROFILES_ENV}={name!r} ({error.strerror})"
        ) from error
    if len(data) > _MAX_ALLOW_LIST_BYTES:
        raise ProfileError(f"{TRUSTED_PROFILES_ENV} should name a file of at most {_MAX_ALLOW_LIST_BYTES} bytes, but got {name!r}")
    digests = set()
    for number, line in enumerate(data.decode("utf-8", "replace").splitlines(), 1):
        digest = line.split("#", 1)[0].split()
        if not digest:
            continue
        # `sha256sum` output ("<digest>  <file>") is accepted: its first word is the digest.
        text = digest[0].lower()
        if len(text) != 64 or any(c not in "0123456789abcdef" for c in text):
            raise ProfileError(
                f"{TRUSTED_PROFILES_ENV} should name a file of sha256 digests (64 hex digits per line), but got {name!r} with line "
                f"{number} {line[:80]!r}"
            )
        digests.add(text)
    return frozenset(digests)


def check_trusted(profile: QualityProfile, digest: str, trust: bool, where: str) -> None:
    """Refuse ``profile`` (read from a file of sha256 ``digest``, named ``where``) if its reference runs code and it is not trusted.

    Raises:
        ProfileTrustError: the reference is an entry point or a TorchScript file, ``trust`` is
            false and ``digest`` is not in the allow-list.
    """
    what = profile.reference.runs_code
    if what is None or trust or digest in trusted_profile_hashes():
        return
    raise ProfileTrustError(
        f"profile {where} should be trusted before it is used, but its reference {what} when used; if you trust its author, pass "
        f"--trust-profile (load_profile(..., trust=True)) or add its sha256 {digest} to the file named by {TRUSTED_PROFILES_ENV}"
    )

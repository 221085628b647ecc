"""``qualoader profile show PATH``: print what a quality profile defines, and whether its files are intact.

A profile (``qualoader.profiles``) is one JSON file, with weight files beside it, that fully defines
an aligned score: the reference network, its input transform, labels and domain, the metric and its
parameters, any trained head, the difficulty calibration, and where it all came from.

Showing a profile runs none of its code. A profile whose reference is an entry point or a TorchScript
file says so ("runs code from ... when used"): using it needs --trust-profile (or its sha256 in the
file named by QUALOADER_TRUSTED_PROFILES). A profile whose held-out fit does not beat chance says it
is weak. Characters that could drive the terminal (escape sequences, other control characters) are
shown escaped. Exit code 0 when the files are intact, 1 when one is missing, altered or too large.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from qualoader.cli._errors import user_errors

__all__ = ["add_parser", "run"]


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "profile", help="inspect a quality profile (reference network, metric, calibration, provenance)", description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    show = actions.add_parser("show", help="print a profile and check its weight files against their sha256")
    show.add_argument("path", type=Path, metavar="PATH", help="profile JSON file")
    show.add_argument("--json", action="store_true", help="print the profile as JSON, plus the file checks")
    parser.set_defaults(func=run)


def _file_status(weights: Any, what: str) -> str:
    from qualoader.profiles import MAX_WEIGHTS_BYTES, ProfileError

    if not weights.path.is_file():
        return "MISSING"
    size = weights.path.stat().st_size
    if size > MAX_WEIGHTS_BYTES:  # said before verify() would refuse it: a sparse file of 200 GB is not read
        return f"TOO LARGE ({size} bytes, over {MAX_WEIGHTS_BYTES}; not read)"
    try:
        weights.verify(what)
    except ProfileError as error:
        return f"ALTERED ({str(error).split('but got ')[-1].split(';')[0]})"
    return "ok (sha256 matches)"


def _escaped(text: str) -> str:
    """``text`` with every non-printable character (ESC, CR, bidi overrides, ...) written as its Python escape."""
    return "".join(char if char.isprintable() else char.encode("unicode_escape").decode("ascii") for char in text)


def _trust_line(profile: Any, digest: str) -> str:
    from qualoader.profiles import TRUSTED_PROFILES_ENV, ProfileError, trusted_profile_hashes

    reference = profile.reference
    if reference.runs_code is None:
        return "runs no code of its own (library architecture, weights read as tensors only)"
    source = str(reference.name).partition(":")[0] if reference.source == "entry_point" else str(reference.weights.path)
    try:
        listed = digest in trusted_profile_hashes()
        trusted = f"trusted by {TRUSTED_PROFILES_ENV}" if listed else "not trusted: using it needs --trust-profile"
    except ProfileError as error:  # a broken allow-list trusts nothing; say why
        trusted = f"not trusted ({error})"
    return f"runs code from {source} when used ({reference.runs_code}); {trusted}; sha256 {digest}"


def _lines(profile: Any, version: int, files: dict[str, str], digest: str) -> list[str]:
    from qualoader.profiles import weak_reason

    reference, transform, domain = profile.reference, profile.reference.transform, profile.reference.domain
    lines = [
        f"profile      {profile.name}  (format_version {version}, identity {profile.identity}, score identity {profile.score_identity})",
        f"reference    {reference.source}: {reference.name}",
        f"  code       {_trust_line(profile, digest)}",
        f"  weights    {reference.weights.path}  sha256 {reference.weights.sha256[:16]}...  {files['weights']}",
        f"  transform  {transform.in_channels}x{transform.input_size[0]}x{transform.input_size[1]}, mean {list(transform.mean)}, std "
        f"{list(transform.std)}, resize {transform.resize}",
        f"  labels     {len(reference.labels)}: {', '.join(reference.labels)}",
        f"  domain     {domain.describe()}; per-image mean {domain.image_mean_range}, std {domain.image_std_range}; size ratio <= "
        f"{domain.max_size_ratio:g}",
        f"metric       {profile.metric.name} {json.dumps(dict(profile.metric.params), sort_keys=True)}",
        f"head         {'none' if profile.head is None else f'{profile.head.path}  ' + files['head']}",
    ]
    calibration = profile.calibration
    if calibration is None:
        lines.append("calibration  none (no difficulty)")
    else:
        size = f"{len(calibration.params['x'])} knots" if calibration.method == "isotonic" else f"slope {calibration.params['slope']:.4g}"
        lines.append(f"calibration  {calibration.method}, {size}, higher_is_better={calibration.higher_is_better}")
        weak = weak_reason(profile)
        lines.append(f"  strength   {'WEAK: ' + weak + '; its difficulty may rank images no better than chance' if weak else 'ok'}")
    for key, value in profile.provenance.items():
        lines.append(
            f"{'provenance' if key == next(iter(profile.provenance)) else '':<12} {key}: "
            f"{json.dumps(value) if not isinstance(value, str) else value}"
        )
    # escaped as a whole: any string of a received profile (name, labels, paths, provenance) may hold escape sequences
    return [_escaped(line) for line in lines]


def run(args: argparse.Namespace) -> int:
    from qualoader.profiles import PROFILE_VERSION, weak_reason
    from qualoader.profiles.profile import read_profile

    with user_errors():
        # read, not loaded: no trust check and no file verified, so a profile whose files are missing or
        # whose reference is code is still shown, with what is wrong; nothing of it runs
        profile, digest = read_profile(args.path)
    version = PROFILE_VERSION  # read_profile refuses every other version
    files = {"weights": _file_status(profile.reference.weights, "weights")}
    if profile.head is not None:
        files["head"] = _file_status(profile.head, "head")
    if args.json:
        print(
            json.dumps(
                {
                    **profile.to_dict(profile.path.parent if profile.path else None),
                    "identity": profile.identity,
                    "files": files,
                    "sha256": digest,
                    "runs_code": profile.reference.runs_code,
                    "weak": weak_reason(profile),
                },
                indent=1,
            )  # ensure_ascii (the default) escapes every control character
        )
    else:
        print("\n".join(_lines(profile, version, files, digest)))
    return 0 if all(status.startswith("ok") for status in files.values()) else 1

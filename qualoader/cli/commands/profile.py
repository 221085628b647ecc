"""``qualoader profile show PATH``: print what a quality profile defines, and whether its files are intact.

A profile (``qualoader.profiles``) is one JSON file, with weight files beside it, that fully defines
an aligned score: the reference network, its input transform, labels and domain, the metric and its
parameters, any trained head, the difficulty calibration, and where it all came from.
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
    from qualoader.profiles import ProfileError

    try:
        weights.verify(what)
    except ProfileError as error:
        return "MISSING" if not weights.path.is_file() else f"ALTERED ({str(error).split('but got ')[-1].split(';')[0]})"
    return "ok (sha256 matches)"


def _lines(profile: Any, version: int, files: dict[str, str]) -> list[str]:
    reference, transform, domain = profile.reference, profile.reference.transform, profile.reference.domain
    lines = [
        f"profile      {profile.name}  (format_version {version}, identity {profile.identity}, score identity {profile.score_identity})",
        f"reference    {reference.source}: {reference.name}",
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
    for key, value in profile.provenance.items():
        lines.append(
            f"{'provenance' if key == next(iter(profile.provenance)) else '':<12} {key}: "
            f"{json.dumps(value) if not isinstance(value, str) else value}"
        )
    return lines


def run(args: argparse.Namespace) -> int:
    from qualoader.profiles import load_profile

    with user_errors():
        profile = load_profile(args.path, verify=False)  # show even a profile whose files are missing, and say so
    version = json.loads(args.path.read_text())["format_version"]
    files = {"weights": _file_status(profile.reference.weights, "weights")}
    if profile.head is not None:
        files["head"] = _file_status(profile.head, "head")
    if args.json:
        print(
            json.dumps(
                {**profile.to_dict(profile.path.parent if profile.path else None), "identity": profile.identity, "files": files}, indent=1
            )
        )
    else:
        print("\n".join(_lines(profile, version, files)))
    return 0 if all(status.startswith("ok") for status in files.values()) else 1

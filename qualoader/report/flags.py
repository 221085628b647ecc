"""The flags section of a quality report: per flag the rule, the threshold, the count and the worst images.

The flags are :func:`qualoader.flags.compute_flags` on the report's own scores (classical measures
by name, the calibrated difficulty of aligned metrics): every flag with its rule's fitted threshold,
so fitted on the reported images, unless the report was asked for some flags or thresholds (the
specifications of ``export --flags``); a flag whose measure the report did not score is listed as
not computed, with the reason.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from html import escape
from pathlib import Path
from typing import Any

import numpy as np

from qualoader.flags import FLAG_RULES, compute_flags, worst_indices
from qualoader.report.plots import save_thumbnail
from qualoader.report.scoring import ScoreTable

__all__ = ["check_flag_request", "flag_section", "render_flags"]


def _columns(table: ScoreTable) -> dict[str, np.ndarray]:
    columns: dict[str, np.ndarray] = dict(table.scores)
    columns.update({f"{name}_difficulty": values for name, values in table.difficulty.items()})
    return columns


def check_flag_request(names: list[str] | None, metrics: Collection[str]) -> None:
    """Refuse, before any scoring, a named flag whose measure is not among the report's ``metrics``.

    Raises:
        ValueError: naming the flag and the metric it needs.
    """
    for name in names or ():
        needed = name[len("hard-"):] if name.startswith("hard-") else None if name == "hard" else FLAG_RULES[name].measure
        if needed is not None and needed not in metrics:
            raise ValueError(
                f"flags should name flags whose measure the report scores ({', '.join(metrics)}), "
                f"but got {name!r}, which needs the metric {needed!r}"
            )


def flag_section(
    table: ScoreTable, out: Path, examples: int, names: list[str] | None = None, thresholds: Mapping[str, float] | None = None
) -> dict[str, Any]:
    """Compute the flags of ``table``, save the worst ``examples`` thumbnails per flag under ``out/thumbs``.

    ``names`` and ``thresholds`` are those of :func:`qualoader.flags.compute_flags` (default: every
    flag whose measure was scored, fitted thresholds).

    Returns:
        ``{"flags": [{flag, description, measure, direction, threshold, source, k, count, finite,
        line, examples: [{file, key, score, label, shard}]}], "skipped": {flag: reason}}``.
    """
    from qualoader.report.build import _slug

    columns = _columns(table)
    result = compute_flags(columns, names, thresholds=thresholds)
    entries = []
    for flag in result.flags:
        info = result.thresholds[flag]
        rule = FLAG_RULES["hard" if flag.startswith("hard") else flag]
        shown = []
        for rank, index in enumerate(worst_indices(columns, result, flag, examples)):
            sample = table.samples[index]
            relative = f"thumbs/flag_{_slug(flag)}_{rank:02d}.png"
            try:
                save_thumbnail(sample.decode(), out / relative)
            except (ValueError, OSError) as error:  # one undecodable example costs a thumbnail, as for the metrics' examples
                table.problems.append(f"{sample.key}: thumbnail failed ({error})")
                continue
            value = float(columns[info.measure][index])
            shown.append({"file": relative, "key": sample.key, "score": value, "label": sample.label, "shard": sample.shard})
        entries.append({**info.to_dict(), "description": rule.description, "line": info.describe(), "examples": shown})
    return {"flags": entries, "skipped": dict(result.skipped)}


def render_flags(section: dict[str, Any] | None) -> str:
    """The HTML of the flags section (empty when the summary has none)."""
    from qualoader.report.html import _examples, _table

    if not section:
        return ""
    parts = [
        '<h2 id="flags">Flags</h2>',
        '<p class="note">An image is flagged when its measure is past the threshold on the bad side. Fitted thresholds are the '
        "median of these images -/+ k robust standard deviations (1.4826 x MAD), so they flag what is unusual for this dataset.</p>",
    ]
    rows = []
    for entry in section["flags"]:
        sign = "<" if entry["direction"] == "low" else ">"
        how = "user" if entry["source"] == "user" else f"median {'-' if sign == '<' else '+'} {entry['k']:g} MAD"
        if not entry.get("reachable", True):  # a fence past every possible value: say it, or the 0 reads as "all clear"
            how += f"; cannot fire: no {entry['measure']} is past it, give a threshold (--flags {entry['flag']}=T)"
        rows.append([entry["flag"], entry["description"], entry["measure"], f"{sign} {entry['threshold']:.4g}", how,
                     f"{entry['count']} of {entry['finite']}"])
    parts.append(_table(["flag", "meaning", "measure", "threshold", "how", "images"], rows))
    if section.get("skipped"):
        items = "; ".join(f"{flag} ({why})" for flag, why in section["skipped"].items())
        parts.append(f'<p class="note">Not computed: {escape(items)}.</p>')
    for entry in section["flags"]:
        if entry["examples"]:
            parts.append(_examples(f"{entry['flag']}: worst {len(entry['examples'])} of {entry['count']} ({entry['measure']})",
                                   entry["examples"]))
    return "\n".join(parts)

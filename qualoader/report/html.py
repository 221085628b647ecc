"""Render the static ``index.html`` of a quality report (relative links only, no scripts)."""

from __future__ import annotations

from html import escape
from typing import Any

__all__ = ["render_html"]

_STYLE = """
body { font-family: sans-serif; margin: 2em; color: #222; max-width: 1100px; }
table { border-collapse: collapse; margin: 0.5em 0 1em 0; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: right; }
th:first-child, td:first-child { text-align: left; }
figure { display: inline-block; margin: 0.3em; text-align: center; font-size: 0.75em; }
figure img { image-rendering: pixelated; border: 1px solid #999; }
.plots img { margin-right: 1em; }
.note { color: #666; font-size: 0.9em; }
.warning { color: #8a4b00; background: #fff4e0; border-left: 4px solid #e69500; padding: 0.4em 0.8em; }
"""


def _number(value: Any) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:.4g}"
    return escape(str(value))


def _table(header: list[str], rows: list[list[Any]]) -> str:
    head = "".join(f"<th>{escape(cell)}</th>" for cell in header)
    body = "".join("<tr>" + "".join(f"<td>{_number(cell)}</td>" for cell in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _examples(title: str, examples: list[dict[str, Any]]) -> str:
    figures = "".join(
        f'<figure><img src="{escape(ex["file"])}" alt="{escape(ex["key"])}"><figcaption>{escape(ex["key"])}<br>{_number(ex["score"])}'
        + (f"<br>{escape(ex['label'])}" if ex.get("label") else "")
        + "</figcaption></figure>"
        for ex in examples
    )
    return f"<h4>{escape(title)}</h4><div>{figures}</div>"


def _domain_note(name: str, domain: dict[str, Any]) -> str:
    """One paragraph: how much of the data is outside the reference's domain (a warning when any is)."""
    share = domain["out_of_domain"]
    text = (
        f"Input domain of the reference network ({domain['reference_domain']}): {share:.1%} of {domain['n_images']} images are out of it "
        f"(channels {domain['channels']:.1%}, size {domain['size']:.1%}; atypical intensity {domain['intensity']:.1%})."
    )
    if share > 0:
        advice = (
            "score images like the ones its profile was calibrated on, or rebuild the profile on data like these ('qualoader calibrate')"
            if domain.get("own_profile")
            else "build a quality profile for your network and data with 'qualoader calibrate' and report with --profile"
        )
        text += f" Scores and difficulties of {name} are only meaningful inside that domain: {advice}."
        return f'<p class="warning">{escape(text)}</p>'
    return f'<p class="note">{escape(text)}</p>'


def render_html(summary: dict[str, Any]) -> str:
    """The report page for a summary dictionary (the content of ``report.json``; see ``build_report``)."""
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>Quality report: {escape(summary['source'])}</title>",
        f"<style>{_STYLE}</style></head><body>",
        (
            f"<h1>Quality report</h1><p>Source: <code>{escape(summary['source'])}</code> ({escape(summary['kind'])}). "
            f"Scored {summary['scored']} of {summary['total']} images with {len(summary['metrics'])} metric(s).</p>"
        ),
    ]
    rows = [
        [
            m["name"], "higher" if m["higher_is_better"] else "lower", m["mean"], m["std"], m["min"], m["median"], m["max"], m["from_tags"],
            f"{m['domain']['out_of_domain']:.1%}" if m.get("domain") else "n/a", m["fingerprint"],
        ]
        for m in summary["metrics"]
    ]
    header = ["metric", "better", "mean", "std", "min", "median", "max", "from tags", "out of domain", "fingerprint"]
    parts.append("<h2>Summary</h2>" + _table(header, rows))
    from qualoader.report.flags import render_flags  # after the summary: the first thing a user acts on

    parts.append(render_flags(summary.get("flags")))
    for metric in summary["metrics"]:
        name = metric["name"]
        parts.append(f'<h2 id="{escape(name)}">{escape(name)}</h2>')
        if metric.get("summary_line"):
            parts.append(f'<p class="note">{escape(metric["summary_line"])}</p>')
        if metric.get("weak"):
            text = f"The profile of {name} is weak ({metric['weak']}): its difficulty may rank images no better than chance."
            parts.append(f'<p class="warning">{escape(text)}</p>')
        if metric.get("domain"):
            parts.append(_domain_note(name, metric["domain"]))
        plots = [f'<img src="{escape(metric["distribution"])}" alt="{escape(name)} distribution">']
        if metric.get("difficulty_plot"):
            plots.append(f'<img src="{escape(metric["difficulty_plot"])}" alt="{escape(name)} difficulty buckets">')
        parts.append('<div class="plots">' + "".join(plots) + "</div>")
        if metric.get("difficulty_buckets"):
            buckets = metric["difficulty_buckets"]
            parts.append(_table(["expected error", *buckets["labels"]], [["images", *buckets["counts"]]]))
        else:
            parts.append('<p class="note">No difficulty buckets: this metric has no calibration attached.</p>')
        parts.append(_examples(f"Lowest quality ({len(metric['lowest'])})", metric["lowest"]))
        parts.append(_examples(f"Highest quality ({len(metric['highest'])})", metric["highest"]))
    if summary.get("shards"):
        parts.append("<h2>Shards</h2>")
        names = [m["name"] for m in summary["metrics"]]
        header = ["shard", "samples", "tagged", *[f"mean {n}" for n in names], *[f"median {n}" for n in names]]
        rows = [
            [shard["shard"], shard["samples"], shard["tagged"], *[shard["mean"][n] for n in names], *[shard["median"][n] for n in names]]
            for shard in summary["shards"]
        ]
        parts.append(_table(header, rows))
        parts.append('<div class="plots">' + "".join(
            f'<img src="{escape(metric["shard_plot"])}" alt="{escape(metric["name"])} per shard">'
            for metric in summary["metrics"] if metric.get("shard_plot")
        ) + "</div>")
    if summary.get("problems"):
        items = "".join(f"<li>{escape(problem)}</li>" for problem in summary["problems"][:200])
        parts.append(f"<h2>Skipped</h2><ul>{items}</ul>")
    parts.append(
        f'<p class="note">Generated by qualoader {escape(summary["version"])}; all figures are in this folder (report.json has the '
        'numbers).</p>'
    )
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"

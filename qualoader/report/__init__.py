"""Static dataset quality reports: an HTML page plus PNG figures, from a folder, Fashion-MNIST or shards.

``build_report(source, metrics, out)`` (or ``qualoader report SOURCE --metric NAME --out DIR``)
scores every image (or reads the ``quality.json`` tags of tagged WebDataset shards) and writes
``index.html`` with the quality distribution per metric, difficulty buckets for calibrated metrics,
the lowest- and highest-quality thumbnails and, for shards, a per-shard summary.
"""

from qualoader.report.build import build_report, summarise
from qualoader.report.html import render_html
from qualoader.report.scoring import ScoreTable, score_source
from qualoader.report.sources import (
    Sample,
    Source,
    decode_image,
    load_source,
    parse_quality_tags,
)

__all__ = [
    "Sample",
    "ScoreTable",
    "Source",
    "build_report",
    "decode_image",
    "load_source",
    "parse_quality_tags",
    "render_html",
    "score_source",
    "summarise",
]

"""The webdataset pipelines the docs show run as written, with ``.decode(...)`` after (or before) the stages.

Examples that need shards carry ``# doctest: +SKIP`` in their docstrings; here they run with
``urls`` bound to real shards and their printed results checked. README code blocks that build a
webdataset pipeline run the same way.
"""

from __future__ import annotations

import doctest
import inspect
import re
from pathlib import Path

import pytest
import torch
import webdataset as wds

import qualoader.webdataset as qwds
from qualoader.webdataset import (
    annotate_quality,
    curriculum,
    encode_tag,
    filter_quality,
    parse_quality_tags,
    reweight,
    stratify,
)
from qualoader.webdataset.resume import resumable_pipeline

README = Path(__file__).resolve().parents[2] / "README.md"


def _run_docstring(docstring: str, name: str, globs: dict) -> None:
    """Run a docstring's examples, ``+SKIP`` ones included; fail on any mismatch."""
    test = doctest.DocTestParser().get_doctest(docstring, globs, name, None, 0)
    for example in test.examples:
        example.options.pop(doctest.SKIP, None)
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    report: list[str] = []
    runner.run(test, out=report.append)
    assert runner.failures == 0, "".join(report)
    assert runner.tries == len(test.examples) > 0


@pytest.mark.parametrize(
    ("name", "documented"),
    [("qualoader.webdataset", qwds), ("annotate_quality", annotate_quality), ("resumable_pipeline", resumable_pipeline)],
)
def test_docstring_pipelines_run_as_written(
    fm_shards: list[str], name: str, documented: object, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # the examples write their shards into the working folder
    # doctest runs an object's examples in the globals of its module
    module = documented if inspect.ismodule(documented) else inspect.getmodule(documented)
    _run_docstring(documented.__doc__ or "", name, {**vars(module), "urls": fm_shards})


def _readme_pipelines() -> list[str]:
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), flags=re.DOTALL)
    return [block for block in blocks if "qualoader.webdataset" in block]


def test_readme_pipelines_run_as_written(fm_shards: list[str]) -> None:
    """Every README block using qualoader.webdataset runs on real shards (``urls`` is the reader's own)."""
    for block in _readme_pipelines():
        exec(compile(block, str(README), "exec"), {"urls": fm_shards})  # noqa: S102 - our own README


def test_decode_after_scoring_and_filtering(fm_shards: list[str]) -> None:
    """The pipeline of issue 14.6, which crashed in webdataset's decoder before tags moved to ``__quality__``."""
    scores = [s["__quality__"]["sharpness"] for s in wds.WebDataset(fm_shards, shardshuffle=False).compose(annotate_quality("sharpness"))]
    median = float(torch.tensor(scores).median())
    dataset = (
        wds.WebDataset(fm_shards, shardshuffle=False, empty_check=False)
        .compose(annotate_quality("sharpness", batch_size=64), filter_quality("sharpness", low=median))
        .decode("torchrgb")
    )
    samples = list(dataset)
    assert len(samples) == sum(score >= median for score in scores) and 100 < len(samples) < 140
    assert all(s["png"].shape == (3, 28, 28) and s["png"].dtype == torch.float32 for s in samples)
    assert all(s["__quality__"]["sharpness"] >= median for s in samples)


@pytest.fixture(scope="module")
def tagged_shards(fm_shards: list[str], tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    """The Fashion-MNIST shards with a ``quality.json`` member per sample (sharpness, and a difficulty)."""
    folder = tmp_path_factory.mktemp("tagged")
    paths = []
    for index, shard in enumerate(fm_shards):
        path = str(folder / f"tagged-{index}.tar")
        with wds.TarWriter(path) as writer:
            for sample in wds.WebDataset([shard], shardshuffle=False, empty_check=False).compose(annotate_quality("sharpness")):
                score = sample.pop("__quality__")["sharpness"]
                difficulty = min(1.0, score * 10)  # any value in [0, 1] will do for the stages
                sample["quality.json"] = encode_tag({"sharpness": score}, {"sharpness": difficulty}, {"sharpness": "f"})
                writer.write({k: v for k, v in sample.items() if k in ("__key__", "png", "cls", "quality.json")})
        paths.append(path)
    return paths


def test_parse_tags_then_decode(tagged_shards: list[str]) -> None:
    samples = list(wds.WebDataset(tagged_shards, shardshuffle=False, empty_check=False).compose(parse_quality_tags()).decode("torchrgb"))
    assert len(samples) == 240
    assert all(set(s["__quality__"]) == {"sharpness"} and s["__fingerprints__"] == {"sharpness": "f"} for s in samples)
    assert all(s["quality.json"]["quality"] == s["__quality__"] for s in samples)  # the decoder parsed the member too


@pytest.mark.parametrize("decode_first", [False, True])
def test_every_stage_works_before_and_after_decode(tagged_shards: list[str], decode_first: bool) -> None:
    def stages() -> tuple:  # fresh ones for each pipeline: a pass advances a seeded stage's epoch
        return (
            filter_quality("sharpness", low=0.0),
            reweight("sharpness", field="difficulty", scale=1.0, seed=0),
            stratify("sharpness", 2, warmup=32, seed=0),
            curriculum("sharpness", progress=1.0),
        )

    dataset = wds.WebDataset(tagged_shards, shardshuffle=False, empty_check=False)
    dataset = dataset.decode("torchrgb").compose(*stages()) if decode_first else dataset.compose(*stages()).decode("torchrgb")
    keys = [s["__key__"] for s in dataset]
    assert 0 < len(keys) < 240
    reference = wds.WebDataset(tagged_shards, shardshuffle=False, empty_check=False).compose(*stages())
    assert keys == [s["__key__"] for s in reference], "decoding does not change what the (seeded) stages keep"

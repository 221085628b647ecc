"""tag_format: the one home of the quality.json member and the sidecar index, and every path reading through it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import qualoader.report.sources as report_sources
import qualoader.webdataset as wd
from qualoader.webdataset import _common, stages, tag_format
from qualoader.webdataset.tag_format import (
    TAG_FORMAT,
    MissingTagError,
    SidecarIndex,
    SkippedSample,
    encode_tag,
    merge_tag,
    parse_tag,
    read_sidecar,
    sidecar_path,
    tag_member_name,
    tag_scores,
)


def test_every_path_reads_through_tag_format() -> None:
    assert wd.parse_tag is _common.parse_tag is parse_tag
    assert stages.encode_tag is wd.encode_tag is encode_tag
    assert wd.MissingTagError is _common.MissingTagError is MissingTagError
    assert wd.TAG_MEMBER == _common.TAG_MEMBER == tag_format.TAG_MEMBER == "quality.json"
    assert report_sources.parse_quality_tags is tag_scores
    assert wd.SidecarIndex is SidecarIndex and wd.read_sidecar is read_sidecar and wd.sidecar_path is sidecar_path


def test_encode_parse_round_trip_and_stable_bytes() -> None:
    member = encode_tag({"b": 0.25, "a": 1.5}, {"a": 0.1}, {"a": "fa", "b": "fb"})
    assert member == encode_tag({"a": 1.5, "b": 0.25}, {"a": 0.1}, {"b": "fb", "a": "fa"})  # key order does not matter
    document = json.loads(member)
    assert document["format"] == TAG_FORMAT
    assert parse_tag(member) == {"quality": {"a": 1.5, "b": 0.25}, "difficulty": {"a": 0.1}, "fingerprints": {"a": "fa", "b": "fb"}}
    assert parse_tag(member.decode()) == parse_tag(document) == parse_tag(member)
    assert tag_member_name("dir/k.0") == "dir/k.0.quality.json"


def test_merge_replaces_rescored_metrics_only() -> None:
    old = encode_tag({"sharpness": 0.5, "contrast": 0.2}, {"sharpness": 0.9}, {"sharpness": "s1", "contrast": "c1"})
    merged = parse_tag(merge_tag(old, {"sharpness": 0.7}, {}, {"sharpness": "s2"}))
    assert merged["quality"] == {"sharpness": 0.7, "contrast": 0.2}
    assert merged["difficulty"] == {}  # the old difficulty belonged to the old sharpness score
    assert merged["fingerprints"] == {"sharpness": "s2", "contrast": "c1"}
    assert merge_tag(None, {"a": 1.0}, {}, {"a": "f"}) == encode_tag({"a": 1.0}, {}, {"a": "f"})
    with pytest.raises(MissingTagError, match="not JSON"):
        merge_tag(b"\x89PNG not a tag", {"a": 1.0}, {}, {"a": "f"})


@pytest.mark.parametrize(
    ("data", "match"),
    [
        (b"\xff\xfe", "not JSON"),
        (b"[1, 2]", "'quality' mapping"),
        (b'{"quality": 3}', "quality.{1,3} mapping"),
        (b'{"quality": {}, "difficulty": [1]}', "difficulty.{1,3} and .{1,3}fingerprints.{1,3} mappings"),
    ],
)
def test_parse_tag_refuses_malformed(data: bytes, match: str) -> None:
    with pytest.raises(MissingTagError, match=match):
        parse_tag(data)


def test_lenient_reader_reads_our_format_and_others() -> None:
    ours = encode_tag({"sharpness": 0.5}, {"sharpness": 0.3}, {"sharpness": "f"})
    assert tag_scores(ours) == {"sharpness": 0.5}
    assert tag_scores(b'{"metric": "noise", "score": 2}') == {"noise": 2.0}
    assert tag_scores(b'{"scores": {"a": {"value": 1}, "b": "x"}}') == {"a": 1.0}
    with pytest.raises(ValueError, match="JSON object"):
        tag_scores(b"3")


def _index() -> SidecarIndex:
    index = SidecarIndex("x.tar", {"m": {"fingerprint": "f", "higher_is_better": True, "calibrated": True}})
    index.add("k1", {"m": 1.0}, {"m": 0.5})
    index.add("k2", {"m": 2.0})
    index.skip(SkippedSample("in/a.tar", "k3", "ImageDecodeError", "bad bytes"))
    index.skip(SkippedSample("in/b.tar", None, "CorruptShardError", "truncated"))
    return index


def test_sidecar_round_trip_with_skipped_samples(tmp_path: Path) -> None:
    index = _index()
    path = index.write(sidecar_path("somewhere/x.tar", tmp_path))
    assert path == tmp_path / "x.tar.quality.json" and sorted(p.name for p in tmp_path.iterdir()) == ["x.tar.quality.json"]
    back = read_sidecar(path)
    assert back == index and back.keys == ["k1", "k2"] and back.skipped == 2
    assert [str(entry) for entry in back.skipped_samples] == [
        "in/a.tar sample 'k3': ImageDecodeError: bad bytes",
        "in/b.tar (rest of the shard): CorruptShardError: truncated",
    ]
    assert back.scores("m").tolist() == [1.0, 2.0]
    assert back.scores("m", "difficulty")[1].isnan()
    with pytest.raises(ValueError, match="unique within a shard"):
        index.add("k1", {"m": 3.0})


@pytest.mark.parametrize(
    ("edit", "match"),
    [
        (lambda d: d.update(count=5), "count should equal"),
        (lambda d: d.update(quality=[1]), "per-key 'quality'"),
        (lambda d: d.update(skipped=-1), "non-negative int"),
        (lambda d: d.update(format="other"), "format"),
    ],
)
def test_sidecar_damage_is_an_error(edit: object, match: str) -> None:
    document = json.loads(_index().to_json())
    edit(document)  # type: ignore[operator]
    with pytest.raises(ValueError, match=match):
        SidecarIndex.from_json(json.dumps(document))


def test_truncated_sidecar_is_an_error() -> None:
    text = _index().to_json()
    for cut in (1, len(text) // 2, len(text) - 1):
        with pytest.raises(ValueError, match="sidecar index"):
            SidecarIndex.from_json(text[:cut])


# -- nested JSON: every sidecar and tag read goes through the bounded reader ----------------------


def _nested(depth: int, leaf: str, kinds: list[bool]) -> str:
    """JSON text nesting ``depth`` levels of lists and objects (``kinds`` picks each level), around ``leaf``."""
    text = leaf
    for level in range(depth):
        text = f"[{text}]" if kinds[level % len(kinds)] else f'{{"k": {text}}}'
    return text


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    depth=st.one_of(st.integers(65, 400), st.integers(5_000, 100_000)),  # past the depth limit, and past the recursion limit
    kinds=st.lists(st.booleans(), min_size=1, max_size=5),
    wrapper=st.sampled_from(["sidecar", "quality", "bare"]),
)
def test_deeply_nested_json_is_one_value_error(tmp_path: Path, depth: int, kinds: list[bool], wrapper: str) -> None:
    inner = _nested(depth, "1", kinds)
    if wrapper == "sidecar":  # inside an otherwise valid sidecar's field
        text = SidecarIndex("s.tar", {"m": {}}).to_json().replace('"metrics": {"m": {}}', f'"metrics": {{"m": {inner}}}')
    elif wrapper == "quality":
        text = f'{{"quality": {{"m": {inner}}}}}'
    else:
        text = inner
    path = tmp_path / "nested.tar.quality.json"
    path.write_text(text)
    with pytest.raises(ValueError, match=r"^sidecar '.*nested\.tar\.quality\.json'.*nested at most 64 levels deep"):
        read_sidecar(path)
    with pytest.raises(ValueError, match="nested at most 64 levels deep"):
        SidecarIndex.from_json(text)
    with pytest.raises(MissingTagError, match="nested at most 64 levels deep"):
        parse_tag(text.encode())
    with pytest.raises(ValueError, match="nested at most 64 levels deep"):
        tag_scores(text.encode())


def test_damaged_sidecar_names_its_file(tmp_path: Path) -> None:
    path = tmp_path / "s.tar.quality.json"
    good = json.loads(SidecarIndex("s.tar", {"m": {}}).to_json())
    for damage, expected in (
        ({**good, "skipped_samples": [{"shard": "s.tar"}]}, "skipped_samples should be a list of objects"),
        ({**good, "format": "other"}, "should be a sidecar index of format"),
    ):
        path.write_text(json.dumps(damage))
        with pytest.raises(ValueError, match=rf"^sidecar '{path}': .*{expected}"):
            read_sidecar(path)
    path.write_bytes(b"\xff\xfe not utf-8")
    with pytest.raises(ValueError, match=rf"^sidecar '{path}' should be a valid JSON document"):
        read_sidecar(path)

"""What every stream stage shares: tag lookup (entries or quality.json, raw or decoded), the handler loop, seeding."""

from __future__ import annotations

import pickle

import pytest
import torch

from qualoader.policies import OnlineDifficulty
from qualoader.webdataset import MissingTagError, SkipAndCount, StreamLosses, curriculum
from qualoader.webdataset._stage import DIFFICULTY_KEY, QUALITY_KEY, TagValue, lookup_tag, read_values
from qualoader.webdataset.tag_format import encode_tag


@pytest.mark.parametrize("member", [encode_tag({"m": 0.5}, {"m": 0.1}, {"m": "f"}), {"quality": {"m": 0.5}, "difficulty": {"m": 0.1}}])
def test_lookup_reads_the_member_raw_or_decoded_once(member: object) -> None:
    sample = {"__key__": "k", "quality.json": member}
    assert lookup_tag(sample, "difficulty", "m") == 0.1
    assert sample[QUALITY_KEY] == {"m": 0.5} and sample[DIFFICULTY_KEY] == {"m": 0.1}  # cached for the next stage
    sample["quality.json"] = b"not json any more"  # the cache is read, the member not parsed again
    assert lookup_tag(sample, "quality", "m") == 0.5


def test_lookup_errors_name_the_sample_and_metric() -> None:
    with pytest.raises(MissingTagError, match="sample 'k' should carry a quality.json member or a '__quality__' entry, but got neither"):
        lookup_tag({"__key__": "k"}, "quality", "m")
    with pytest.raises(MissingTagError, match="sample 'k' should have a difficulty for metric 'x', but got difficulty for \\['m'\\]"):
        lookup_tag({"__key__": "k", DIFFICULTY_KEY: {"m": 0.2}}, "difficulty", "x")


def test_tag_value_checks_finiteness_and_pickles() -> None:
    read = pickle.loads(pickle.dumps(TagValue("quality", "m", finite=True)))
    assert read({QUALITY_KEY: {"m": 2}}) == 2.0
    with pytest.raises(ValueError, match="sample\\['__quality__'\\]\\['m'\\] should be finite, but got nan"):
        read({"__key__": "k", QUALITY_KEY: {"m": float("nan")}})


def _samples() -> list[dict]:
    return [{"__key__": "a", QUALITY_KEY: {"m": 1}}, {"__key__": "b"}, {"__key__": "c", QUALITY_KEY: {"m": 3}}]


def test_read_values_follows_the_handler_protocol() -> None:
    read = TagValue("quality", "m")
    skip = SkipAndCount(warn=False)
    assert [(s["__key__"], v) for s, v in read_values(_samples(), read, skip)] == [("a", 1.0), ("c", 3.0)]
    assert skip.counts == {"MissingTagError": 1}
    assert [s["__key__"] for s, _ in read_values(_samples(), read, lambda exn: False)] == ["a"]  # False ends the stream
    with pytest.raises(MissingTagError):
        list(read_values(_samples(), read, _reraise))


def _reraise(exn: Exception) -> bool:
    raise exn


@pytest.mark.parametrize(
    ("keys", "values", "error", "match"),
    [
        (["a", 3], [1.0, 1.0], TypeError, "keys should be a sequence of str"),
        ("ab", [1.0, 1.0], TypeError, "keys should be a sequence of str"),
        (["a", "b"], [1.0], ValueError, r"losses should have one entry per index \(2\)"),
        (["a", "b"], [1.0, float("nan")], ValueError, r"losses should be finite, but got losses\[1\]=nan"),
        (["a"], [[1.0]], ValueError, r"losses should be 1-D"),
        (["a"], ["x"], TypeError, "losses should hold real numbers"),
    ],
)
def test_stream_losses_refuse_bad_updates_and_change_nothing(keys, values, error, match) -> None:
    losses = StreamLosses(64)
    losses.update(["a", "b"], [1.0, 2.0])
    before = [losses.observations(key) for key in ("a", "b")]
    with pytest.raises(error, match=match):
        losses.update(keys, values)
    assert [losses.observations(key) for key in ("a", "b")] == before
    with pytest.raises(TypeError, match="online should be a StreamLosses or None"):
        curriculum("m", online=OnlineDifficulty())
    with pytest.raises(ValueError, match="size should be a positive int"):
        StreamLosses(0)


def test_stream_losses_record_like_the_samplers() -> None:
    losses = StreamLosses(1 << 10, policy=OnlineDifficulty(momentum=0.5))
    losses.update(["a", "a", "b"], [1.0, 3.0, 4.0])
    losses.update(["b"], torch.tensor([0.0]))
    assert losses.observations("a") == (2, 2.0) and losses.observations("b") == (2, 2.0) and losses.observations("c") == (0, 0.0)
    copy = pickle.loads(pickle.dumps(losses))
    assert copy.observations("a") == (2, 2.0) and copy.slot("b") == losses.slot("b")

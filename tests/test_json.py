import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from qualoader._json import MAX_JSON_DEPTH, loads_json, read_json


def _nested(depth: int) -> str:
    return "[" * depth + "]" * depth


@given(st.integers(min_value=MAX_JSON_DEPTH + 1, max_value=200_000))
def test_deep_nesting_is_one_value_error(depth):
    with pytest.raises(ValueError, match="nested at most 64 levels"):
        loads_json(_nested(depth), what="profile 'p.json'")


def test_nesting_up_to_the_limit_is_read():
    assert loads_json(_nested(MAX_JSON_DEPTH), what="x") == json.loads(_nested(MAX_JSON_DEPTH))


@pytest.mark.parametrize("text", ["{", "not json", b"\xff\xfe\x00"])
def test_invalid_documents_name_what_was_read(text):
    with pytest.raises(ValueError, match="store.json should be a valid JSON document"):
        loads_json(text, what="store.json")


def test_read_json_refuses_a_file_over_the_size_limit_before_parsing(tmp_path):
    path = tmp_path / "big.json"
    path.write_text(json.dumps({"a": "x" * 100}))
    with pytest.raises(ValueError, match="should be at most 50 bytes"):
        read_json(path, max_bytes=50)
    assert read_json(path) == {"a": "x" * 100}

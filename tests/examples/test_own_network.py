"""The own-network example on a small subset: a ResNet-18 trained here, its quality profile, and every use of it."""

from __future__ import annotations

import json

import numpy as np
import pytest

from qualoader.data import ScoreStore
from qualoader.profiles import ProfileError, load_profile


@pytest.mark.slow
def test_small_run_builds_and_uses_a_profile(load_script, tmp_path, capsys) -> None:
    example = load_script("examples/own_network.py")
    out = tmp_path / "run"
    result = example.main([
        "--out", str(out), "--train-images", "400", "--epochs", "1", "--calibration-images", "120",
        "--score-images", "96", "--corruptions", "gaussian_noise", "contrast",
    ])  # fmt: skip
    printed = capsys.readouterr().out
    assert "$ qualoader calibrate --reference own_network:resnet18_fashion" in printed
    assert result["test_accuracy"] > 0.3  # far above chance (0.1) after one short epoch

    # the profile: written as strict JSON, loadable, naming our network and its weights
    text = result["profile"].read_text()
    json.loads(text, parse_constant=lambda constant: pytest.fail(f"profile holds {constant}"))
    profile = load_profile(result["profile"], trust=True)  # its reference is our own entry point
    assert (profile.reference.source, profile.reference.name) == ("entry_point", "own_network:resnet18_fashion")
    assert profile.reference.weights.path == result["weights"].resolve()
    held = profile.provenance["held_out"]
    assert 0.0 < held["error_rate"] < 1.0 and 0.0 <= held["auroc"] <= 1.0 and held["brier"] >= 0.0

    # scores in the store, read back by the QualityLoader; difficulty from the profile's calibration
    (table,) = ScoreStore(out / "store").tables()
    assert table.path == result["store_table"] and table.num_scored == 96
    assert np.isfinite(table.scores()).all()
    difficulties = result["difficulties"]
    assert len(difficulties) == 96 and bool(((difficulties >= 0) & (difficulties <= 1)).all())

    # tagged shards are readable and carry the profile's metric
    assert result["tagged_shards"] and len(result["tag_difficulties"]) == 64
    assert all(0.0 <= value <= 1.0 for value in result["tag_difficulties"])

    # the weights' hash is checked: an altered file is refused
    weights = result["weights"]
    data = weights.read_bytes()
    weights.write_bytes(data[:-1] + bytes([data[-1] ^ 1]))
    with pytest.raises(ProfileError, match="sha256"):
        load_profile(result["profile"], trust=True)

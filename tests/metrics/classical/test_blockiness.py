from __future__ import annotations

import pytest
import torch

from qualoader.metrics import create_metric
from qualoader.metrics.classical.blockiness import Blockiness, blockiness


def test_module_matches_function(photos):
    metric = create_metric("blockiness", block=8)
    torch.testing.assert_close(metric(photos), blockiness(photos))
    assert not metric.higher_is_better
    assert metric.get_config() == {"block": 8}


def test_rises_with_jpeg_compression(photos, degrade, scores_over_severity):
    scores = scores_over_severity(create_metric("blockiness"), photos, degrade.jpeg)
    assert bool((scores.mean(dim=0).diff() > 0).all()), scores.mean(dim=0)
    assert bool((scores[:, -1] > scores[:, 0]).all()), scores


def test_flat_image_scores_one():
    torch.testing.assert_close(blockiness(torch.full((2, 1, 32, 32), 0.4)), torch.ones(2))


def test_block_mosaic_scores_high_and_shifted_grid_scores_low():
    generator = torch.Generator().manual_seed(0)
    tiles = torch.rand(1, 1, 4, 4, generator=generator)
    mosaic = tiles.repeat_interleave(8, dim=2).repeat_interleave(8, dim=3)  # 32x32, steps only on the grid
    assert blockiness(mosaic).item() > 1e3
    shifted = mosaic[..., 4:, 4:]  # steps now fall inside the 8x8 blocks
    assert blockiness(shifted).item() < 1e-3


@pytest.mark.parametrize("block", [0, -8])
def test_bad_block_raises(block):
    with pytest.raises(ValueError, match="block should be a positive int"):
        Blockiness(block=block)
    with pytest.raises(ValueError, match="block should be a positive int"):
        blockiness(torch.rand(1, 1, 32, 32), block=block)


def test_single_pixel_block_raises():
    with pytest.raises(ValueError, match="block should be an int >= 2"):
        Blockiness(block=1)


def test_bad_block_type_raises():
    with pytest.raises(TypeError, match="block should be an int"):
        Blockiness(block=8.0)  # type: ignore[arg-type]


def test_image_smaller_than_a_block_raises():
    with pytest.raises(ValueError, match="larger than block=8"):
        blockiness(torch.rand(1, 3, 8, 32))

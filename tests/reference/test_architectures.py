"""FashionCNN: the architecture of the embedded default reference network."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from qualoader.reference import FashionCNN


def test_shapes_and_batchnorm_layers():
    model = FashionCNN().eval()
    images = torch.randn(3, 1, 28, 28)
    assert model(images).shape == (3, 10)
    assert model.features(images).shape == (3, 64, 7, 7)
    assert sum(isinstance(m, nn.BatchNorm2d) for m in model.modules()) == 3


def test_options_change_widths():
    model = FashionCNN(num_classes=4, width=8, hidden=16)
    assert model(torch.randn(2, 1, 28, 28)).shape == (2, 4)
    assert model.classifier[1].out_features == 16


def test_wrong_input_size_fails():
    with pytest.raises(RuntimeError):
        FashionCNN()(torch.randn(2, 1, 32, 32))

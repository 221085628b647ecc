"""Architecture of the embedded default reference network (a small Fashion-MNIST CNN with BatchNorm)."""

from __future__ import annotations

from torch import Tensor, nn

__all__ = [
    "FASHION_MNIST_MEAN",
    "FASHION_MNIST_STD",
    "FashionCNN",
]

#: Pixel mean and standard deviation of the Fashion-MNIST train split (images in [0, 1]).
FASHION_MNIST_MEAN: tuple[float, ...] = (0.2860,)
FASHION_MNIST_STD: tuple[float, ...] = (0.3530,)


def _conv_block(in_channels: int, out_channels: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


class FashionCNN(nn.Module):
    """Three conv-BatchNorm-ReLU blocks and a two-layer classifier for :math:`(B, 1, 28, 28)` input.

    ``features`` maps normalised images to :math:`(B, 64, 7, 7)`; ``classifier.2`` (the ReLU after
    the hidden linear layer) gives the :math:`(B, 128)` embedding; the output is logits :math:`(B, 10)`.

    Args:
        num_classes: number of output logits.
        width: channels of the first block (the next two use ``2 * width``).
        hidden: size of the embedding (hidden linear layer).
    """

    def __init__(self, num_classes: int = 10, width: int = 32, hidden: int = 128) -> None:
        super().__init__()
        self.features = nn.Sequential(
            _conv_block(1, width),
            nn.MaxPool2d(2),
            _conv_block(width, 2 * width),
            nn.MaxPool2d(2),
            _conv_block(2 * width, 2 * width),
        )
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(2 * width * 7 * 7, hidden),
            nn.ReLU(inplace=True),
            nn.Dropout(0.3),
            nn.Linear(hidden, num_classes),
        )

    def forward(self, images: Tensor) -> Tensor:
        """Logits :math:`(B, K)` of normalised images :math:`(B, 1, 28, 28)`."""
        return self.classifier(self.features(images))

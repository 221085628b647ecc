"""Quick start: score Fashion-MNIST on the fly, store the scores, and read them back next epoch."""

import tempfile

from torch.utils.data import DataLoader, TensorDataset

from qualoader import create_metric
from qualoader.data import QualityDataset, QualityLoader, ScoreStore, describe
from qualoader.datasets import load_fashion_mnist

images, labels = load_fashion_mnist("test")  # (10000, 1, 28, 28) uint8, from the Debian package
dataset = QualityDataset(TensorDataset(images[:2000], labels[:2000]))  # samples carry their index

metric = create_metric("bn-shift")  # DNN-aligned, no reference, embedded default network
store = ScoreStore(tempfile.mkdtemp(), length=len(dataset))
loader = QualityLoader(DataLoader(dataset, batch_size=256, num_workers=2), metric, device="cpu", store=store)

for epoch in range(2):  # epoch 0 scores each batch on the device; epoch 1 reads the store
    for image, label, quality in loader:
        pass  # train on (image, label); quality is a (B,) float64 tensor
print(quality.shape, quality[:4])
print(describe(store))

"""Quick start: score Fashion-MNIST on the fly, store the scores, and read them back next epoch."""

import tempfile

from torch.utils.data import DataLoader, TensorDataset

from qualoader import create_metric
from qualoader.data import QualityDataset, QualityLoader, ScoreStore, describe
from qualoader.datasets import load_fashion_mnist
from qualoader.samplers import CurriculumSampler, QualityStratifiedSampler, QualityWeightedSampler

# (10000, 1, 28, 28) uint8 from a full local copy, else (3000, 1, 28, 28) from the sample bundled with qualoader
images, labels = load_fashion_mnist("test")
dataset = QualityDataset(TensorDataset(images[:2000], labels[:2000]))  # samples carry their index

metric = create_metric("bn-shift")  # DNN-aligned, no reference, embedded default network
store = ScoreStore(tempfile.mkdtemp(), length=len(dataset))
loader = QualityLoader(DataLoader(dataset, batch_size=256, num_workers=2), metric, device="cpu", store=store)

for epoch in range(2):  # epoch 0 scores each batch on the device; epoch 1 reads the store
    for image, label, quality, difficulty in loader:
        pass  # train on (image, label); quality (B,) float64; difficulty: expected error in [0, 1]
print(quality.shape, quality[:4], difficulty[:4])
print(describe(store))

# The stored scores drive quality-aware samplers (the table knows bn-shift is lower-is-better).
table = store.table(metric)
stratified = QualityStratifiedSampler(table, num_strata=4)  # each quality quartile equally per epoch
hard_mining = QualityWeightedSampler(table, temperature=0.5, favour="hard")
curriculum = CurriculumSampler(table, pacing="root", start_fraction=0.2, full_at=5)
for epoch in range(6):
    curriculum.set_epoch(epoch)  # the easiest 20% first, everything from epoch 5 on
    seen = sum(len(label) for image, label in DataLoader(dataset.dataset, batch_size=256, sampler=curriculum))
    print(f"curriculum epoch {epoch}: {seen} samples")

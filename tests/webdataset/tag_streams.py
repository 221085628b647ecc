"""Synthetic tagged sample streams shared by the stream-stage tests (tags as entries or quality.json members)."""

from __future__ import annotations

import json

import numpy as np
from torch.utils.data import IterableDataset


def _stream(values: np.ndarray, *, tagged: bool = False, difficulty: np.ndarray | None = None) -> list[dict]:
    """Synthetic samples carrying scores, either as dict entries or as a quality.json member."""
    samples = []
    for i, value in enumerate(values.tolist()):
        quality = {"m": value}
        diff = {} if difficulty is None else {"m": float(difficulty[i])}
        if tagged:
            samples.append({"__key__": f"{i:06d}", "quality.json": json.dumps({"quality": quality, "difficulty": diff}).encode()})
        else:
            samples.append({"__key__": f"{i:06d}", "__quality__": quality, "__difficulty__": diff})
    return samples


class _Samples(IterableDataset):
    """A pipeline source yielding fresh shallow copies of fixed samples (picklable)."""

    def __init__(self, samples: list[dict]) -> None:
        self.samples = samples

    def __iter__(self):
        return (dict(sample) for sample in self.samples)


def _keys(samples: object) -> list[str]:
    return [s["__key__"] for s in samples]  # type: ignore[union-attr]

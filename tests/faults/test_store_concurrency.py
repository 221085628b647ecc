"""Two real processes race to create and fill the same score store: ``store.json`` always names the
dataset whose scores are in it, and the loser gets a clear StoreError instead of mixing its scores in."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import TensorDataset

from qualoader.data import ScoreStore, identify_dataset
from qualoader.metrics import create_metric

ROUNDS = 10

# One process per side runs every round: each waits for the round's go file, then precompute()s its
# own dataset into the round's store. Both start within a millisecond of each other.
_RACER = textwrap.dedent(
    """
    import os, sys, time
    import torch
    from torch.utils.data import TensorDataset
    from qualoader.data import StoreError, precompute
    from qualoader.metrics import create_metric

    side, folder, rounds = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
    images = torch.rand(64, 1, 16, 16, generator=torch.Generator().manual_seed(side))
    dataset, metric = TensorDataset(images), create_metric("contrast")
    print("ready", flush=True)
    for r in range(rounds):
        while not os.path.exists(f"{folder}/go-{r}"):
            time.sleep(0.0005)
        try:
            precompute(dataset, metric, f"{folder}/store-{r}", batch_size=8, progress=False)
            print(f"round {r}: filled", flush=True)
        except StoreError as error:
            print(f"round {r}: refused: {error}", flush=True)
    """
)


def _dataset(side: int) -> TensorDataset:
    return TensorDataset(torch.rand(64, 1, 16, 16, generator=torch.Generator().manual_seed(side)))


@pytest.mark.slow
def test_racing_creators_never_mix_datasets(tmp_path: Path) -> None:
    racers = [
        subprocess.Popen(
            [sys.executable, "-c", _RACER, str(side), str(tmp_path), str(ROUNDS)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for side in (1, 2)
    ]
    try:
        for racer in racers:
            assert racer.stdout is not None and racer.stdout.readline().strip() == "ready"
        for r in range(ROUNDS):
            (tmp_path / f"go-{r}").touch()
            time.sleep(0.3)  # let both finish the round before the next one starts
        outputs = [racer.communicate(timeout=240) for racer in racers]
    finally:
        for racer in racers:
            if racer.poll() is None:
                racer.kill()
    for racer, (_, stderr) in zip(racers, outputs):
        assert racer.returncode == 0, stderr
    metric = create_metric("contrast")
    identities = {side: identify_dataset(_dataset(side)) for side in (1, 2)}
    expected = {side: metric(_dataset(side).tensors[0]).double().numpy() for side in (1, 2)}
    winners = []
    for r in range(ROUNDS):
        lines = [next(line for line in out.splitlines() if line.startswith(f"round {r}:")) for out, _ in outputs]
        store = ScoreStore(tmp_path / f"store-{r}")
        digest = json.loads((tmp_path / f"store-{r}" / "store.json").read_text())["identity"]["digest"]
        (owner,) = [side for side, identity in identities.items() if identity.digest == digest]
        winners.append(owner)
        table = store.table(metric)
        assert table.complete and np.array_equal(table.scores(), expected[owner])  # the scores are the named dataset's
        assert lines[owner - 1].endswith("filled")
        loser = lines[2 - owner]  # the other side found the store made and was refused, its scores never written
        assert "refused: the dataset should be the store's" in loser
    assert len(list(tmp_path.glob("store-*/.tmp-*"))) == 0  # no half-built table left behind

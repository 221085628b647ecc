"""Shared checks of the sampler contract: resumable state, determinism and DistributedSampler-style sharding."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch.utils.data import DistributedSampler

from qualoader.samplers import QualitySampler

#: Feeds one drawn item back to a sampler (e.g. ``sampler.update([item], [loss_of(item)])``).
Feed = Callable[[QualitySampler[Any], Any], None]


def _take(sampler: QualitySampler[Any], count: int | None, feed: Feed | None) -> list[Any]:
    """The next ``count`` items (all with ``None``) of a new iteration, each fed back as soon as it is drawn."""
    items = []
    for item in sampler:
        items.append(item)
        if feed is not None:
            feed(sampler, item)
        if count is not None and len(items) == count:
            break
    return items


def assert_resumes(make: Callable[[], QualitySampler[Any]], epoch: int, stop_after: int, feed: Feed | None = None) -> None:
    """Stopping after ``stop_after`` items, saving and restoring into a new sampler yields the rest.

    With ``feed(sampler, item)``, every item is fed back to the sampler as it is drawn (an online
    sampler's ``update``), and the restored sampler must also go on like the original: its next
    epoch draws what the original's does.
    """
    full = make()
    full.set_epoch(epoch)
    expected = _take(full, None, feed)

    first = make()
    first.set_epoch(epoch)
    iterator = iter(first)
    head = []
    for _ in range(stop_after):
        head.append(next(iterator))
        if feed is not None:
            feed(first, head[-1])
    state = first.state_dict()
    assert {key: state[key] for key in ("epoch", "position", "seed")} == {"epoch": epoch, "position": stop_after, "seed": first.seed}
    online_keys = set() if first.feedback is None else {"online", "epoch_scores"}
    assert set(state) == {"epoch", "position", "seed"} | online_keys

    second = make()
    second.load_state_dict(state)
    assert second.epoch == epoch
    assert head + _take(second, None, feed) == expected
    if feed is None:
        assert list(second) == expected, "after the resumed epoch, a new iteration restarts the epoch from 0"
    else:
        for sampler in (full, second):
            sampler.set_epoch(epoch + 1)
        assert _take(second, None, feed) == _take(full, None, feed), "the restored sampler keeps the original's loss record"


def assert_distributed_contract(make: Callable[..., QualitySampler[Any]], num_replicas: int, drop_last: bool) -> None:
    """Ranks take the positions torch's ``DistributedSampler`` gives them in the single-process draw.

    This implies DistributedSampler's guarantees: equal lengths, ranks disjoint in positions, and
    together covering the whole draw (padded by wrapping around, or trimmed with ``drop_last``).
    """
    single = make(num_replicas=1, rank=0, drop_last=drop_last)
    draw = list(single)
    ranks = [make(num_replicas=num_replicas, rank=rank, drop_last=drop_last) for rank in range(num_replicas)]
    lengths = {len(sampler) for sampler in ranks}
    assert len(lengths) == 1, f"unequal rank lengths {lengths}"
    covered: list[int] = []
    for rank, sampler in enumerate(ranks):
        reference = DistributedSampler(
            range(len(draw)),
            num_replicas=num_replicas,
            rank=rank,
            shuffle=False,
            drop_last=drop_last,
        )
        positions = list(reference)
        assert len(sampler) == len(reference)
        assert list(sampler) == [draw[p] for p in positions]
        covered += positions
    if drop_last:
        assert len(covered) == len(set(covered)) == (len(draw) // num_replicas) * num_replicas
    else:
        assert set(covered) == set(range(len(draw)))
        assert len(covered) - len(draw) < num_replicas


def draws(make: Callable[[], QualitySampler[Any]], epoch: int) -> list[Any]:
    sampler = make()
    sampler.set_epoch(epoch)
    return list(sampler)


def assert_deterministic(make: Callable[[], QualitySampler[Any]]) -> None:
    """Same seed and epoch: same order; another epoch: another order."""
    assert draws(make, 3) == draws(make, 3)
    assert draws(make, 3) != draws(make, 4)

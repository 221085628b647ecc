"""Scaling scoring out: :func:`score_shards_ray` scores a shard set with Ray Data (extra ``ray``)."""

from qualoader.distributed.ray_scoring import score_shards_ray

__all__ = ["score_shards_ray"]

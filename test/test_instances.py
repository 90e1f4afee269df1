"""Instances of a query mask: clustering per group of touching blocks equals clustering the whole."""

from __future__ import annotations

import numpy as np

from langgs_ros.mapping.block_store import block_keys
from langgs_ros.query.instances import cluster_by_region, cluster_points


def _as_sets(clusters: list[np.ndarray]) -> set[frozenset[int]]:
    return {frozenset(c.tolist()) for c in clusters}


def test_clusters_by_region_equal_the_whole_mask_in_any_order():
    rng = np.random.default_rng(3)
    # a bar across three touching 2 m blocks, a box far away, a speck below min_size
    bar = np.c_[rng.uniform(0.5, 5.5, 3000), rng.uniform(1.0, 1.1, 3000), rng.uniform(0.7, 0.75, 3000)]
    box = rng.uniform(0, 0.3, (800, 3)) + [30.0, 30.0, 0.0]
    speck = rng.uniform(0, 0.02, (3, 3)) + [10.0, 0.0, 0.0]
    points = np.concatenate([bar, box, speck]).astype(np.float32)
    blocks = block_keys(points, 2.0)
    grouped = np.argsort(blocks, kind="stable")  # as the engine gathers them: one run per block
    whole = _as_sets(cluster_points(points, 0.05, 10))
    assert len(whole) == 2
    by_region = cluster_by_region(points[grouped], blocks[grouped], 0.05, 10)
    assert _as_sets([grouped[c] for c in by_region]) == whole
    shuffled = rng.permutation(len(points))  # several runs per block
    by_region = cluster_by_region(points[shuffled], blocks[shuffled], 0.05, 10)
    assert _as_sets([shuffled[c] for c in by_region]) == whole
    assert [len(c) for c in by_region] == sorted((len(c) for c in by_region), reverse=True)

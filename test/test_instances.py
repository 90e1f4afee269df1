"""Instances of a query mask: clustering per group of touching blocks equals clustering the whole."""

from __future__ import annotations

import numpy as np

from langgs_ros.mapping.block_store import block_keys
from langgs_ros.query.instances import cluster_by_region, cluster_points, cluster_voxels


def _as_sets(clusters: list[np.ndarray]) -> set[frozenset[int]]:
    return {frozenset(c.tolist()) for c in clusters}


def _scene(rng: np.random.Generator) -> np.ndarray:
    # a bar across three touching 2 m blocks, a box far away, a speck below the least size
    bar = np.c_[rng.uniform(0.5, 5.5, 3000), rng.uniform(1.0, 1.1, 3000), rng.uniform(0.7, 0.75, 3000)]
    box = rng.uniform(0, 0.3, (800, 3)) + [30.0, 30.0, 0.0]
    speck = rng.uniform(0, 0.02, (3, 3)) + [10.0, 0.0, 0.0]
    return np.concatenate([bar, box, speck]).astype(np.float32)


def test_clusters_by_region_equal_the_whole_mask_in_any_order():
    rng = np.random.default_rng(3)
    points = _scene(rng)
    voxels = np.floor(points.astype(np.float64) / 0.05).astype(np.int64)
    blocks = block_keys(points, 2.0)
    whole = cluster_points(points, 0.05, 10)
    assert _as_sets(whole) != set() and len(whole) == 2 and len(whole[0]) == 3000
    shuffled = rng.permutation(len(points))
    by_region = cluster_by_region(voxels[shuffled], blocks[shuffled], np.ones(len(points)), 10)
    assert _as_sets([shuffled[c] for c in by_region]) == _as_sets(whole)
    assert [len(c) for c in by_region] == [3000, 800]


def test_weighted_voxels_cluster_as_their_points():
    """One entry per occupied voxel weighted by its points: the same groups as the points."""
    rng = np.random.default_rng(4)
    points = _scene(rng)
    voxels = np.floor(points.astype(np.float64) / 0.05).astype(np.int64)
    unique, inverse, counts = np.unique(voxels, axis=0, return_inverse=True, return_counts=True)
    by_voxel = cluster_voxels(unique, counts, 10)
    by_point = cluster_points(points, 0.05, 10)
    assert [int(counts[c].sum()) for c in by_voxel] == [len(c) for c in by_point]
    assert _as_sets([np.flatnonzero(np.isin(inverse.reshape(-1), c)) for c in by_voxel]) == _as_sets(by_point)
    # a huge extent is grouped at coarser voxels instead of failing
    far = np.array([[0, 0, 0], [1, 0, 0], [10**6, 10**6, 0]], np.int64)
    assert [c.tolist() for c in cluster_voxels(far, np.ones(3), 1)] == [[0, 1], [2]]

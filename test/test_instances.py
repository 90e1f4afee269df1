"""Instances of a query mask: clustering per group of touching blocks equals clustering the whole."""

from __future__ import annotations

import numpy as np

from langgs_ros.mapping.block_store import block_keys
from langgs_ros.query.instances import cluster_by_region, cluster_points, cluster_voxels, touching_blocks


def _as_sets(clusters: list[np.ndarray]) -> set[frozenset[int]]:
    return {frozenset(c.tolist()) for c in clusters}


def _by_region(voxels: np.ndarray, blocks: np.ndarray, weights: np.ndarray, min_weight: float) -> list[np.ndarray]:
    keys, block_of = np.unique(blocks, return_inverse=True)
    return cluster_by_region(voxels, block_of.reshape(-1), keys, weights, min_weight)


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
    by_region = _by_region(voxels[shuffled], blocks[shuffled], np.ones(len(points)), 10)
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


def test_a_region_too_large_for_one_grid_is_clustered_on_its_own():
    """A mask along a 40 m diagonal (touching blocks, a region of 800^3 voxels) beside small objects:
    the diagonal is grouped at coarser voxels, the objects packed in one grid, none merged."""
    rng = np.random.default_rng(5)
    diagonal = np.repeat(np.arange(0.0, 40.0, 0.02)[:, None], 3, axis=1)
    boxes = [rng.uniform(0, 0.2, (300, 3)) + offset for offset in ([60.0, 0, 0], [60.5, 0, 0], [0, 60.0, 0])]
    points = np.concatenate([diagonal, *boxes]).astype(np.float32)
    voxels = np.floor(points.astype(np.float64) / 0.05).astype(np.int64)
    clusters = _by_region(voxels, block_keys(points, 2.0), np.ones(len(points)), 10)
    starts = np.cumsum([0, len(diagonal), 300, 300])
    assert [len(c) for c in clusters] == [len(diagonal), 300, 300, 300]
    assert set(clusters[0].tolist()) == set(range(len(diagonal)))
    assert _as_sets(clusters[1:]) == {frozenset(range(a, a + 300)) for a in starts[1:]}


def test_touching_blocks_on_a_grid_and_far_apart():
    """Blocks join when their coordinates differ by at most one, diagonals included; blocks too far
    apart for one grid are grouped the same way."""
    coords = np.array([[0, 0, 0], [1, 1, 1], [3, 0, 0], [2, 1, 0], [10, 0, 0]])
    for shift in (0, 10**6):
        spread = coords * np.array([1 + shift, 1, 1]) if shift else coords
        region = touching_blocks(spread)
        if shift:  # x a million apart: none touch (the sparse fallback)
            assert len(set(region.tolist())) == len(coords)
        else:
            assert region[0] == region[1] == region[2] == region[3] != region[4]
    far_pairs = np.array([[0, 0, 0], [1, 0, 0], [5 * 10**6, 0, 0], [5 * 10**6 + 1, 1, 0]])
    assert touching_blocks(far_pairs).tolist() == [0, 0, 1, 1]


def test_regions_that_fit_alone_but_not_together_are_labelled_in_turn():
    """Two 13 m diagonals far apart: each region's grid fits, both side by side do not."""
    line = np.repeat(np.arange(0.0, 13.0, 0.02)[:, None], 3, axis=1)
    points = np.concatenate([line, line + [100.0, 0, 0]]).astype(np.float32)
    voxels = np.floor(points.astype(np.float64) / 0.05).astype(np.int64)
    clusters = _by_region(voxels, block_keys(points, 2.0), np.ones(len(points)), 10)
    assert _as_sets(clusters) == {frozenset(range(len(line))), frozenset(range(len(line), 2 * len(line)))}


def test_a_sparse_mask_split_by_coarse_cells_clusters_as_the_whole():
    """Small boxes (some overlapping, some a voxel apart diagonally) scattered over a 6 m room of
    touching blocks: the regions' grids are large, so coarse cells split them first; the groups
    are those of one labelling of the whole."""
    rng = np.random.default_rng(6)
    corners = rng.uniform([0, 0, 0], [5.8, 5.8, 1.8], (40, 3))
    corners[1] = corners[0] + 0.12  # overlapping the first
    corners[3] = corners[2] + [0.2, 0.2, 0.2]  # a corner voxel apart from the third (diagonal)
    points = np.concatenate([c + rng.uniform(0, 0.15, (60, 3)) for c in corners] +
                            [corners[2][None, :] + 0.17]).astype(np.float32)  # the diagonal link
    voxels = np.floor(points.astype(np.float64) / 0.05).astype(np.int64)
    weights = rng.integers(1, 4, len(points)).astype(np.float64)
    whole = cluster_voxels(voxels, weights, 30)
    by_region = _by_region(voxels, block_keys(points, 2.0), weights, 30)
    assert _as_sets(by_region) == _as_sets(whole) and 5 < len(whole) < 40
    heaviest_first = sorted((float(weights[c].sum()) for c in whole), reverse=True)
    assert [float(weights[c].sum()) for c in by_region] == heaviest_first

"""3D instances of a relevance mask by voxel connected components."""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from langgs_ros.geometry import column_bounds

__all__ = ["cluster_points", "cluster_by_region"]

_MAX_CELLS = 32_000_000


def cluster_points(points: np.ndarray, voxel_m: float, min_size: int) -> list[np.ndarray]:
    """Indices of ``points`` [M, 3] grouped by 26-connected occupied voxels of size ``voxel_m``.

    Clusters with fewer than ``min_size`` points are dropped; the rest are returned largest first.
    A mask spanning a huge volume is clustered with coarser voxels rather than failing.
    """
    if len(points) == 0:
        return []
    voxel = voxel_m
    while True:
        keys = np.floor(points / voxel).astype(np.int64)
        lo, hi, _ = column_bounds(keys)
        keys -= lo
        dims = hi - lo + 1
        if int(np.prod(dims)) <= _MAX_CELLS:
            break
        voxel *= 2
    grid = np.zeros(dims, dtype=bool)
    grid[keys[:, 0], keys[:, 1], keys[:, 2]] = True
    labels, n = ndimage.label(grid, structure=np.ones((3, 3, 3), bool))
    point_label = labels[keys[:, 0], keys[:, 1], keys[:, 2]]
    # a stable sort of <= 16-bit labels is a radix sort
    order = np.argsort(point_label.astype(np.uint16) if n < 65535 else point_label, kind="stable")
    bounds = np.searchsorted(point_label[order], np.arange(1, n + 2))
    clusters = [order[bounds[i] : bounds[i + 1]] for i in range(n)]
    clusters = [c for c in clusters if c.size >= min_size]
    return sorted(clusters, key=len, reverse=True)


def cluster_by_region(points: np.ndarray, blocks: np.ndarray, voxel_m: float, min_size: int) -> list[np.ndarray]:
    """:func:`cluster_points` of ``points`` [M, 3] run separately on each group of touching map
    blocks (``blocks``: the int64 block key of each point; blocks touch when their coordinates
    differ by at most one): a mask spread over a building is clustered in small grids, never one
    the size of the building. Same result: 26-connected voxels never span blocks that do not touch.
    ``points`` are expected grouped by block (as gathered), though any order gives the same clusters."""
    if len(points) == 0:
        return []
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    from langgs_ros.mapping.block_store import key_coords

    # the mask is gathered block by block: one run of equal keys per block, found without a sort
    starts = np.flatnonzero(np.r_[True, blocks[1:] != blocks[:-1]])
    run_keys = blocks[starts]
    keys, run_block = np.unique(run_keys, return_inverse=True)
    coords = key_coords(keys)
    near = np.all(np.abs(coords[:, None, :] - coords[None, :, :]) <= 1, axis=2)
    i, j = np.nonzero(near)
    _, group = connected_components(coo_matrix((np.ones(i.size), (i, j)), shape=(keys.size, keys.size)), directed=False)
    run_group = group[run_block]
    run_ends = np.append(starts[1:], len(blocks))
    clusters = []
    for g in np.unique(run_group):
        runs = np.flatnonzero(run_group == g)
        members = np.concatenate([np.arange(starts[r], run_ends[r]) for r in runs])
        clusters += [members[c] for c in cluster_points(points[members], voxel_m, min_size)]
    return sorted(clusters, key=len, reverse=True)

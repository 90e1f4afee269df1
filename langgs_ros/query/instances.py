"""3D instances of a relevance mask by voxel connected components."""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from langgs_ros.geometry import column_bounds

__all__ = ["cluster_points", "cluster_voxels", "cluster_by_region"]

_MAX_CELLS = 32_000_000


def cluster_voxels(voxels: np.ndarray, weights: np.ndarray, min_weight: float) -> list[np.ndarray]:
    """Indices of ``voxels`` [M, 3] (int64 voxel coordinates; repeats allowed) grouped by
    26-connected occupied voxels. Groups whose ``weights`` [M] sum below ``min_weight`` are
    dropped; the rest are returned heaviest first. A set spanning a huge volume is grouped at
    coarser voxels (coordinates halved) rather than failing."""
    if len(voxels) == 0:
        return []
    keys = np.asarray(voxels, np.int64)
    while True:
        lo, hi, _ = column_bounds(keys)
        dims = hi - lo + 1
        if int(np.prod(dims)) <= _MAX_CELLS:
            break
        keys = keys // 2  # floor(p / 2v) = floor(floor(p / v) / 2)
    keys = keys - lo
    grid = np.zeros(dims, dtype=bool)
    grid[keys[:, 0], keys[:, 1], keys[:, 2]] = True
    labels, n = ndimage.label(grid, structure=np.ones((3, 3, 3), bool))
    label = labels[keys[:, 0], keys[:, 1], keys[:, 2]]
    # a stable sort of <= 16-bit labels is a radix sort
    order = np.argsort(label.astype(np.uint16) if n < 65535 else label, kind="stable")
    bounds = np.searchsorted(label[order], np.arange(1, n + 2))
    weight = np.add.reduceat(np.asarray(weights, np.float64)[order], bounds[:-1]) if n else np.zeros(0)
    weight[bounds[1:] == bounds[:-1]] = 0.0  # reduceat of an empty range gives an element, not 0
    keep = [i for i in np.argsort(-weight, kind="stable") if weight[i] >= min_weight and bounds[i + 1] > bounds[i]]
    return [order[bounds[i] : bounds[i + 1]] for i in keep]


def cluster_points(points: np.ndarray, voxel_m: float, min_size: int) -> list[np.ndarray]:
    """Indices of ``points`` [M, 3] (m) grouped by 26-connected occupied voxels of size ``voxel_m``;
    groups of fewer than ``min_size`` points dropped, the rest largest first."""
    if len(points) == 0:
        return []
    voxels = np.floor(np.asarray(points, np.float64) / voxel_m).astype(np.int64)
    return cluster_voxels(voxels, np.ones(len(points)), min_size)


def cluster_by_region(voxels: np.ndarray, blocks: np.ndarray, weights: np.ndarray,
                      min_weight: float) -> list[np.ndarray]:
    """:func:`cluster_voxels` run separately on each group of touching map blocks (``blocks``: the
    int64 block key of each voxel; blocks touch when their coordinates differ by at most one): a
    mask spread over a building is clustered in small grids, never one the size of the building.
    Same result: 26-connected voxels never span blocks that do not touch. Heaviest first."""
    if len(voxels) == 0:
        return []
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    from langgs_ros.mapping.block_store import key_coords

    keys, inverse = np.unique(blocks, return_inverse=True)
    coords = key_coords(keys)
    near = np.all(np.abs(coords[:, None, :] - coords[None, :, :]) <= 1, axis=2)
    i, j = np.nonzero(near)
    _, group = connected_components(coo_matrix((np.ones(i.size), (i, j)), shape=(keys.size, keys.size)), directed=False)
    member_group = group[inverse.reshape(-1)]
    order = np.argsort(member_group, kind="stable")
    bounds = np.searchsorted(member_group[order], np.arange(group.max() + 2))
    clusters = []
    for g in range(group.max() + 1):
        members = order[bounds[g] : bounds[g + 1]]
        if members.size:
            clusters += [members[c] for c in cluster_voxels(voxels[members], weights[members], min_weight)]
    total = [float(np.sum(weights[c])) for c in clusters]
    return [clusters[i] for i in np.argsort(-np.asarray(total), kind="stable")]

"""3D instances of a relevance mask by voxel connected components."""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from langgs_ros.geometry import column_bounds

__all__ = ["cluster_points"]

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

"""3D instances of a relevance mask by voxel connected components."""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from langgs_ros.geometry import column_bounds

__all__ = ["cluster_points", "cluster_voxels", "cluster_by_region", "touching_blocks"]

_MAX_CELLS = 32_000_000


def _label(keys: np.ndarray, dims: np.ndarray) -> tuple[np.ndarray, int]:
    """26-connected component label (1..n) of each of ``keys`` [M, 3] (voxel coordinates within a
    grid of ``dims``), and n."""
    grid = np.zeros(dims, dtype=bool)
    grid[keys[:, 0], keys[:, 1], keys[:, 2]] = True
    labels, n = ndimage.label(grid, structure=np.ones((3, 3, 3), bool))
    return labels[keys[:, 0], keys[:, 1], keys[:, 2]], int(n)


def _groups(label: np.ndarray, n: int, weights: np.ndarray) -> tuple[list[np.ndarray], np.ndarray]:
    """Indices of ``label`` (1..n) grouped by label in label order, and each group's weight sum."""
    # a stable sort of <= 16-bit labels is a radix sort
    order = np.argsort(label.astype(np.uint16) if n < 65535 else label, kind="stable")
    bounds = np.searchsorted(label[order], np.arange(1, n + 2))
    weight = np.add.reduceat(np.asarray(weights, np.float64)[order], bounds[:-1]) if n else np.zeros(0)
    present = bounds[1:] > bounds[:-1]
    weight[~present] = 0.0  # reduceat of an empty range gives an element, not 0
    keep = np.flatnonzero(present)
    return [order[bounds[i] : bounds[i + 1]] for i in keep], weight[keep]


def _heaviest_first(groups: list[np.ndarray], weights: np.ndarray, min_weight: float) -> list[np.ndarray]:
    """``groups`` (ascending indices) weighing at least ``min_weight``, heaviest first; ties: the
    group with the lowest index first (an order that does not depend on how they were labelled)."""
    first = np.array([g[0] for g in groups], np.int64)
    return [groups[i] for i in np.lexsort((first, -np.asarray(weights, np.float64))) if weights[i] >= min_weight]


def _label_fitting(keys: np.ndarray) -> tuple[np.ndarray, int]:
    """:func:`_label` of ``keys`` [M, 3] (int64, M >= 1) in their bounding grid; a grid over
    ``_MAX_CELLS`` is made coarser (coordinates halved) until it fits."""
    keys = np.asarray(keys, np.int64)
    while True:
        lo, hi, _ = column_bounds(keys)
        dims = hi - lo + 1
        if int(np.prod(dims)) <= _MAX_CELLS:
            return _label(keys - lo, dims)
        keys = keys // 2  # floor(p / 2v) = floor(floor(p / v) / 2)


def cluster_voxels(voxels: np.ndarray, weights: np.ndarray, min_weight: float) -> list[np.ndarray]:
    """Indices of ``voxels`` [M, 3] (int64 voxel coordinates; repeats allowed) grouped by
    26-connected occupied voxels. Groups whose ``weights`` [M] sum below ``min_weight`` are
    dropped; the rest are returned heaviest first (ties: lowest index first). A set spanning a huge volume is grouped at
    coarser voxels (coordinates halved) rather than failing."""
    if len(voxels) == 0:
        return []
    return _heaviest_first(*_groups(*_label_fitting(voxels), weights), min_weight)


def cluster_points(points: np.ndarray, voxel_m: float, min_size: int) -> list[np.ndarray]:
    """Indices of ``points`` [M, 3] (m) grouped by 26-connected occupied voxels of size ``voxel_m``;
    groups of fewer than ``min_size`` points dropped, the rest largest first."""
    if len(points) == 0:
        return []
    voxels = np.floor(np.asarray(points, np.float64) / voxel_m).astype(np.int64)
    return cluster_voxels(voxels, np.ones(len(points)), min_size)


def touching_blocks(coords: np.ndarray) -> np.ndarray:
    """[B] region index (0..) of each block of ``coords`` [B, 3] (distinct integer block
    coordinates): blocks are in one region when a chain of blocks whose coordinates differ by at
    most one joins them (26-connected)."""
    lo, hi, _ = column_bounds(coords)
    dims = hi - lo + 1
    if int(np.prod(dims)) <= _MAX_CELLS:
        label, _ = _label(coords - lo, dims)
        return np.unique(label, return_inverse=True)[1].reshape(-1)
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    near = np.all(np.abs(coords[:, None, :] - coords[None, :, :]) <= 1, axis=2)
    i, j = np.nonzero(near)
    n = len(coords)
    return connected_components(coo_matrix((np.ones(i.size), (i, j)), shape=(n, n)), directed=False)[1]


_SMALL_GRID = 1 << 16
"""A batch of regions may always grow to this many voxels, whatever its waste."""
_COARSE = 8
"""Voxels per side of the coarse cells whose connected groups bound a sparse mask's labelling grids."""
_DIRECT_GRID = 1 << 18
"""Grid voxels up to which regions are labelled without first grouping coarse cells (about 2 ms)."""


def _components(keys: np.ndarray, region: np.ndarray, refine: int = 0) -> tuple[np.ndarray, int]:
    """[M] component id (0..n-1) of each of ``keys`` [M, 3] (int64 coordinates, repeats allowed)
    under 26-connectivity, and n, given ``region`` [M]: an id that connected keys share. Each
    region is labelled in its bounding grid, in few calls: its axes turned so its longest extent
    comes first (connectivity does not depend on the axes' order), regions laid side by side along
    it, a voxel apart, in grids of at most ``_MAX_CELLS`` that hold at most twice their regions'
    own volume (a region larger than that alone is labelled at coarser voxels). ``refine`` > 0:
    where the regions' grids would exceed ``_DIRECT_GRID`` voxels, the regions are first split
    into the connected groups of cells of ``refine`` keys a side (a sparse mask's grids shrink)."""
    order = np.argsort(region, kind="stable")
    keys, region = keys.take(order, axis=0), region.take(order)
    starts = np.flatnonzero(np.r_[True, region[1:] != region[:-1]])
    lo, hi = np.minimum.reduceat(keys, starts, axis=0), np.maximum.reduceat(keys, starts, axis=0)
    if refine and np.prod((hi - lo + 1).astype(np.float64), axis=1).sum() > _DIRECT_GRID:
        near, _ = _components(keys // refine, region)
        sub = np.argsort(near, kind="stable")
        keys, order = keys.take(sub, axis=0), order.take(sub)
        region = near.take(sub)
        starts = np.flatnonzero(np.r_[True, region[1:] != region[:-1]])
        lo, hi = np.minimum.reduceat(keys, starts, axis=0), np.maximum.reduceat(keys, starts, axis=0)
    ends = np.r_[starts[1:], len(order)]
    axes = np.argsort(-(hi - lo), axis=1, kind="stable")  # each region's axes, longest first
    dims = np.take_along_axis(hi - lo + 1, axes, axis=1)
    component = np.empty(len(order), np.int64)
    count = 0

    def label(batch: list[int]) -> None:
        nonlocal count
        if len(batch) == len(starts):
            batch, rows = list(range(len(starts))), np.arange(len(order))
        else:
            rows = np.concatenate([np.arange(starts[r], ends[r]) for r in batch])
        offset = np.cumsum(np.r_[0, dims[batch[:-1], 0] + 1])
        shape = np.array([offset[-1] + dims[batch[-1], 0], dims[batch, 1].max(), dims[batch, 2].max()])
        repeat = ends[batch] - starts[batch]
        local = np.take_along_axis(keys.take(rows, axis=0) - np.repeat(lo[batch], repeat, axis=0),
                                   np.repeat(axes[batch], repeat, axis=0), axis=1)
        local[:, 0] += np.repeat(offset, repeat)
        found, n = _label(local, shape)
        component[order.take(rows)] = found - 1 + count
        count += n

    # regions by cross-section, largest first, so a batch's grid is mostly its regions' own volume
    d = dims.astype(np.float64).tolist()
    batch: list[int] = []
    length = across_1 = across_2 = own = 0.0
    for r in sorted(range(len(starts)), key=lambda r: -d[r][1] * d[r][2]):
        d0, d1, d2 = d[r]
        if d0 * d1 * d2 > _MAX_CELLS:  # too large for one grid: on its own, at coarser voxels
            found, n = _label_fitting(keys[starts[r]:ends[r]])
            component[order[starts[r]:ends[r]]] = found - 1 + count
            count += n
            continue
        grid = (length + d0 + 1) * max(across_1, d1) * max(across_2, d2)
        if batch and (grid > _MAX_CELLS or grid > max(2 * (own + (d0 + 1) * d1 * d2), _SMALL_GRID)):
            label(batch)
            batch, length, across_1, across_2, own = [], 0.0, 0.0, 0.0, 0.0
        batch.append(r)
        length, across_1, across_2 = length + d0 + 1, max(across_1, d1), max(across_2, d2)
        own += (d0 + 1) * d1 * d2
    if batch:
        label(batch)
    return component, count


def cluster_by_region(voxels: np.ndarray, block_of: np.ndarray, block_keys: np.ndarray, weights: np.ndarray,
                      min_weight: float) -> list[np.ndarray]:
    """:func:`cluster_voxels` of a mask spread over a building, in grids around its parts, never
    one the size of the building (``block_of``: the index into ``block_keys``, distinct int64 block
    keys, of each voxel's block). 26-connected voxels never span blocks that do not touch (whose
    coordinates differ by more than one), nor coarse cells (``_COARSE`` voxels a side) that do not:
    the groups of touching blocks bound the labelling, and where their grids are large, the groups
    of touching coarse cells within them (:func:`_components`), so a sparse mask is labelled in
    small grids.
    Same result as :func:`cluster_voxels` on the whole. Heaviest first (ties: the group with the
    lowest index first); each group's indices ascending."""
    if len(voxels) == 0:
        return []
    from langgs_ros.mapping.block_store import key_coords

    voxels = np.asarray(voxels, np.int64)
    region = touching_blocks(key_coords(block_keys))[block_of]
    component, n = _components(voxels, region, refine=_COARSE)
    return _heaviest_first(*_groups(component + 1, n, weights), min_weight)

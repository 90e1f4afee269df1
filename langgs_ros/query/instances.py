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
    return [groups[i] for i in np.argsort(-np.asarray(weights, np.float64), kind="stable") if weights[i] >= min_weight]


def cluster_voxels(voxels: np.ndarray, weights: np.ndarray, min_weight: float) -> list[np.ndarray]:
    """Indices of ``voxels`` [M, 3] (int64 voxel coordinates; repeats allowed) grouped by
    26-connected occupied voxels. Groups whose ``weights`` [M] sum below ``min_weight`` are
    dropped; the rest are returned heaviest first. A set spanning a huge volume is grouped at
    coarser voxels (coordinates halved) rather than failing."""
    groups, weight = _cluster_voxels(voxels, weights)
    return _heaviest_first(groups, weight, min_weight)


def _cluster_voxels(voxels: np.ndarray, weights: np.ndarray) -> tuple[list[np.ndarray], np.ndarray]:
    """:func:`cluster_voxels`'s groups in label order with their weights, none dropped."""
    if len(voxels) == 0:
        return [], np.zeros(0)
    keys = np.asarray(voxels, np.int64)
    while True:
        lo, hi, _ = column_bounds(keys)
        dims = hi - lo + 1
        if int(np.prod(dims)) <= _MAX_CELLS:
            break
        keys = keys // 2  # floor(p / 2v) = floor(floor(p / v) / 2)
    return _groups(*_label(keys - lo, dims), weights)


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


def cluster_by_region(voxels: np.ndarray, block_of: np.ndarray, block_keys: np.ndarray, weights: np.ndarray,
                      min_weight: float) -> list[np.ndarray]:
    """:func:`cluster_voxels` of each group of touching map blocks (``block_of``: the index into
    ``block_keys``, distinct int64 block keys, of each voxel's block; blocks touch when their
    coordinates differ by at most one): a mask spread over a building is clustered in grids of its
    regions, never one the size of the building. The regions' grids are laid side by side, a voxel
    apart, in one grid (up to ``_MAX_CELLS``) and labelled at once. Same result: 26-connected
    voxels never span blocks that do not touch. Heaviest first; each group's indices ascending."""
    if len(voxels) == 0:
        return []
    from langgs_ros.mapping.block_store import key_coords

    region = touching_blocks(key_coords(block_keys))[block_of]
    order = np.argsort(region, kind="stable")
    vox, region = np.asarray(voxels, np.int64).take(order, axis=0), region.take(order)
    starts = np.flatnonzero(np.r_[True, region[1:] != region[:-1]])
    ends = np.r_[starts[1:], len(order)]
    lo, hi = np.minimum.reduceat(vox, starts, axis=0), np.maximum.reduceat(vox, starts, axis=0)
    dims = hi - lo + 1
    volume = np.prod(dims.astype(np.float64), axis=1)

    groups: list[np.ndarray] = []
    weight: list[np.ndarray] = []
    batch: list[int] = []

    def label_batch() -> None:
        """Label the regions of ``batch`` side by side along x in one grid."""
        if not batch:
            return
        offset = np.cumsum(np.r_[0, dims[batch[:-1], 0] + 1])
        shape = np.array([offset[-1] + dims[batch[-1], 0], dims[batch, 1].max(), dims[batch, 2].max()])
        rows = (np.arange(len(order)) if len(batch) == len(starts) else
                np.concatenate([np.arange(starts[r], ends[r]) for r in batch]))
        shift = np.repeat(lo[batch] - np.c_[offset, np.zeros((len(batch), 2), np.int64)], ends[batch] - starts[batch],
                          axis=0)
        found, w = _groups(*_label(vox.take(rows, axis=0) - shift, shape),
                           np.asarray(weights, np.float64).take(order.take(rows)))
        groups.extend(order[rows[g]] for g in found)
        weight.append(w)
        batch.clear()

    # the usual case: every region fits, and all side by side fit, in one grid
    span = dims.astype(np.float64)
    packed = np.cumsum(span[:, 0] + 1) * np.maximum.accumulate(span[:, 1]) * np.maximum.accumulate(span[:, 2])
    if packed[-1] <= _MAX_CELLS:
        batch.extend(range(len(starts)))
    else:
        for r in range(len(starts)):
            if volume[r] > _MAX_CELLS:  # too large for one grid: on its own, at coarser voxels
                label_batch()
                found, w = _cluster_voxels(vox[starts[r]:ends[r]], np.asarray(weights)[order[starts[r]:ends[r]]])
                groups.extend(order[starts[r] + g] for g in found)
                weight.append(w)
                continue
            more = batch + [r]
            if (dims[more, 0] + 1).sum() * dims[more, 1].max() * dims[more, 2].max() > _MAX_CELLS:
                label_batch()
            batch.append(r)
    label_batch()
    return _heaviest_first(groups, np.concatenate(weight) if weight else np.zeros(0), min_weight)

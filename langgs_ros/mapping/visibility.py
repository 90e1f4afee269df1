"""Visibility of the map in a keyframe: which Gaussians explain its depth, which lie in the free
space it observed (seen through) or a little in front of its surface. Depth along the optical
axis, metres; pixels of the keyframe's image, sampled on its Gaussian grid (``pixel_stride``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.ndimage import minimum_filter

from langgs_ros.geometry import invert_transform
from langgs_ros.mapping.feedforward import PixelGaussians
from langgs_ros.types import Frame

__all__ = ["Visibility", "map_visibility"]


@dataclass
class Visibility:
    """Where the map's Gaussians lie relative to one view's observed depth (rows of the means given
    to :func:`map_visibility`: the view's blocks)."""

    visible_idx: np.ndarray  # existing Gaussians that explain a pixel
    visible_u: np.ndarray
    visible_v: np.ndarray
    covered: np.ndarray  # [rows*cols] bool
    seen_through: np.ndarray  # existing Gaussians in observed free space
    in_front: np.ndarray  # existing Gaussians a little (1 to 3 tolerances) in front of the observed surface

    def disagreement(self, counted: np.ndarray) -> float:
        """Fraction of the ``counted`` Gaussians (bool per map row) this view meets (explains or sees
        through) that it sees through: near 0 where view and map agree, a few percent where an
        object moved, more where the pose is off."""
        through = int(np.count_nonzero(counted[self.seen_through]))
        met = through + int(np.count_nonzero(counted[self.visible_idx]))
        return through / met if met else 0.0


def map_visibility(means: np.ndarray, frame: Frame, px: PixelGaussians, surface_tolerance: float,
                   filled_cells: np.ndarray | None = None, tolerance_per_m: float = 0.0) -> Visibility:
    """Which of the Gaussians at ``means`` [N, 3] (fixed frame) explain a cell's depth d in ``frame``
    (within max(``surface_tolerance``, ``tolerance_per_m`` x d) x d, at least 1 cm: stereo depth
    errors grow with d squared), and which lie in free space in front of it (``filled_cells``:
    plane-filled depth, no free-space evidence)."""
    grid, K = px.grid, frame.intrinsics
    empty = np.zeros(0, np.int64)
    covered = np.zeros(grid.rows * grid.cols, bool)
    if len(means) == 0:
        return Visibility(empty, empty, empty, covered, empty, empty)
    T = invert_transform(frame.T_world_cam).astype(np.float32)
    # depth first: part of the view's blocks is behind or beside the camera, so project only the rest
    z = means @ T[2, :3] + T[2, 3]
    front = np.flatnonzero(z > 1e-3)
    ahead = means[front]
    z = z[front]
    # matrix-vector products: numpy's [N, 3] @ [3, 2] is far slower than two of them
    u = (ahead @ T[0, :3] + T[0, 3]) / z * np.float32(K.fx) + np.float32(K.cx)
    v = (ahead @ T[1, :3] + T[1, 3]) / z * np.float32(K.fy) + np.float32(K.cy)
    inside = (u >= 0) & (v >= 0) & (u < grid.cols * grid.stride) & (v < grid.rows * grid.stride)
    idx, u, v, z = front[inside], u[inside], v[inside], z[inside]
    inv = np.float32(1.0 / grid.stride)
    # u, v >= 0: truncation is floor, and much faster than //; the clip guards float rounding
    col = np.minimum((u * inv).astype(np.int64), grid.cols - 1)
    row = np.minimum((v * inv).astype(np.int64), grid.rows - 1)
    cell = row * grid.cols + col
    d = px.depth.reshape(-1)[cell]
    d0 = np.nan_to_num(d)
    tol = np.maximum(0.01, np.maximum(surface_tolerance, tolerance_per_m * d0) * d0)
    with np.errstate(invalid="ignore"):
        visible = np.abs(z - d) < tol
        # nearest observed surface around the pixel; holes (NaN) give no free-space evidence
        measured = np.nan_to_num(px.depth, nan=0.0)
        if filled_cells is not None:
            measured[filled_cells.reshape(measured.shape)] = 0.0
        near = minimum_filter(measured, size=3).reshape(-1)[cell]
        in_front = (z < near - tol) & (near > 0)
        seen_through = in_front & (z < near - 3 * tol)
    covered[cell[visible]] = True
    # semantics are read where the depth was: at the cell's sample pixel
    half = grid.stride // 2
    ui = col[visible] * grid.stride + half
    vi = row[visible] * grid.stride + half
    return Visibility(idx[visible], ui, vi, covered, idx[seen_through], idx[in_front & ~seen_through])

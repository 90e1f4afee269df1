"""Visibility of the map in a keyframe: which Gaussians explain its depth, which lie in the free
space it observed (seen through) or a little in front of its surface. Depth along the optical
axis, metres; pixels of the keyframe's image, sampled on its Gaussian grid (``pixel_stride``).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

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
    T = invert_transform(frame.T_world_cam)[:3].astype(np.float32)
    # nearest observed surface around each cell; holes (NaN, or plane fills) give no free-space evidence
    measured = np.nan_to_num(px.depth, nan=0.0).astype(np.float32)
    if filled_cells is not None:
        measured[filled_cells.reshape(measured.shape)] = 0.0
    near = cv2.erode(measured, np.ones((3, 3), np.uint8), borderType=cv2.BORDER_REPLICATE).reshape(-1)
    code = np.empty(len(means), np.int8)
    cells = np.empty(len(means), np.int32)
    _classify_kernel()(np.ascontiguousarray(means, np.float32), T, np.float32(K.fx), np.float32(K.fy),
                       np.float32(K.cx), np.float32(K.cy), grid.stride, grid.rows, grid.cols,
                       np.ascontiguousarray(px.depth.reshape(-1), np.float32), near, np.float32(surface_tolerance),
                       np.float32(tolerance_per_m), code, cells)
    visible_idx = np.flatnonzero(code == _VISIBLE)
    cell = cells[visible_idx]
    covered[cell] = True
    # semantics are read where the depth was: at the cell's sample pixel
    half = grid.stride // 2
    ui = (cell % grid.cols).astype(np.int64) * grid.stride + half
    vi = (cell // grid.cols).astype(np.int64) * grid.stride + half
    return Visibility(visible_idx, ui, vi, covered, np.flatnonzero(code == _SEEN_THROUGH),
                      np.flatnonzero(code == _IN_FRONT))


_NONE, _VISIBLE, _IN_FRONT, _SEEN_THROUGH = 0, 1, 2, 3
_KERNEL = None


def _classify_kernel():  # noqa: ANN202 - a numba dispatcher
    """The per-Gaussian loop of :func:`map_visibility`, compiled by numba on first use (cached on
    disk). One pass over the view's Gaussians with no temporaries: in numpy the same test took a
    dozen passes over arrays of the view's size (27 ms for 470k Gaussians on 2 cores, against 2 ms
    here), and it is the hottest loop of mapping."""
    global _KERNEL
    if _KERNEL is None:
        try:
            from numba import njit
        except ImportError as exc:  # a dependency of the package: only a broken install gets here
            raise ImportError("langgs_ros needs numba for mapping (pip install numba)") from exc

        @njit(cache=True, nogil=True)
        def classify(means, T, fx, fy, cx, cy, stride, rows, cols, depth, near, surface_tol,  # noqa: ANN001, ANN202
                     tol_per_m, code, cells):
            width, height = cols * stride, rows * stride
            inv = np.float32(1.0) / np.float32(stride)
            for i in range(means.shape[0]):
                code[i] = _NONE
                x, y, zw = means[i, 0], means[i, 1], means[i, 2]
                z = T[2, 0] * x + T[2, 1] * y + T[2, 2] * zw + T[2, 3]
                if not z > 1e-3:  # behind the camera (or NaN)
                    continue
                u = (T[0, 0] * x + T[0, 1] * y + T[0, 2] * zw + T[0, 3]) / z * fx + cx
                v = (T[1, 0] * x + T[1, 1] * y + T[1, 2] * zw + T[1, 3]) / z * fy + cy
                if not (u >= 0 and v >= 0 and u < width and v < height):
                    continue
                c = min(int(v * inv), rows - 1) * cols + min(int(u * inv), cols - 1)
                d = depth[c]
                d0 = d if d == d else np.float32(0.0)
                tol = max(np.float32(0.01), max(surface_tol, tol_per_m * d0) * d0)
                if abs(z - d) < tol:  # False for a NaN depth
                    code[i] = _VISIBLE
                    cells[i] = c
                    continue
                nr = near[c]
                if nr > 0 and z < nr - tol:
                    code[i] = _SEEN_THROUGH if z < nr - 3 * tol else _IN_FRONT

        _KERNEL = classify
    return _KERNEL

"""Feed-forward, pixel-aligned Gaussians from one posed RGB-D keyframe.

One candidate Gaussian per ``stride`` x ``stride`` block (sampled at the block's centre pixel):
mean = back-projected depth, rotation from the depth normal (local z = normal), scale from the
pixel footprint (tangent std = half the block's footprint, normal std a tenth of it), colour from
the image.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from langgs_ros.geometry import quat_wxyz_from_normals
from langgs_ros.types import Frame

__all__ = ["CellGrid", "PixelGaussians", "pixel_gaussians"]


@dataclass(frozen=True)
class CellGrid:
    """The block grid of an image: cell (r, c) covers pixels [r*s, (r+1)*s) x [c*s, (c+1)*s)."""

    stride: int
    rows: int
    cols: int

    @classmethod
    def of(cls, height: int, width: int, stride: int) -> CellGrid:
        return cls(stride=stride, rows=height // stride, cols=width // stride)

    def sample_pixels(self) -> tuple[np.ndarray, np.ndarray]:
        """Integer pixel (u, v) grids [rows, cols] of the cell centres."""
        half = self.stride // 2
        u = np.arange(self.cols) * self.stride + half
        v = np.arange(self.rows) * self.stride + half
        return np.meshgrid(u, v)


@dataclass
class PixelGaussians:
    """Candidate Gaussians of a keyframe on its cell grid (arrays over valid cells)."""

    grid: CellGrid
    depth: np.ndarray
    """[rows, cols] float32 depth at the cell centres (NaN invalid), metres."""
    valid: np.ndarray
    """[rows, cols] bool: depth valid."""
    means_world: np.ndarray
    """[rows, cols, 3] float32 means in the fixed frame (NaN where invalid)."""
    normals_world: np.ndarray
    """[rows, cols, 3] float32 unit normals in the fixed frame, facing the camera."""
    tangent_std: np.ndarray
    """[rows, cols] float32 tangent standard deviation, metres."""
    colors: np.ndarray
    """[rows, cols, 3] uint8 RGB."""


def pixel_gaussians(frame: Frame, stride: int) -> PixelGaussians:
    """Candidate Gaussians of ``frame`` (which must have depth) on its stride grid.

    Normals come from differences of the cell point grid (optical frame): central differences,
    one-sided where a neighbour is missing; where both neighbours are missing or across a depth
    jump, the normal faces the camera along the ray.
    """
    assert frame.depth is not None
    K = frame.intrinsics
    grid = CellGrid.of(K.height, K.width, stride)
    u, v = grid.sample_pixels()
    depth = np.ascontiguousarray(frame.depth[v, u], np.float32)
    means = np.empty((grid.rows, grid.cols, 3), np.float32)
    normals = np.empty((grid.rows, grid.cols, 3), np.float32)
    _cell_kernel()(depth, np.float32(K.fx), np.float32(K.fy), np.float32(K.cx), np.float32(K.cy), stride,
                   frame.T_world_cam[:3].astype(np.float32), means, normals)
    focal = 0.5 * (K.fx + K.fy)
    return PixelGaussians(
        grid=grid,
        depth=depth,
        valid=np.isfinite(depth),
        means_world=means,
        normals_world=normals,
        tangent_std=(0.5 * depth * stride / focal).astype(np.float32),
        colors=frame.rgb[v, u],
    )


_KERNEL = None


def _cell_kernel():  # noqa: ANN202 - a numba dispatcher
    """One pass over a keyframe's cells, compiled by numba on first use (cached on disk): point and
    normal in the optical frame, both in the fixed frame. In numpy the same took twenty passes
    over the grid (11 ms at 640x480, stride 2, on 2 busy cores)."""
    global _KERNEL
    if _KERNEL is None:
        from numba import njit

        @njit(cache=True, nogil=True)
        def cells(depth, fx, fy, cx, cy, stride, T, means, normals):  # noqa: ANN001, ANN202
            rows, cols = depth.shape
            half = stride // 2
            nan = np.float32(np.nan)
            pts = np.empty((rows, cols, 3), np.float32)
            for r in range(rows):
                for c in range(cols):
                    z = depth[r, c]
                    pts[r, c, 0] = (np.float32(c * stride + half) - cx) / fx * z
                    pts[r, c, 1] = (np.float32(r * stride + half) - cy) / fy * z
                    pts[r, c, 2] = z
            d = np.empty((2, 3), np.float32)
            for r in range(rows):
                for c in range(cols):
                    z = depth[r, c]
                    if not z == z:  # no depth: NaN, no Gaussian here
                        for k in range(3):
                            means[r, c, k] = nan
                            normals[r, c, k] = nan
                        continue
                    p0, p1, p2 = pts[r, c, 0], pts[r, c, 1], pts[r, c, 2]
                    for axis in range(2):  # 0: along the row (x), 1: along the column (y)
                        ra, ca, rb, cb = (r, c + 1, r, c - 1) if axis == 0 else (r + 1, c, r - 1, c)
                        has_a = ra < rows and ca < cols and depth[ra, ca] == depth[ra, ca]
                        has_b = rb >= 0 and cb >= 0 and depth[rb, cb] == depth[rb, cb]
                        for k in range(3):
                            if has_a and has_b:
                                d[axis, k] = pts[ra, ca, k] - pts[rb, cb, k]
                            elif has_a:
                                d[axis, k] = pts[ra, ca, k] - pts[r, c, k]
                            elif has_b:
                                d[axis, k] = pts[r, c, k] - pts[rb, cb, k]
                            else:
                                d[axis, k] = nan
                    n0 = d[0, 1] * d[1, 2] - d[0, 2] * d[1, 1]
                    n1 = d[0, 2] * d[1, 0] - d[0, 0] * d[1, 2]
                    n2 = d[0, 0] * d[1, 1] - d[0, 1] * d[1, 0]
                    norm = np.sqrt(n0 * n0 + n1 * n1 + n2 * n2)
                    jump = max(abs(d[0, 2]), abs(d[1, 2])) > np.float32(0.15) * z * np.float32(stride / 2) + np.float32(0.02)
                    if norm == norm and norm > 1e-12 and not jump:
                        n0, n1, n2 = n0 / norm, n1 / norm, n2 / norm
                    else:  # facing the camera along the ray
                        ray = np.sqrt(p0 * p0 + p1 * p1 + p2 * p2)
                        n0, n1, n2 = -p0 / ray, -p1 / ray, -p2 / ray
                    if n0 * p0 + n1 * p1 + n2 * p2 > 0:
                        n0, n1, n2 = -n0, -n1, -n2
                    for k in range(3):
                        means[r, c, k] = T[k, 0] * p0 + T[k, 1] * p1 + T[k, 2] * p2 + T[k, 3]
                        normals[r, c, k] = T[k, 0] * n0 + T[k, 1] * n1 + T[k, 2] * n2

        _KERNEL = cells
    return _KERNEL


def gaussian_fields(px: PixelGaussians, cells: np.ndarray, opacity: float) -> dict[str, np.ndarray]:
    """Per-Gaussian base fields (see :mod:`gaussians`) of the flat cell indices ``cells``."""
    tangent = px.tangent_std.reshape(-1)[cells]
    scales = np.stack([tangent, tangent, 0.1 * tangent], axis=1)
    return {
        "means": px.means_world.reshape(-1, 3)[cells],
        "scales": scales.astype(np.float16),
        "quats": quat_wxyz_from_normals(px.normals_world.reshape(-1, 3)[cells]).astype(np.float16),
        "opacity": np.full(cells.size, round(opacity * 255), dtype=np.uint8),
        "colors": px.colors.reshape(-1, 3)[cells],
    }

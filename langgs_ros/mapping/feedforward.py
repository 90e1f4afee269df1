"""Feed-forward, pixel-aligned Gaussians from one posed RGB-D keyframe.

One candidate Gaussian per ``stride`` x ``stride`` block (sampled at the block's centre pixel):
mean = back-projected depth, rotation from the depth normal (local z = normal), scale from the
pixel footprint (tangent std = half the block's footprint, normal std a tenth of it), colour from
the image.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from langgs_ros.geometry import backproject, quat_wxyz_from_normals
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


def _camera_normals(points: np.ndarray, depth: np.ndarray, stride: int) -> np.ndarray:
    """Normals [rows, cols, 3] from differences of the cell point grid (optical frame).

    Central differences, one-sided where a neighbour is missing; where both neighbours are missing
    or across a depth jump, the normal faces the camera along the ray.
    """
    pad = np.pad(points, ((1, 1), (1, 1), (0, 0)), constant_values=np.nan)

    def difference(after: np.ndarray, before: np.ndarray) -> np.ndarray:
        d = after - before
        d = np.where(np.isnan(d), after - points, d)
        return np.where(np.isnan(d), points - before, d)

    dx = difference(pad[1:-1, 2:], pad[1:-1, :-2])
    dy = difference(pad[2:, 1:-1], pad[:-2, 1:-1])
    n = np.cross(dx, dy)
    norm = np.linalg.norm(n, axis=2, keepdims=True)
    jump = np.maximum(np.abs(dx[..., 2]), np.abs(dy[..., 2])) > 0.15 * depth * stride / 2 + 0.02
    ok = np.isfinite(norm[..., 0]) & (norm[..., 0] > 1e-12) & ~jump
    with np.errstate(invalid="ignore", divide="ignore"):
        n = n / norm
    ray = points / np.linalg.norm(points, axis=2, keepdims=True)
    n = np.where(ok[..., None], n, -ray)
    facing = np.sum(n * points, axis=2, keepdims=True) > 0
    return np.where(facing, -n, n).astype(np.float32)


def pixel_gaussians(frame: Frame, stride: int) -> PixelGaussians:
    """Candidate Gaussians of ``frame`` (which must have depth) on its stride grid."""
    assert frame.depth is not None
    K = frame.intrinsics
    grid = CellGrid.of(K.height, K.width, stride)
    u, v = grid.sample_pixels()
    depth = frame.depth[v, u].astype(np.float32)
    valid = np.isfinite(depth)
    points = backproject(u.astype(np.float32), v.astype(np.float32), depth, K)
    normals = _camera_normals(points, depth, stride)
    R = frame.T_world_cam[:3, :3].astype(np.float32)
    t = frame.T_world_cam[:3, 3].astype(np.float32)
    focal = 0.5 * (K.fx + K.fy)
    return PixelGaussians(
        grid=grid,
        depth=depth,
        valid=valid,
        means_world=points @ R.T + t,
        normals_world=normals @ R.T,
        tangent_std=(0.5 * depth * stride / focal).astype(np.float32),
        colors=frame.rgb[v, u],
    )


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

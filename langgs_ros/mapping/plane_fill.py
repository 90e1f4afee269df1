"""Planar hole filling of stereo depth: textureless surfaces that border depths say are planes.

Plane sweep finds no depth inside a textureless region (a plain floor, a wall, the top of a box),
but usually does on its border, where the color changes. The image is cut into regions at color
edges (Canny: a textureless surface has none inside it, so a hole bounded by edges is a candidate
"superpixel"); for each hole, the valid depths on a thin ring around it are lifted to 3D and
candidate planes are tried: a RANSAC fit of the ring, and the floor under the robot (from TF's base
frame) when known. A plane fills the hole only if

* enough of the ring lies on it (``min_agree``; the floor, which objects standing on it occlude,
  needs ``min_agree_floor``, and at most ``max_behind`` of the ring seen beyond it),
* the ring spans an area, not a line (a wall's junction with the floor fits every plane through it),
* every ray of the hole meets it in front of the camera within the depth range.

Edges have gaps, so a hole can leak into a neighbouring surface of another color (from a table top
into the mug standing on it): only the hole's pixels within ``color_tol`` of its median color are
filled. The fraction of the ring on the plane is the fill's confidence; filled pixels are returned so the
map can flag what they make as less certain than measured depth.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from langgs_ros.types import CameraIntrinsics

__all__ = ["PlaneFillConfig", "fill_planar_holes"]


@dataclass
class PlaneFillConfig:
    """Settings of :func:`fill_planar_holes` (pixels at the working scale)."""

    scale: float = 0.5
    """The fill works on images resized by this factor."""
    border_planes: bool = True
    """Try a plane fitted to each hole's border, besides the floor."""
    min_region_px: int = 30
    """Smaller holes are left as they are."""
    ring_px: int = 3
    """Width of the border ring whose depths vote for a plane."""
    min_ring_px: int = 20
    """Holes with fewer valid ring depths are left as they are."""
    tol: float = 0.03
    """A ring depth lies on a plane within this fraction of its depth."""
    min_agree: float = 0.7
    """Fraction of the ring on a fitted plane needed to fill."""
    min_agree_floor: float = 0.3
    """...on the floor plane (objects on the floor occlude the rest of its ring)."""
    max_behind: float = 0.1
    """Most of the ring that may lie behind the floor plane (seen through it: no floor there)."""
    min_spread: float = 0.1
    """Second over first singular value of the ring's points: below it they are a line."""
    max_depth_m: float = 6.0
    """Fills deeper than this are not made."""
    color_tol: int = 20
    """Pixels of a hole whose color differs from its median by more (any channel, 0..255) are not filled."""
    ransac_iterations: int = 64
    canny_low: int = 20
    canny_high: int = 60


def _rays(K: CameraIntrinsics, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """[M, 3] rays (z = 1) of pixels in the optical frame."""
    return np.stack([(cols - K.cx) / K.fx, (rows - K.cy) / K.fy, np.ones(rows.shape)], 1)


def _plane_depth(plane: np.ndarray, rays: np.ndarray) -> np.ndarray:
    """Depth (z) where ``rays`` [M, 3] meet ``plane`` (n, d: n.x + d = 0); NaN if parallel or behind."""
    denom = rays @ plane[:3]
    with np.errstate(divide="ignore", invalid="ignore"):
        z = -plane[3] / denom
    return np.where(np.isfinite(z) & (z > 0), z, np.nan)


def _ransac_plane(points: np.ndarray, tol: float, iterations: int, rng: np.random.Generator) -> np.ndarray | None:
    """Plane (n, d) with most points within ``tol`` x depth of it, refit to its inliers by SVD."""
    if len(points) < 3:
        return None
    idx = rng.integers(0, len(points), (iterations, 3))
    a, b, c = points[idx[:, 0]], points[idx[:, 1]], points[idx[:, 2]]
    n = np.cross(b - a, c - a)
    norm = np.linalg.norm(n, axis=1)
    ok = norm > 1e-9
    if not ok.any():
        return None
    n = n[ok] / norm[ok, None]
    d = -np.einsum("ij,ij->i", n, a[ok])
    dist = np.abs(points @ n.T + d)  # [M, H]
    inliers = dist < tol * points[:, 2:3]
    best = inliers[:, int(inliers.sum(0).argmax())]
    if best.sum() < 3:
        return None
    sel = points[best]
    centre = sel.mean(0)
    normal = np.linalg.svd(sel - centre, full_matrices=False)[2][-1]
    return np.append(normal, -normal @ centre)


def fill_planar_holes(depth: np.ndarray, rgb: np.ndarray, K: CameraIntrinsics,  # noqa: N803
                      floor_in_camera: np.ndarray | None, config: PlaneFillConfig,
                      seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(depth with planar holes filled [H, W] float32 m, filled pixels [H, W] bool).

    ``depth``: [H, W] float32 m, NaN invalid, at ``K``'s size; ``rgb``: [H, W, 3] uint8;
    ``floor_in_camera``: the floor plane (n, d) in the optical frame, or None.
    """
    h, w = depth.shape
    small_k = K.scaled(config.scale) if config.scale != 1.0 else K
    sw, sh = small_k.width, small_k.height
    d = cv2.resize(depth, (sw, sh), interpolation=cv2.INTER_NEAREST)
    color = cv2.resize(rgb, (sw, sh), interpolation=cv2.INTER_AREA)
    gray = cv2.cvtColor(color, cv2.COLOR_RGB2GRAY)
    edges = cv2.dilate(cv2.Canny(gray, config.canny_low, config.canny_high), np.ones((3, 3), np.uint8)) > 0
    valid = np.isfinite(d)
    holes = (~valid & ~edges).astype(np.uint8)
    count, labels, stats, _ = cv2.connectedComponentsWithStats(holes, connectivity=4)
    plane_of = np.full((sh, sw), -1, np.int32)  # index into ``planes`` of each filled pixel
    planes: list[np.ndarray] = []
    rng = np.random.default_rng(seed)
    kernel = np.ones((2 * config.ring_px + 1, 2 * config.ring_px + 1), np.uint8)
    pad = config.ring_px
    for label in range(1, count):
        x, y, bw, bh, area = stats[label]
        if area < config.min_region_px:
            continue
        y0, y1 = max(0, y - pad), min(sh, y + bh + pad)
        x0, x1 = max(0, x - pad), min(sw, x + bw + pad)
        region = labels[y0:y1, x0:x1] == label
        ring = (cv2.dilate(region.astype(np.uint8), kernel) > 0) & valid[y0:y1, x0:x1]
        ring_rows, ring_cols = np.nonzero(ring)
        if ring_rows.size < config.min_ring_px:
            continue
        ring_z = d[y0:y1, x0:x1][ring_rows, ring_cols].astype(np.float64)
        ring_rays = _rays(small_k, ring_rows + y0, ring_cols + x0)
        points = ring_rays * ring_z[:, None]
        spread = np.linalg.svd(points - points.mean(0), compute_uv=False)
        if spread[1] < config.min_spread * spread[0]:
            continue
        rows, cols = np.nonzero(region)
        pixels = color[rows + y0, cols + x0].astype(np.int16)
        same = (np.abs(pixels - np.median(pixels, axis=0)) <= config.color_tol).all(1)
        rows, cols = rows[same], cols[same]
        if rows.size < config.min_region_px:
            continue
        rays = _rays(small_k, rows + y0, cols + x0)
        best: tuple[float, np.ndarray] | None = None
        candidates = []
        if config.border_planes:
            candidates.append((_ransac_plane(points, config.tol, config.ransac_iterations, rng), config.min_agree, 1.0))
        if floor_in_camera is not None:  # a floor may be occluded, but not seen through
            candidates.append((np.asarray(floor_in_camera, np.float64), config.min_agree_floor, config.max_behind))
        for plane, need, most_behind in candidates:
            if plane is None:
                continue
            on_ring = _plane_depth(plane, ring_rays)
            with np.errstate(invalid="ignore"):
                agree = float(np.mean(np.abs(ring_z - on_ring) < config.tol * ring_z))
                behind = float(np.mean(ring_z > on_ring * (1 + config.tol)))
            z = _plane_depth(plane, rays)
            if (agree < need or behind > most_behind or not np.all(np.isfinite(z))
                    or z.max() > config.max_depth_m):
                continue
            if best is None or agree > best[0]:
                best = (agree, plane)
        if best is not None:
            plane_of[rows + y0, cols + x0] = len(planes)
            planes.append(best[1])
    result = depth.copy()
    filled = np.zeros((h, w), bool)
    if not planes:
        return result, filled
    # each filled pixel at full resolution takes its region's plane along its own ray
    plane_full = cv2.resize(plane_of, (w, h), interpolation=cv2.INTER_NEAREST)
    plane_full[np.isfinite(depth)] = -1
    rows, cols = np.nonzero(plane_full >= 0)
    which = plane_full[rows, cols]
    z = np.einsum("ij,ij->i", _rays(K, rows, cols), np.stack(planes)[which, :3])
    with np.errstate(divide="ignore", invalid="ignore"):
        z = -np.stack(planes)[which, 3] / z
    ok = np.isfinite(z) & (z > 0) & (z <= config.max_depth_m)
    result[rows[ok], cols[ok]] = z[ok]
    filled[rows[ok], cols[ok]] = True
    return result, filled

"""Prompts from the keyframe's geometry: one SAM prompt per surface, not a blind grid.

SAM's automatic generator prompts a 32 x 32 grid because it knows nothing about the scene; this
node knows the keyframe's depth and which surfaces the map has labelled already. The keyframe's
depth is cut into geometric segments at depth discontinuities (a jump of more than ``jump`` of the
depth) and at creases (neighbouring normals more than ``crease_deg`` apart): an object standing on
a table is cut from the table top by the crease at its foot and from what lies behind it by the
jump at its silhouette. Each segment gets a prompt at its most interior pixel (the maximum of the
distance transform: SAM's three granularities per prompt then cover the object, its part and what
it is part of); large segments (walls, floors, table tops, more than ``large_frac`` of the image)
get a few more, spread by farthest-point sampling. Segments on new or not-yet-confidently-labelled
surface (``labelled_views`` below ``known_views`` on most of their pixels) come first; labelled ones
get one prompt each while the ``max_prompts`` cap allows. Where depth is missing (a color-only
keyframe's textureless holes, out of range) a sparse grid prompts instead.

Why depth segments rather than the Gaussians a view created: new Gaussians mark only surface the
map had not seen, so an object seen again from a new side, or whose label the map is unsure of,
would get no prompt; depth segments cover everything in view, and ``labelled_views`` orders them.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

__all__ = ["PromptPlan", "depth_edges", "geometric_segments", "plan_prompts"]

_WORK_WIDTH = 320  # the depth is segmented at this width (prompts need no finer placement)


@dataclass
class PromptPlan:
    """Where to prompt SAM, in pixels of an image of the planned size."""

    points: np.ndarray
    """[N, 2] float64 (x, y) pixel coordinates."""
    segments: int
    """Geometric segments found (each got at most one prompt before the extra ones of large ones)."""
    known_unprompted: np.ndarray
    """[H, W] bool: pixels of labelled segments left without a prompt (the cap): no evidence there."""
    fallback: int
    """Prompts placed by the sparse grid where depth is missing."""


def depth_edges(depth: np.ndarray, fx: float, fy: float, jump: float = 0.04,
                crease_deg: float = 35.0) -> tuple[np.ndarray, np.ndarray]:
    """([h, w] bool depth discontinuities, [h, w] bool creases) of a depth image [h, w] (metres
    along the optical axis, NaN invalid; ``fx``, ``fy`` its focal lengths in pixels). A
    discontinuity is a step of more than ``jump`` of the nearer depth (+ 1 cm) between neighbours
    (both pixels are marked); a crease, neighbours whose normals lie more than ``crease_deg`` apart."""
    h, w = depth.shape
    valid = np.isfinite(depth) & (depth > 0)
    d = np.where(valid, depth, 0).astype(np.float32)
    jumps = np.zeros((h, w), bool)
    for axis in (0, 1):
        a = d[1:, :] if axis == 0 else d[:, 1:]
        b = d[:-1, :] if axis == 0 else d[:, :-1]
        step = np.abs(a - b) > jump * np.minimum(a, b) + 0.01
        if axis == 0:
            jumps[1:, :] |= step
            jumps[:-1, :] |= step
        else:
            jumps[:, 1:] |= step
            jumps[:, :-1] |= step
    # normals from the back-projected point grid; one-sided differences on the border rows and
    # columns, so a crease that reaches the border cuts there too (or its two sides join around it)
    u, v = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    pts = np.stack([(u - w / 2) / fx * d, (v - h / 2) / fy * d, d], axis=-1)
    dy, dx = np.gradient(pts, axis=(0, 1)) if min(h, w) > 1 else (np.zeros_like(pts), np.zeros_like(pts))
    n = np.cross(dx, dy)
    norm = np.linalg.norm(n, axis=-1, keepdims=True)
    n = np.divide(n, norm, out=np.zeros_like(n), where=norm > 1e-12)
    has = norm[..., 0] > 1e-12
    cos = np.float32(np.cos(np.radians(crease_deg)))
    creases = np.zeros((h, w), bool)
    if h > 2:
        creases[1:-1, :] |= (np.sum(n[2:] * n[:-2], axis=-1) < cos) & has[2:] & has[:-2]
    if w > 2:
        creases[:, 1:-1] |= (np.sum(n[:, 2:] * n[:, :-2], axis=-1) < cos) & has[:, 2:] & has[:, :-2]
    return jumps & valid, creases & valid


def geometric_segments(depth: np.ndarray, fx: float, fy: float, min_area: int = 4) -> tuple[np.ndarray, int]:
    """([h, w] int32 segment id, -1 where depth is missing or on a boundary; segment count) of a
    depth image [h, w] (metres, NaN invalid; ``fx``, ``fy`` in pixels).

    The pieces of valid depth that :func:`depth_edges` cut apart, of at least ``min_area`` pixels;
    then what is left between them, less the discontinuities and opened by a 3 x 3 square (the
    lines along creases vanish), as segments of its own: a small curved object (a cup, a bottle)
    is all crease at this resolution, and would otherwise fall in no segment or in slivers."""
    valid = np.isfinite(depth) & (depth > 0)
    jumps, creases = depth_edges(depth, fx, fy)
    count, labels = cv2.connectedComponents((valid & ~jumps & ~creases).astype(np.uint8), connectivity=4)
    labels = labels.astype(np.int32) - 1  # component 0: edges and invalid depth
    area = np.bincount(labels[labels >= 0], minlength=count - 1)
    keep = area >= min_area
    kept = int(keep.sum())
    renumber = np.full(count, -1, np.int32)  # slot 0: label -1
    renumber[1:][keep] = np.arange(kept, dtype=np.int32)
    labels = renumber[labels + 1]
    residual = cv2.morphologyEx((valid & ~jumps & (labels < 0)).astype(np.uint8), cv2.MORPH_OPEN,
                                np.ones((3, 3), np.uint8))
    blobs, blob_labels = cv2.connectedComponents(residual, connectivity=4)
    blob_area = np.bincount(blob_labels.ravel(), minlength=blobs)
    big = np.flatnonzero(blob_area[1:] >= min_area) + 1
    renumber = np.full(blobs, -1, np.int32)
    renumber[big] = kept + np.arange(len(big), dtype=np.int32)
    labels = np.where(labels >= 0, labels, renumber[blob_labels])
    return labels, kept + len(big)


def _farthest_points(pixels: np.ndarray, first: np.ndarray, k: int) -> list[np.ndarray]:
    """``k`` points of ``pixels`` [M, 2] spread apart, starting at ``first``."""
    chosen = [first]
    dist = np.linalg.norm(pixels - first, axis=1)
    for _ in range(k - 1):
        nxt = pixels[int(np.argmax(dist))]
        chosen.append(nxt)
        dist = np.minimum(dist, np.linalg.norm(pixels - nxt, axis=1))
    return chosen


def plan_prompts(depth: np.ndarray, fx: float, fy: float, height: int, width: int, max_prompts: int,
                 labelled_views: np.ndarray | None = None, known_views: int = 3, min_area_frac: float = 0.0008,
                 large_frac: float = 0.04, max_per_segment: int = 4, fallback_side: int = 6) -> PromptPlan:
    """Prompts for an image of ``height`` x ``width`` whose depth (any resolution, metres, NaN
    invalid; ``fx``, ``fy`` focal lengths at the depth's own resolution) is ``depth`` and whose
    surfaces the map has labelled from ``labelled_views`` views (any resolution, NaN unknown; None:
    all new). At most ``max_prompts``."""
    dh, dw = depth.shape
    scale = min(1.0, _WORK_WIDTH / dw)
    sh, sw = max(1, round(dh * scale)), max(1, round(dw * scale))
    small = cv2.resize(depth.astype(np.float32), (sw, sh), interpolation=cv2.INTER_NEAREST) if scale < 1 else depth
    min_area = max(4, int(min_area_frac * sh * sw))
    labels, count = geometric_segments(small, fx * scale, fy * scale, min_area)
    known = np.zeros((sh, sw), bool)
    if labelled_views is not None:
        views = cv2.resize(labelled_views.astype(np.float32), (sw, sh), interpolation=cv2.INTER_NEAREST)
        known = np.nan_to_num(views, nan=0.0) >= known_views
    area = np.bincount(labels[labels >= 0], minlength=count) if count else np.zeros(0, np.int64)
    known_share = (np.bincount(labels[(labels >= 0) & known], minlength=count) / np.maximum(area, 1)
                   if count else np.zeros(0))
    # a prompt goes where its segment is thickest: distance to the nearest pixel of another segment
    border = labels < 0
    border[1:] |= labels[1:] != labels[:-1]
    border[:-1] |= labels[:-1] != labels[1:]
    border[:, 1:] |= labels[:, 1:] != labels[:, :-1]
    border[:, :-1] |= labels[:, :-1] != labels[:, 1:]
    interior = cv2.distanceTransform((~border).astype(np.uint8), cv2.DIST_L2, 3)
    firsts, extras, labelled_first = [], [], []
    for seg in np.argsort(-area):
        if area[seg] < min_area:
            break
        rows, cols = np.nonzero(labels == seg)
        best = int(np.argmax(interior[rows, cols]))
        point = np.array([cols[best], rows[best]], np.float64)
        if known_share[seg] >= 0.5:
            labelled_first.append((seg, point))
            continue
        firsts.append((seg, point))
        more = min(max_per_segment - 1, int(area[seg] / (large_frac * sh * sw)))
        if more > 0:
            pixels = np.stack([cols, rows], axis=1).astype(np.float64)
            extras += [(seg, p) for p in _farthest_points(pixels, point, more + 1)[1:]]
    ordered = firsts + extras + labelled_first  # new surface first, then the large ones' extras, then labelled
    chosen = ordered[:max_prompts]
    # where depth is missing, a sparse grid (color-only holes, beyond range)
    missing = ~np.isfinite(small)
    grid = []
    if missing.mean() > 0.02 and len(chosen) < max_prompts:
        offs = (np.arange(fallback_side) + 0.5) / fallback_side
        for y in offs * sh:
            for x in offs * sw:
                if missing[min(int(y), sh - 1), min(int(x), sw - 1)]:
                    grid.append(np.array([x, y]))
        grid = grid[: max_prompts - len(chosen)]
    points = [p for _, p in chosen] + grid
    prompted = {seg for seg, _ in chosen}
    unprompted = np.zeros((height, width), bool)
    skipped = [seg for seg, _ in labelled_first if seg not in prompted]
    if skipped:
        mask = np.isin(labels, skipped).astype(np.uint8)
        unprompted = cv2.resize(mask, (width, height), interpolation=cv2.INTER_NEAREST).astype(bool)
    pts = (np.array(points, np.float64).reshape(-1, 2) + 0.5) * np.array([width / sw, height / sh]) - 0.5
    return PromptPlan(points=pts, segments=count, known_unprompted=unprompted, fallback=len(grid))

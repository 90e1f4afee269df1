"""Floor estimate, 2D navigation grid and goal poses for a ground robot.

The grid lies on the floor of the fixed frame (z up, REP-103). A cell is an *obstacle* if any map
Gaussian lies between floor + 5 cm and floor + ``robot_height``; it is *observed free* if the map
holds floor surface there (seen floor means the line of sight through the cell was free) and no
obstacle. The floor is the map's lowest well-supported horizontal surface; a map with too little
floor of its own (a color-only camera over a textureless floor) takes it from the robot's base frame
(``floor_hint``). A goal is an observed-free cell at least ``robot_radius`` from every obstacle cell, as
close as possible to ``standoff`` from the object's nearest point, facing the object's centroid.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from langgs_ros.geometry import column_bounds, yaw_to_quat_xyzw

__all__ = ["NavigationGrid", "GoalPose", "estimate_floor", "plan_goal", "navigation_points"]

_OBSTACLE_MIN_HEIGHT = 0.05
_FLOOR_BAND = 0.05
_MAX_CELLS = 16_000_000
_STANDOFF_SLACK = 0.15
"""Goal cells within this (m) of the best standoff count as equally good when choosing by path length."""


def estimate_floor(means: np.ndarray, normals: np.ndarray) -> float | None:
    """Height (m) of the lowest well-supported horizontal surface, or None if there is none."""
    horizontal = np.abs(normals[:, 2]) > 0.9
    z = means[horizontal, 2]
    if z.size < 50:
        return None
    bins = np.arange(z.min() - 0.02, z.max() + 0.04, 0.02)
    hist, edges = np.histogram(z, bins=bins)
    support = max(50, int(0.05 * z.size))
    strong = np.flatnonzero(hist >= support)
    if strong.size == 0:
        return None
    centre = 0.5 * (edges[strong[0]] + edges[strong[0] + 1])
    near = z[np.abs(z - centre) < 0.03]
    return float(np.median(near))


def navigation_points(means: np.ndarray, normals: np.ndarray, resolution: float) -> tuple[np.ndarray, np.ndarray]:
    """(points [K, 3], normals [K, 3]) standing for Gaussians at ``means`` with ``normals`` in a
    :class:`NavigationGrid` of ``resolution``: one per occupied (grid cell, 1 cm of height, kind of
    surface), at the cell's centre. A grid built from them has the cells a grid of the Gaussians
    has, from a fraction of the points (a map block's are kept with it between queries)."""
    cell = np.floor(means[:, :2] / resolution).astype(np.int64)
    zbin = np.floor(means[:, 2] / 0.01).astype(np.int64)
    nz = np.abs(normals[:, 2])
    kind = (nz > 0.8).astype(np.int64) + (nz > 0.9)  # 0 not horizontal, 1 floor-like, 2 level
    key = np.stack([cell[:, 0], cell[:, 1], zbin, kind], axis=1)
    if not len(key):
        return np.zeros((0, 3), np.float32), np.zeros((0, 3), np.float32)
    # one int64 per row (np.unique over rows sorts them as records: 40 ms for a block's 40k)
    lo = key.min(axis=0)
    span = key.max(axis=0) - lo + 1
    if float(np.prod(span.astype(np.float64))) < 2.0**62:
        packed = np.zeros(len(key), np.int64)
        for col in range(4):
            packed = packed * span[col] + (key[:, col] - lo[col])
        packed = np.unique(packed)
        uniq = np.empty((len(packed), 4), np.int64)
        for col in range(3, -1, -1):
            packed, uniq[:, col] = np.divmod(packed, span[col])
        uniq += lo
    else:
        uniq = np.unique(key, axis=0)
    points = np.stack([(uniq[:, 0] + 0.5) * resolution, (uniq[:, 1] + 0.5) * resolution, (uniq[:, 2] + 0.5) * 0.01],
                      axis=1).astype(np.float32)
    out_normals = np.zeros((len(uniq), 3), np.float32)
    out_normals[:, 0] = uniq[:, 3] == 0
    out_normals[:, 2] = np.where(uniq[:, 3] == 2, 1.0, np.where(uniq[:, 3] == 1, 0.85, 0.0))
    return points, out_normals


@dataclass
class GoalPose:
    """A goal in the fixed frame: position (m) and orientation quaternion (x, y, z, w)."""

    position: np.ndarray
    orientation_xyzw: np.ndarray
    yaw: float
    distance_to_object: float
    clearance: float
    path_length: float = float("nan")
    """Length (m) of the robot's path to the goal over the grid; NaN when not planned from the robot."""


@dataclass
class NavigationGrid:
    """Obstacle / observed-floor grid on the floor plane; cell (i, j) centre = origin + (i, j) * res."""

    origin: np.ndarray  # (x, y) of cell (0, 0) centre
    resolution: float
    floor_z: float
    floor_estimated: bool
    """The floor height comes from the map or the robot's base frame (not assumed z = 0)."""
    obstacle: np.ndarray  # [nx, ny] bool
    observed_free: np.ndarray  # [nx, ny] bool
    clearance: np.ndarray  # [nx, ny] float32, metres from the cell centre to the nearest obstacle cell centre
    floor_source: str = "map"
    """Where ``floor_z`` comes from: "map", "base frame" or "assumed"."""

    @classmethod
    def build(cls, means: np.ndarray, normals: np.ndarray, resolution: float, robot_height: float,
              floor_hint: float | None = None) -> NavigationGrid:
        """Grid of a map's Gaussian means [N, 3] and normals [N, 3] (fixed frame); ``floor_hint``:
        the floor height (m) under the robot's base frame, used where the map shows no floor."""
        floor = estimate_floor(means, normals)
        source = "map"
        if floor is None and floor_hint is not None and np.isfinite(floor_hint):
            floor, source = float(floor_hint), "base frame"
        floor_z = 0.0 if floor is None else floor
        lo = means[:, :2].min(axis=0) - 0.5 if len(means) else np.zeros(2)
        hi = means[:, :2].max(axis=0) + 0.5 if len(means) else np.ones(2)
        if not (np.isfinite(resolution) and resolution > 0):  # the doubling below would never end
            raise ValueError(f"grid resolution {resolution} m is not positive")
        while np.prod(np.ceil((hi - lo) / resolution) + 1) > _MAX_CELLS:
            resolution *= 2
        # cell (i, j) spans [k, k + 1) x resolution for integer k: grids of different parts of the
        # map agree cell by cell, and with navigation_points' cells
        lo = (np.floor(lo / resolution) + 0.5) * resolution
        shape = tuple((np.ceil((hi - lo) / resolution) + 1).astype(int))
        cells = np.round((means[:, :2] - lo) / resolution).astype(np.int64)
        height = means[:, 2] - floor_z
        obstacle = np.zeros(shape, bool)
        sel = (height > _OBSTACLE_MIN_HEIGHT) & (height < robot_height)
        obstacle[cells[sel, 0], cells[sel, 1]] = True
        floor_pts = (np.abs(height) < _FLOOR_BAND) & (np.abs(normals[:, 2]) > 0.8)
        observed = np.zeros(shape, bool)
        observed[cells[floor_pts, 0], cells[floor_pts, 1]] = True
        clearance = ndimage.distance_transform_edt(~obstacle).astype(np.float32) * resolution
        if not obstacle.any():
            clearance[:] = np.inf
        return cls(origin=lo, resolution=resolution, floor_z=floor_z, floor_estimated=floor is not None,
                   obstacle=obstacle, observed_free=observed & ~obstacle, clearance=clearance,
                   floor_source=source if floor is not None else "assumed")

    def traversable(self, robot_radius: float) -> np.ndarray:
        """[nx, ny] bool: observed free floor with ``robot_radius`` (m) of clearance, plus half a
        cell diagonal (the robot must clear the whole obstacle cell)."""
        return self.observed_free & (self.clearance >= robot_radius + self.resolution / np.sqrt(2))

    def cell_of(self, xy: np.ndarray) -> np.ndarray:
        """Integer cells [N, 2] of points (x, y) [N, 2]."""
        return np.round((xy - self.origin) / self.resolution).astype(np.int64)

    def centre_of(self, cells: np.ndarray) -> np.ndarray:
        """(x, y) [N, 2] of cell centres."""
        return self.origin + cells * self.resolution


def plan_goal(grid: NavigationGrid, object_points: np.ndarray, centroid: np.ndarray, robot_radius: float,
              standoff: float, search_margin: float = 1.5,
              path_lengths: np.ndarray | None = None) -> tuple[GoalPose | None, str]:
    """Goal for approaching an object (points [M, 3] in the fixed frame); None and a reason if none.

    With ``path_lengths`` ([nx, ny] m from the robot, inf unreachable:
    :func:`~langgs_ros.query.reachability.reach_from`) only reachable cells qualify, and of those
    within ``_STANDOFF_SLACK`` of the best standoff the one the robot reaches first wins."""
    shape = np.array(grid.obstacle.shape)
    obj_cells = grid.cell_of(object_points[:, :2])
    reach = int(np.ceil((standoff + robot_radius + search_margin) / grid.resolution))
    cell_lo, cell_hi, _ = column_bounds(obj_cells)
    lo = np.clip(cell_lo - reach, 0, shape - 1)
    hi = np.clip(cell_hi + reach + 1, 1, shape)
    window = (slice(lo[0], hi[0]), slice(lo[1], hi[1]))
    obj = np.zeros(hi - lo, bool)
    local = np.clip(obj_cells - lo, 0, hi - lo - 1)
    obj[local[:, 0], local[:, 1]] = True
    dist_obj = ndimage.distance_transform_edt(~obj) * grid.resolution
    candidates = grid.traversable(robot_radius)[window]
    if not candidates.any():
        if not grid.observed_free[window].any():
            return None, "no observed free floor near the object"
        return None, f"no observed free floor with {robot_radius:.2f} m clearance near the object"
    lengths = None if path_lengths is None else path_lengths[window]
    if lengths is not None:
        candidates &= np.isfinite(lengths)
        if not candidates.any():
            return None, "no free floor near the object is reachable from the robot"
    cost = np.where(candidates, np.abs(dist_obj - standoff), np.inf)
    best_cost = cost.min()
    if lengths is None:  # ties: the most clearance
        ties = np.argwhere(cost <= best_cost + 1e-6)
        pick = ties[np.argmax(grid.clearance[window][ties[:, 0], ties[:, 1]])]
    else:  # about as far as the best: the one reached first
        near = np.argwhere(cost <= best_cost + _STANDOFF_SLACK)
        pick = near[np.argmin(lengths[near[:, 0], near[:, 1]])]
    xy = grid.centre_of(pick + lo)
    yaw = float(np.arctan2(centroid[1] - xy[1], centroid[0] - xy[0]))
    goal = GoalPose(position=np.array([xy[0], xy[1], grid.floor_z]), orientation_xyzw=yaw_to_quat_xyzw(yaw),
                    yaw=yaw, distance_to_object=float(dist_obj[tuple(pick)]),
                    clearance=float(grid.clearance[window][tuple(pick)]),
                    path_length=float(lengths[tuple(pick)]) if lengths is not None else float("nan"))
    note = {"map": "", "base frame": " (floor height from the robot's base frame)"}.get(
        grid.floor_source, " (floor not found in the map; assumed z = 0)")
    return goal, f"goal {goal.distance_to_object:.2f} m from the object{note}"

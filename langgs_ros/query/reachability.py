"""Where a ground robot can drive on a :class:`~langgs_ros.query.navigation.NavigationGrid`, and how far.

A cell is traversable when the map saw free floor there and it keeps the robot's radius from
every obstacle cell (:meth:`NavigationGrid.traversable`, the goals' own rule). Path
lengths are Dijkstra distances over traversable cells, 8-connected (a diagonal step costs
sqrt(2) cells; it may not cut the corner of a non-traversable cell), from the robot's cell. The
robot's own cell is rarely seen as floor (a camera does not see under its robot), so the start
snaps to the nearest traversable cell within ``snap_m``.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from langgs_ros.query.navigation import NavigationGrid

__all__ = ["Reach", "reach_from"]


@dataclass
class Reach:
    """Path lengths from the robot over a grid."""

    lengths: np.ndarray
    """[nx, ny] float32 path length (m) from the start to each cell; inf where unreachable."""
    start: np.ndarray | None
    """(i, j) cell the paths start from (the robot's, or the nearest traversable one); None: no start."""
    message: str
    """Why nothing is reachable, or where the paths start."""


def reach_from(grid: NavigationGrid, xy: np.ndarray, robot_radius: float, snap_m: float = 1.0) -> Reach:
    """Path lengths (m) from the robot at ``xy`` (fixed frame, m) to every cell of ``grid``."""
    free = grid.traversable(robot_radius)
    shape = np.array(free.shape)
    lengths = np.full(free.shape, np.inf, np.float32)
    if not free.any():
        return Reach(lengths, None, f"the map has no observed free floor with {robot_radius:.2f} m clearance")
    cell = grid.cell_of(np.asarray(xy, np.float64).reshape(1, 2))[0]
    inside = bool(np.all((cell >= 0) & (cell < shape)))
    if inside and free[tuple(cell)]:
        start = cell
    else:
        # the nearest traversable cell to the robot (within the grid, or beyond it: clamped)
        clamped = np.clip(cell, 0, shape - 1)
        _, nearest = ndimage.distance_transform_edt(~free, return_indices=True)
        start = nearest[:, clamped[0], clamped[1]]
        off = float(np.linalg.norm(grid.centre_of(start.reshape(1, 2))[0] - np.asarray(xy, np.float64)))
        if off > snap_m:
            return Reach(lengths, None, f"the robot at ({xy[0]:.2f}, {xy[1]:.2f}) is {off:.2f} m from the "
                                        f"nearest observed free floor (more than {snap_m:.2f} m)")
    _dijkstra_kernel()(free, int(start[0]), int(start[1]), np.float32(grid.resolution), lengths)
    return Reach(lengths, start, f"paths from cell ({start[0]}, {start[1]})")


_DIJKSTRA = None


def _dijkstra_kernel():  # noqa: ANN202 - a numba dispatcher
    """8-connected Dijkstra over a bool grid, compiled by numba on first use (cached on disk): a
    Python loop takes seconds over the million cells of a 50 m x 50 m floor."""
    global _DIJKSTRA
    if _DIJKSTRA is None:
        from numba import njit

        @njit(cache=True, nogil=True)
        def dijkstra(free, si, sj, step, out):  # noqa: ANN001, ANN202
            nx, ny = free.shape
            diagonal = np.float32(step * np.sqrt(2.0))
            out[si, sj] = 0.0
            heap = [(np.float32(0.0), si, sj)]
            while heap:
                d, i, j = heapq.heappop(heap)
                if d > out[i, j]:
                    continue
                for di in range(-1, 2):
                    for dj in range(-1, 2):
                        a, b = i + di, j + dj
                        if (di == 0 and dj == 0) or a < 0 or b < 0 or a >= nx or b >= ny or not free[a, b]:
                            continue
                        if di != 0 and dj != 0 and not (free[a, j] and free[i, b]):
                            continue  # no cutting a blocked cell's corner
                        nd = d + (diagonal if di != 0 and dj != 0 else step)
                        if nd < out[a, b]:
                            out[a, b] = nd
                            heapq.heappush(heap, (nd, a, b))

        _DIJKSTRA = dijkstra
    return _DIJKSTRA

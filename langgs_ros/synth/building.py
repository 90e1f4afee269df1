"""A building of furnished rooms in a row, joined by doorways, and a robot trajectory that visits
each room in turn: the scene to measure a map that grows for minutes, not seconds.

Room ``r`` is the bundled room (:func:`~langgs_ros.synth.scene.default_scene`) moved to x = 6 r m,
its objects rearranged (mirrored across the room's axes, the table-top objects swapped among their
places; room 0 keeps the bundled arrangement), with instance ids ``10 r + j`` (``j`` the bundled
object's id, 1..9), so every room has one mug, one book... Partition walls (10 cm, background)
separate the rooms; the doorway of the wall between rooms r and r + 1 is 1 m wide, 2.1 m high, its
centre alternating between y = +0.6 and -0.6 m so that no sight line runs down the whole building.

The robot circles each room's table once facing it (as in the single room), then drives around
the table, through the doorway and into the next room along a smooth path, its heading following
the path. Frame: ``map``, z up, floor at z = 0, metres.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from langgs_ros.geometry import make_transform
from langgs_ros.synth.scene import Box, Cylinder, Primitive, Scene, SceneObject, Sphere, default_scene

__all__ = ["ROOM_PITCH_M", "MAX_ROOMS", "building_scene", "BuildingTrajectory", "room_of_instance"]

ROOM_PITCH_M = 6.0
"""Distance between the centres of neighbouring rooms along x (m); rooms are 6 m x 5 m x 2.6 m."""
MAX_ROOMS = 1000
"""Most rooms a building may have (instance ids are 16-bit)."""
_WALL_HALF = 0.05
_DOOR_HALF_WIDTH = 0.5
_DOOR_HEIGHT = 2.1
_DOOR_Y = 0.6
_RANGE_M = 12.0
_TABLE_TOP_IDS = (2, 3, 4, 5)  # mug, book, bottle, laptop: their places on the table are shuffled
_LOOP_RADIUS = 1.35
_TRANSIT_SPEED = 1.5  # m/s
_YAW_BLEND_S = 1.0


def room_of_instance(instance_id: int) -> int:
    """Room index of a building instance id (``10 r + j``)."""
    return int(instance_id) // 10


def _door_y(wall: int) -> float:
    """y (m) of the doorway centre in the wall between rooms ``wall`` and ``wall + 1``."""
    return _DOOR_Y if wall % 2 == 0 else -_DOOR_Y


def _mirrored(part: Primitive, sx: float, sy: float) -> Primitive:
    """``part`` with x -> sx x and y -> sy y (sx, sy = +-1) about the room centre (the origin)."""
    if isinstance(part, Box):
        xs = sorted((sx * part.lo[0], sx * part.hi[0]))
        ys = sorted((sy * part.lo[1], sy * part.hi[1]))
        return Box((xs[0], ys[0], part.lo[2]), (xs[1], ys[1], part.hi[2]))
    if isinstance(part, Cylinder):
        return dataclasses.replace(part, x=sx * part.x, y=sy * part.y)
    assert isinstance(part, Sphere)
    return dataclasses.replace(part, centre=(sx * part.centre[0], sy * part.centre[1], part.centre[2]))


def _room_objects(room: int, seed: int) -> list[SceneObject]:
    """The bundled room's objects, rearranged for ``room`` and moved to its place."""
    objects = default_scene().objects
    if room > 0:
        rng = np.random.default_rng([seed, room])
        sx, sy = (float(v) for v in rng.choice([-1.0, 1.0], size=2))
        objects = [dataclasses.replace(o, parts=[_mirrored(p, sx, sy) for p in o.parts]) for o in objects]
        top = [o for o in objects if o.id in _TABLE_TOP_IDS]
        centres = [(o.bounds()[0] + o.bounds()[1]) / 2 for o in top]
        order = rng.permutation(len(top))
        moved = {o.id: o.moved(*(centres[j][:2] - c[:2])) for o, c, j in zip(top, centres, order)}
        objects = [moved.get(o.id, o) for o in objects]
    dx = ROOM_PITCH_M * room
    return [dataclasses.replace(o.moved(dx, 0.0), id=10 * room + o.id) for o in objects]


def building_scene(rooms: int, seed: int = 0) -> Scene:
    """``rooms`` furnished rooms in a row (``rooms`` = 1: the bundled room, unchanged)."""
    if not 1 <= rooms <= MAX_ROOMS:
        raise ValueError(f"a building has 1 to {MAX_ROOMS} rooms, got {rooms}")
    base = default_scene()
    if rooms == 1:
        return base
    objects = [o for r in range(rooms) for o in _room_objects(r, seed)]
    walls = []
    z_top = base.room_hi[2]
    for wall in range(rooms - 1):
        x = ROOM_PITCH_M * wall + base.room_hi[0]
        c = _door_y(wall)
        lo_x, hi_x = x - _WALL_HALF, x + _WALL_HALF
        walls += [Box((lo_x, base.room_lo[1], 0.0), (hi_x, c - _DOOR_HALF_WIDTH, z_top)),
                  Box((lo_x, c + _DOOR_HALF_WIDTH, 0.0), (hi_x, base.room_hi[1], z_top)),
                  Box((lo_x, c - _DOOR_HALF_WIDTH, _DOOR_HEIGHT), (hi_x, c + _DOOR_HALF_WIDTH, z_top))]
    hi = (base.room_hi[0] + ROOM_PITCH_M * (rooms - 1), base.room_hi[1], base.room_hi[2])
    return Scene(room_lo=base.room_lo, room_hi=hi, objects=objects, light=base.light, walls=walls,
                 max_range_m=_RANGE_M)


def _wrap(angle: np.ndarray | float) -> np.ndarray:
    return (np.asarray(angle) + np.pi) % (2 * np.pi) - np.pi


def _catmull_rom(points: np.ndarray, samples: int = 24) -> np.ndarray:
    """A smooth curve through ``points`` [P, 2] (uniform Catmull-Rom, ends repeated)."""
    p = np.vstack([points[:1], points, points[-1:]])
    t = np.linspace(0.0, 1.0, samples, endpoint=False)[:, None]
    out = []
    for i in range(1, len(p) - 2):
        p0, p1, p2, p3 = p[i - 1], p[i], p[i + 1], p[i + 2]
        out.append(0.5 * (2 * p1 + (-p0 + p2) * t + (2 * p0 - 5 * p1 + 4 * p2 - p3) * t ** 2
                          + (-p0 + 3 * p1 - 3 * p2 + p3) * t ** 3))
    out.append(points[-1:])
    return np.vstack(out)


class BuildingTrajectory:
    """The robot base's path through a building of ``rooms`` rooms: per room one loop around the
    table in ``loop_s`` seconds, then a transit at 1.5 m/s to the next room. Poses are
    T_map_base_link (REP-105, base on the floor, x forward)."""

    def __init__(self, rooms: int, loop_s: float, seed: int = 0) -> None:
        if rooms < 2:
            raise ValueError("a building trajectory needs at least 2 rooms")
        rng = np.random.default_rng(seed)
        self.wobble = float(rng.uniform(0.05, 0.15))
        self.loop_s = float(loop_s)
        self.rooms = rooms
        self._transits = [self._transit(r) for r in range(rooms - 1)]
        # start times of each room's loop and of each transit
        self._starts: list[tuple[str, int, float, float]] = []  # (kind, room, start, duration)
        t = 0.0
        for r in range(rooms):
            self._starts.append(("loop", r, t, self.loop_s))
            t += self.loop_s
            if r < rooms - 1:
                duration = self._transits[r][1][-1] / _TRANSIT_SPEED
                self._starts.append(("transit", r, t, duration))
                t += duration
        self.duration_s = t

    def _transit(self, room: int) -> tuple[np.ndarray, np.ndarray]:
        """(dense path [M, 2], cumulative arc length [M]) from the end of ``room``'s loop around its
        table, through the doorway, to the start of the next room's loop."""
        xc = ROOM_PITCH_M * room
        c = _door_y(room)
        side = -1.0 if c > 0 else 1.0  # pass the table on the side away from the door: a wider curve
        wall_x = xc + ROOM_PITCH_M / 2
        waypoints = np.array([[xc - _LOOP_RADIUS, 0.0], [xc - 0.9, side * 1.0], [xc + 1.0, side * 1.0],
                              [wall_x - 0.8, c], [wall_x + 0.8, c], [xc + ROOM_PITCH_M - 1.9, -side * 0.4],
                              [xc + ROOM_PITCH_M - _LOOP_RADIUS, 0.0]])
        path = _catmull_rom(waypoints)
        arc = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(path, axis=0), axis=1))])
        return path, arc

    def _loop_pose(self, room: int, t: float) -> tuple[np.ndarray, float]:
        """(x, y), yaw on ``room``'s loop at ``t`` s into it: from the -x side once around, facing
        the table and panning."""
        theta = np.pi + 2 * np.pi * t / self.loop_s
        radius = _LOOP_RADIUS + self.wobble * np.sin(3 * theta)
        pos = np.array([ROOM_PITCH_M * room + radius * np.cos(theta), radius * np.sin(theta)])
        return pos, float(theta + np.pi + 0.3 * np.sin(2 * theta))

    def _transit_pose(self, room: int, t: float) -> tuple[np.ndarray, float]:
        path, arc = self._transits[room]
        s = min(t * _TRANSIT_SPEED, arc[-1])
        x, y = np.interp(s, arc, path[:, 0]), np.interp(s, arc, path[:, 1])
        ahead = min(s + 0.05, arc[-1])
        behind = max(ahead - 0.1, 0.0)
        dx = np.interp(ahead, arc, path[:, 0]) - np.interp(behind, arc, path[:, 0])
        dy = np.interp(ahead, arc, path[:, 1]) - np.interp(behind, arc, path[:, 1])
        return np.array([x, y]), float(np.arctan2(dy, dx))

    def pose(self, t_s: float) -> np.ndarray:
        """T_map_base_link at ``t_s`` seconds (clamped to the trajectory), a continuous function:
        the heading blends over 1 s from one segment's into the next one's."""
        t_s = float(np.clip(t_s, 0.0, self.duration_s))
        k = max(i for i, seg in enumerate(self._starts) if seg[2] <= t_s or i == 0)
        kind, room, start, _ = self._starts[k]
        pos, yaw = self._segment_pose(kind, room, t_s - start)
        if k > 0 and t_s - start < _YAW_BLEND_S:  # blend the heading in from the previous segment's end
            prev_kind, prev_room, prev_start, prev_duration = self._starts[k - 1]
            _, prev_yaw = self._segment_pose(prev_kind, prev_room, prev_duration)
            w = (t_s - start) / _YAW_BLEND_S
            w = w * w * (3 - 2 * w)
            yaw = float(prev_yaw + w * _wrap(yaw - prev_yaw))
        R = np.array([[np.cos(yaw), -np.sin(yaw), 0], [np.sin(yaw), np.cos(yaw), 0], [0, 0, 1]])
        return make_transform(R, [pos[0], pos[1], 0.0])

    def _segment_pose(self, kind: str, room: int, t: float) -> tuple[np.ndarray, float]:
        return self._loop_pose(room, t) if kind == "loop" else self._transit_pose(room, t)

    def room_at(self, t_s: float) -> int:
        """Index of the room the robot is in (or leaving) at ``t_s``."""
        return int(np.clip(np.floor((self.pose(t_s)[0, 3] + ROOM_PITCH_M / 2) / ROOM_PITCH_M), 0, self.rooms - 1))

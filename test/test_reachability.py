"""Path lengths over the navigation grid, and goals for the object the robot reaches first."""

from __future__ import annotations

import numpy as np

from langgs_ros.config import MappingConfig, QueryConfig
from langgs_ros.mapping.fusion import CodebookField
from langgs_ros.mapping.gaussians import GaussianMap
from langgs_ros.mapping.map_io import MapData
from langgs_ros.query.engine import QueryEngine
from langgs_ros.query.navigation import NavigationGrid
from langgs_ros.query.reachability import reach_from
from langgs_ros.semantics.oracle import TokenTextEncoder

UP = np.array([1.0, 0, 0, 0])  # wxyz: normal +z (floor)
SIDE = np.array([np.cos(np.pi / 4), 0, np.sin(np.pi / 4), 0])  # normal along x (a wall)


def _floor(half: float = 3.0, step: float = 0.05) -> np.ndarray:
    xs = np.arange(-half, half, step) + step / 2
    xy = np.stack(np.meshgrid(xs, xs), axis=-1).reshape(-1, 2)
    return np.concatenate([xy, np.zeros((len(xy), 1))], axis=1)


def _wall(x0: float, x1: float, y: float) -> np.ndarray:
    """A wall along x at ``y`` from ``x0`` to ``x1``, 0.2 to 0.8 m high."""
    return np.array([[x, y, z] for x in np.arange(x0, x1, 0.02) for z in (0.2, 0.5, 0.8)])


def _grid(obstacles: np.ndarray) -> NavigationGrid:
    floor = _floor()
    pts = np.concatenate([floor, obstacles])
    normals = np.concatenate([np.tile([0, 0, 1.0], (len(floor), 1)), np.tile([1.0, 0, 0], (len(obstacles), 1))])
    return NavigationGrid.build(pts, normals, 0.05, robot_height=1.0)


def test_paths_go_around_a_wall_through_its_door() -> None:
    grid = _grid(_wall(-3.0, 1.5, 0.0))  # door from x = 1.5 to 3
    reach = reach_from(grid, np.array([0.0, -1.0]), robot_radius=0.25)
    assert reach.start is not None
    behind = grid.cell_of(np.array([[0.0, 1.0]]))[0]
    length = reach.lengths[tuple(behind)]
    # around the wall's end (x >= 1.5 + radius) and back: far more than the 2 m straight line
    detour = 2 * np.hypot(1.5 + 0.25, 1.0)
    assert detour - 0.3 < length < detour + 1.0
    assert np.isinf(reach.lengths[~grid.traversable(0.25)]).all()


def test_no_path_into_a_closed_room_and_a_robot_far_from_the_floor() -> None:
    grid = _grid(_wall(-3.0, 3.0, 0.0))
    reach = reach_from(grid, np.array([0.0, -1.0]), robot_radius=0.25)
    assert np.isinf(reach.lengths[tuple(grid.cell_of(np.array([[0.0, 1.0]]))[0])])
    far = reach_from(grid, np.array([20.0, 20.0]), robot_radius=0.25)
    assert far.start is None and "nearest observed free floor" in far.message


def test_a_robot_on_unseen_floor_starts_from_the_nearest_seen_cell() -> None:
    grid = _grid(_wall(-3.0, 1.5, 0.0))
    grid.observed_free[grid.cell_of(np.array([[0.0, -1.0]]))[0][0], :] = False  # a strip under the robot
    reach = reach_from(grid, np.array([0.0, -1.0]), robot_radius=0.25)
    assert reach.start is not None
    assert np.linalg.norm(grid.centre_of(reach.start[None])[0] - [0.0, -1.0]) < 0.1


def _engine_with_two_mugs() -> tuple[QueryEngine, np.ndarray, np.ndarray]:
    """A floor split by a wall along y = 0 with a door at x in [1.5, 3]; a large mug behind the
    wall at (0, 0.9), a small one on the robot's side at (-2.2, -2.2)."""
    encoder = TokenTextEncoder(64)
    protos = encoder.encode(["mug", "floor"]).astype(np.float32)
    field = CodebookField(64, MappingConfig())
    field.load_state({"codebook_prototypes": protos,
                      **{f"track_counts_{lv}": np.zeros((0, 256), np.int32) for lv in ("subpart", "part", "whole")}})
    gmap = GaussianMap()
    field.attach(gmap)
    rng = np.random.default_rng(0)
    behind, near = np.array([0.0, 0.9, 0.1]), np.array([-2.2, -2.2, 0.1])
    for points, quat, code in [(_floor(), UP, 1), (_wall(-3.0, 1.5, 0.0), SIDE, 1),
                               (behind + rng.uniform(-0.05, 0.05, (300, 3)), SIDE, 0),
                               (near + rng.uniform(-0.04, 0.04, (120, 3)), SIDE, 0)]:
        idx = gmap.append(means=points.astype(np.float32), quats=np.tile(quat, (len(points), 1)).astype(np.float16))
        gmap["codes"][idx] = code
        gmap["confidence"][idx] = 5
    engine = QueryEngine(MapData.of_gaussians(gmap, field, semantics="oracle"), QueryConfig(), encoder)
    return engine, behind, near


def test_navigate_approaches_the_object_the_robot_reaches_first() -> None:
    engine, behind, near = _engine_with_two_mugs()
    robot = np.array([0.0, -0.8])
    plain = engine.query("mug")
    assert len(plain.objects) == 2, plain.message
    assert np.linalg.norm(plain.objects[0].centroid[:2] - behind[:2]) < 0.1  # the larger one ranks first
    assert plain.goal_object == 0 and np.isnan(plain.goal_pose.path_length)
    # straight-line, the mug behind the wall is nearer (1.7 m against 2.6 m); by path it is not
    nav = engine.query("mug", navigate_from=robot)
    assert nav.goal_object == 1, nav.message
    goal = nav.goal_pose
    assert np.linalg.norm(nav.objects[1].centroid[:2] - near[:2]) < 0.1
    assert "navigate: goal for object #2" in nav.message
    grid = engine.local_grid(np.concatenate([o.points for o in nav.objects]))
    cell = tuple(grid.cell_of(goal.position[None, :2])[0])
    assert grid.traversable(engine.config.robot_radius)[cell]  # free, with clearance
    reach = reach_from(grid, robot, engine.config.robot_radius)
    assert np.isfinite(reach.lengths[cell])  # connected to the robot
    assert abs(reach.lengths[cell] - goal.path_length) < 1e-3
    assert goal.path_length >= np.linalg.norm(goal.position[:2] - robot) - 0.05
    heading = np.arctan2(*(nav.objects[1].centroid[:2] - goal.position[:2])[::-1])
    assert abs((goal.yaw - heading + np.pi) % (2 * np.pi) - np.pi) < 1e-6
    assert nav.to_json()["goal_pose"]["object"] == 1


def test_navigate_from_the_other_side_and_from_nowhere() -> None:
    engine, behind, _ = _engine_with_two_mugs()
    other = engine.query("mug", navigate_from=np.array([0.5, 2.0]))
    assert other.goal_object == 0, other.message  # behind the wall is now the robot's side
    lost = engine.query("mug", navigate_from=np.array([40.0, 40.0]))
    assert lost.answered and lost.objects and lost.goal_pose is None and lost.goal_object == -1
    assert "nearest observed free floor" in lost.message
    bad = engine.query("mug", navigate_from=np.array([np.nan, 0.0]))
    assert bad.goal_pose is None and "not a finite" in bad.message
    capped = engine.query("mug", navigate_from=np.array([0.0, -0.8]), max_objects=1)
    assert len(capped.objects) == 1 and capped.goal_object == 0  # only the returned objects are candidates

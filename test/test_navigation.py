"""Floor estimate and goal planning on hand-made point sets."""

from __future__ import annotations

import numpy as np

from langgs_ros.query.navigation import NavigationGrid, estimate_floor, plan_goal


def floor_points(z=0.02, half=2.0, step=0.02):
    xs = np.arange(-half, half, step)
    xy = np.stack(np.meshgrid(xs, xs), axis=-1).reshape(-1, 2)
    return np.concatenate([xy, np.full((len(xy), 1), z)], axis=1)


def test_floor_is_the_lowest_supported_horizontal_surface():
    floor = floor_points(0.02)
    table = floor_points(0.75, half=0.5)
    pts = np.concatenate([floor, table])
    normals = np.tile([0, 0, 1.0], (len(pts), 1))
    assert abs(estimate_floor(pts, normals) - 0.02) < 0.01
    assert estimate_floor(pts, np.tile([1.0, 0, 0], (len(pts), 1))) is None


def test_goal_keeps_clearance_reaches_standoff_and_faces_object():
    floor = floor_points()
    box = np.array([[x, y, z] for x in np.arange(0.4, 0.6, 0.02) for y in np.arange(-0.1, 0.1, 0.02)
                    for z in (0.1, 0.3)])
    wall = np.array([[x, 1.0, z] for x in np.arange(-2, 2, 0.02) for z in (0.2, 0.6)])
    obj = np.array([[x, y, 0.8] for x in np.arange(-0.1, 0.1, 0.02) for y in np.arange(-0.1, 0.1, 0.02)])
    pts = np.concatenate([floor, box, wall])
    normals = np.concatenate([np.tile([0, 0, 1.0], (len(floor), 1)), np.tile([1.0, 0, 0], (len(box) + len(wall), 1))])
    grid = NavigationGrid.build(pts, normals, 0.05, robot_height=1.0)
    goal, why = plan_goal(grid, obj, obj.mean(axis=0), robot_radius=0.25, standoff=0.6)
    assert goal is not None, why
    d_obj = np.min(np.linalg.norm(obj[:, :2] - goal.position[:2], axis=1))
    assert abs(d_obj - 0.6) < 0.06 and goal.position[2] == grid.floor_z
    obstacles = np.concatenate([box, wall])[:, :2]
    assert np.min(np.linalg.norm(obstacles - goal.position[:2], axis=1)) >= 0.25
    centre = obj.mean(axis=0)
    heading = np.arctan2(centre[1] - goal.position[1], centre[0] - goal.position[0])
    assert abs((goal.yaw - heading + np.pi) % (2 * np.pi) - np.pi) < 1e-6


def test_no_free_floor_gives_a_reason():
    pts = np.array([[0.0, 0, 0.5], [0.1, 0, 0.5]])
    grid = NavigationGrid.build(pts, np.tile([1.0, 0, 0], (2, 1)), 0.05, robot_height=1.0)
    goal, why = plan_goal(grid, pts, pts.mean(axis=0), 0.25, 0.6)
    assert goal is None and "no observed free floor" in why and not grid.floor_estimated


def test_floor_from_the_base_frame_where_the_map_has_none():
    # a color-only map: an object and a few sparse floor points, too few to estimate a floor from
    obj = np.array([[x, y, z] for x in np.arange(0.4, 0.6, 0.02) for y in np.arange(-0.1, 0.1, 0.02)
                    for z in (0.35, 0.45)])
    sparse_floor = floor_points(0.3, half=1.5, step=0.5)
    pts = np.concatenate([obj, sparse_floor])
    normals = np.concatenate([np.tile([1.0, 0, 0], (len(obj), 1)), np.tile([0, 0, 1.0], (len(sparse_floor), 1))])
    assert estimate_floor(pts, normals) is None
    assumed = NavigationGrid.build(pts, normals, 0.05, robot_height=1.0)
    hinted = NavigationGrid.build(pts, normals, 0.05, robot_height=1.0, floor_hint=0.3)
    assert assumed.floor_source == "assumed" and assumed.floor_z == 0.0
    assert hinted.floor_source == "base frame" and hinted.floor_z == 0.3 and hinted.floor_estimated
    # at z = 0 the floor points would be obstacles 30 cm up and the object would hover; on the
    # base frame's floor they are observed floor and the object stands on it
    assert hinted.observed_free.sum() == len(sparse_floor) - 1 and not assumed.observed_free.any()  # one under the object
    goal, why = plan_goal(hinted, obj, obj.mean(axis=0), robot_radius=0.1, standoff=0.3)
    assert goal is not None and "base frame" in why and goal.position[2] == 0.3


def test_a_floor_in_the_map_wins_over_the_hint():
    floor = floor_points(0.02)
    grid = NavigationGrid.build(floor, np.tile([0, 0, 1.0], (len(floor), 1)), 0.05, 1.0, floor_hint=0.5)
    assert grid.floor_source == "map" and abs(grid.floor_z - 0.02) < 0.01

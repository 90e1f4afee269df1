"""Core types -> ROS messages, built with rosbags' message classes (same fields as rclpy's)."""

from __future__ import annotations

import numpy as np
import pytest

from langgs_ros.query.engine import ObjectResult, QueryResult
from langgs_ros.query.navigation import GoalPose, NavigationGrid
from langgs_ros.ros import conversions as cv
from langgs_ros.ros.interfaces import typestore_with_interfaces
from langgs_ros.ros.messages import RosbagsMessages


@pytest.fixture(scope="module")
def store():
    return typestore_with_interfaces()


@pytest.fixture(scope="module")
def f(store):
    return RosbagsMessages(store)


def cdr_round_trip(store, msg):
    return store.deserialize_cdr(store.serialize_cdr(msg, msg.__msgtype__), msg.__msgtype__)


def test_pointcloud2_round_trip_keeps_xyz_colour_and_relevance(store, f):
    rng = np.random.default_rng(0)
    xyz = rng.normal(size=(50, 3)).astype(np.float32)
    rgb = rng.integers(0, 256, (50, 3)).astype(np.uint8)
    rel = rng.random(50).astype(np.float32)
    msg = cdr_round_trip(store, cv.pointcloud2(f, cv.header(f, 1_500_000_000, "map"), xyz, rgb, rel))
    assert msg.header.stamp.sec == 1 and msg.header.stamp.nanosec == 500_000_000 and msg.width == 50
    out = cv.pointcloud2_to_arrays(msg)
    assert np.array_equal(np.stack([out["x"], out["y"], out["z"]], 1), xyz)
    assert np.array_equal(out["rgb"], rgb) and np.array_equal(out["relevance"], rel)
    short = cv.pointcloud2(f, cv.header(f, 0, "map"), xyz, rgb)
    short.data = short.data[:-4]
    with pytest.raises(ValueError, match="bytes"):
        cv.pointcloud2_to_arrays(short)


def make_result():
    pts = np.array([[1.0, 0.0, 0.5], [1.2, 0.1, 0.7], [1.1, -0.1, 0.6]], np.float32)
    obj = ObjectResult(score=0.8, points=pts, centroid=pts.mean(0), bbox_min=pts.min(0), bbox_max=pts.max(0),
                       gaussian_indices=np.array([0, 1, 2]))
    goal = GoalPose(position=np.array([0.4, 0.0, 0.0]), orientation_xyzw=np.array([0, 0, 0, 1.0]), yaw=0.0,
                    distance_to_object=0.6, clearance=0.5)
    return QueryResult(query="mug", frame_id="map", objects=[obj], goal_pose=goal, message="1 object")


def test_query_response_carries_objects_and_goal(store, f):
    result = make_result()
    colors = np.array([[255, 0, 0], [0, 255, 0], [0, 0, 255]], np.uint8)
    resp = cdr_round_trip(store, cv.query_response(f, result, 7, colors, [np.array([0.9, 0.8, 0.7], np.float32)],
                                                   max_points=2))
    assert resp.success and resp.has_goal and resp.goal_pose.header.frame_id == "map"
    assert resp.goal_pose.pose.position.x == pytest.approx(0.4) and resp.goal_pose.pose.orientation.w == 1.0
    (obj,) = resp.objects
    assert obj.label == "mug" and obj.score == pytest.approx(0.8) and obj.bbox_max.z == pytest.approx(0.7)
    cloud = cv.pointcloud2_to_arrays(obj.points)
    assert len(cloud["x"]) == 2  # subsampled to max_points
    assert cloud["rgb"][0].tolist() == [255, 0, 0] and cloud["relevance"][1] == pytest.approx(0.7)
    empty = cv.query_response(f, QueryResult(query="x", frame_id="map", message="nothing"), 0,
                              colors, [], max_points=10)
    assert not empty.has_goal and not empty.objects and empty.message == "nothing"


def test_markers_mask_image_and_occupancy_grid(store, f):
    hdr = cv.header(f, 0, "map")
    markers = cdr_round_trip(store, cv.marker_array(f, hdr, make_result())).markers
    assert [m.action for m in markers] == [3, 0, 0] and markers[1].type == 1 and markers[2].type == 9
    assert markers[1].pose.position.x == pytest.approx(1.1) and "mug" in markers[2].text
    mask = np.zeros((4, 6), bool)
    mask[1, 2] = True
    img = cdr_round_trip(store, cv.mono8_image(f, hdr, mask))
    assert (img.height, img.width, img.encoding, img.step) == (4, 6, "mono8", 6)
    assert img.data.reshape(4, 6)[1, 2] == 255 and img.data.sum() == 255
    obstacle = np.zeros((3, 2), bool)
    obstacle[2, 1] = True
    grid = NavigationGrid(origin=np.array([-1.0, 5.0]), resolution=0.5, floor_z=0.0, floor_estimated=True,
                          obstacle=obstacle, observed_free=~obstacle & (np.arange(3)[:, None] > 0),
                          clearance=np.zeros((3, 2), np.float32))
    occ = cdr_round_trip(store, cv.occupancy_grid(f, hdr, grid))
    assert (occ.info.width, occ.info.height) == (3, 2) and occ.info.origin.position.x == pytest.approx(-1.25)
    cells = occ.data.reshape(2, 3)  # rows along y
    assert cells[1, 2] == 100 and cells[0, 0] == -1 and cells[0, 1] == 0

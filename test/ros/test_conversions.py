"""Core types -> ROS messages, built with rosbags' message classes (same fields as rclpy's)."""

from __future__ import annotations

import numpy as np
import pytest

from langgs_ros.mapping.keyframe_log import SeenTimes
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
                       uids=np.array([0, 1, 2], np.uint32), colors=np.array([[255, 0, 0], [0, 255, 0], [0, 0, 255]], np.uint8),
                       seen=SeenTimes(first_ns=1_500_000_000, last_ns=4_250_000_000),
                       age_s=2.5)
    goal = GoalPose(position=np.array([0.4, 0.0, 0.0]), orientation_xyzw=np.array([0, 0, 0, 1.0]), yaw=0.0,
                    distance_to_object=0.6, clearance=0.5)
    return QueryResult(query="mug", frame_id="map", objects=[obj], goal_pose=goal, message="1 object")


def test_query_response_carries_objects_and_goal(store, f):
    result = make_result()
    resp = cdr_round_trip(store, cv.query_response(f, result, 7, [np.array([0.9, 0.8, 0.7], np.float32)],
                                                   max_points=2))
    assert resp.success and resp.has_goal and resp.goal_pose.header.frame_id == "map"
    assert resp.goal_pose.pose.position.x == pytest.approx(0.4) and resp.goal_pose.pose.orientation.w == 1.0
    (obj,) = resp.objects
    assert obj.label == "mug" and obj.score == pytest.approx(0.8) and obj.bbox_max.z == pytest.approx(0.7)
    assert (obj.first_seen.sec, obj.first_seen.nanosec) == (1, 500_000_000)
    assert (obj.last_seen.sec, obj.last_seen.nanosec) == (4, 250_000_000) and obj.age_s == pytest.approx(2.5)
    cloud = cv.pointcloud2_to_arrays(obj.points)
    assert len(cloud["x"]) == 2  # subsampled to max_points
    assert cloud["rgb"][0].tolist() == [255, 0, 0] and cloud["relevance"][1] == pytest.approx(0.7)
    empty = cv.query_response(f, QueryResult(query="x", frame_id="map", message="nothing"), 0, [], max_points=10)
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


def _keyframe_and_segments(depth: bool = True):
    from langgs_ros.semantics.backend import Segmentation
    from langgs_ros.types import CameraIntrinsics, Frame

    rng = np.random.default_rng(1)
    h, w, dim = 12, 16, 8
    K = CameraIntrinsics(w, h, 20.0, 21.0, 7.5, 5.5)
    T = np.eye(4)
    T[:3, :3] = np.array([[0, 0, 1], [-1, 0, 0], [0, -1, 0]], float)  # optical frame looking along +x
    T[:3, 3] = [1.0, -2.0, 0.5]
    d = rng.uniform(0.5, 3.0, (h, w)).astype(np.float32)
    d[0, 0] = np.nan
    frame = Frame(123_456_789_012, "camera_color_optical_frame", rng.integers(0, 256, (h, w, 3), dtype=np.uint8),
                  K, T, depth=d if depth else None)
    levels, embeddings = [], []
    for n in (3, 2, 1):
        ids = rng.integers(-1, n, (h, w)).astype(np.int32)
        e = rng.normal(size=(n, dim)).astype(np.float32)
        levels.append(ids)
        embeddings.append(e / np.linalg.norm(e, axis=1, keepdims=True))
    return frame, Segmentation(levels, embeddings)


@pytest.mark.parametrize("depth", [True, False])
def test_semantic_frame_round_trip_through_cdr(store, f, depth):
    from langgs_ros.config import InputConfig

    frame, seg = _keyframe_and_segments(depth)
    msg = cdr_round_trip(store, cv.semantic_frame(f, frame, seg, "map"))
    assert msg.embedding_dim == 8 and list(msg.segment_counts) == [3, 2, 1]
    back, seg_back = cv.semantic_frame_to_core(msg, "map", InputConfig())
    assert back.stamp_ns == frame.stamp_ns and back.frame_id == frame.frame_id
    assert np.array_equal(back.rgb, frame.rgb) and back.intrinsics == frame.intrinsics
    assert np.allclose(back.T_world_cam, frame.T_world_cam, atol=1e-9)
    if depth:
        assert np.array_equal(np.isnan(back.depth), np.isnan(frame.depth))
        assert np.allclose(back.depth[~np.isnan(back.depth)], frame.depth[~np.isnan(frame.depth)])
    else:
        assert back.depth is None
    for a, b in zip(seg.levels, seg_back.levels):
        assert np.array_equal(a, b)
    for a, b in zip(seg.embeddings, seg_back.embeddings):
        assert np.array_equal(a, b)
    assert back.T_world_base is None and back.T_world_odom is None  # not in TF: empty frame_id


def test_semantic_frame_carries_the_base_and_odometry_poses(store, f):
    """Split mode: the mapping node gets the camera mount (pose graphs) and map -> odom (re-anchoring)."""
    import dataclasses

    from langgs_ros.config import InputConfig
    from langgs_ros.errors import InputError
    from langgs_ros.geometry import make_transform

    frame, seg = _keyframe_and_segments()
    base = make_transform(np.array([[0.0, -1, 0], [1, 0, 0], [0, 0, 1]]), [0.5, 0.2, 0.0])
    odom = make_transform(np.eye(3), [0.3, -0.1, 0.0])
    frame = dataclasses.replace(frame, T_world_base=base, T_world_odom=odom)
    msg = cdr_round_trip(store, cv.semantic_frame(f, frame, seg, "map"))
    assert msg.base_pose.header.frame_id == "map" and msg.odom_pose.header.frame_id == "map"
    back, _ = cv.semantic_frame_to_core(msg, "map", InputConfig())
    assert np.allclose(back.T_world_base, base, atol=1e-9) and np.allclose(back.T_world_odom, odom, atol=1e-9)
    msg.odom_pose.header.frame_id = "odom"
    with pytest.raises(InputError, match="odometry pose is in 'odom'"):
        cv.semantic_frame_to_core(msg, "map", InputConfig())
    msg.odom_pose.header.frame_id = "map"
    q = msg.base_pose.pose.orientation
    q.x = q.y = q.z = q.w = 0.0  # a zero quaternion: a clear error, not a traceback in the node's callback
    with pytest.raises(InputError, match="base pose: quaternion"):
        cv.semantic_frame_to_core(msg, "map", InputConfig())


def test_malformed_semantic_frames_are_input_errors(store, f):
    from langgs_ros.config import InputConfig
    from langgs_ros.errors import InputError

    frame, seg = _keyframe_and_segments()
    with pytest.raises(InputError, match="the map is in 'odom'"):
        cv.semantic_frame_to_core(cv.semantic_frame(f, frame, seg, "map"), "odom", InputConfig())
    msg = cv.semantic_frame(f, frame, seg, "map")
    msg.embeddings = msg.embeddings[:-1]
    with pytest.raises(InputError, match="embeddings"):
        cv.semantic_frame_to_core(msg, "map", InputConfig())
    msg = cv.semantic_frame(f, frame, seg, "map")
    msg.segments = msg.segments[:2]
    with pytest.raises(InputError, match="3 segment images"):
        cv.semantic_frame_to_core(msg, "map", InputConfig())
    bad = [ids.copy() for ids in seg.levels]
    bad[0][0, 0] = 7  # id without an embedding
    msg = cv.semantic_frame(f, frame, type(seg)(bad, seg.embeddings), "map")
    with pytest.raises(InputError, match="segment count"):
        cv.semantic_frame_to_core(msg, "map", InputConfig())
    msg = cv.semantic_frame(f, frame, seg, "map")
    msg.color.encoding = "yuv422"
    with pytest.raises(InputError, match="color"):
        cv.semantic_frame_to_core(msg, "map", InputConfig())


def test_diagnostics_carry_level_message_and_figures(store, f):
    from langgs_ros.runtime.runtime_status import RuntimeStatus

    status = RuntimeStatus(frames_in=10, frames_used=0, frames_rejected=10, last_error="no CameraInfo yet")
    assert status.level() == 1 and "no CameraInfo yet" in status.summary()
    msg = cdr_round_trip(store, cv.diagnostics(f, cv.header(f, 0, ""), "langgs_ros: mapping_node", status.level(),
                                               status.summary(), status.to_json()))
    (s,) = msg.status
    assert int(s.level) == 1 and s.name == "langgs_ros: mapping_node" and "0/10 frames used" in s.message
    values = {kv.key: kv.value for kv in s.values}
    assert values["frames_rejected"] == "10" and values["last_update_ms"] == ""
    healthy = RuntimeStatus(frames_in=10, frames_used=9, keyframes=3, gaussians=1000)
    assert healthy.level() == 0 and healthy.summary().startswith("3 keyframes, 1000 Gaussians")

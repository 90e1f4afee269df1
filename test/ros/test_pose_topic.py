"""Node camera poses from a PoseStamped / Odometry topic (rclpy-free part)."""

from __future__ import annotations

import numpy as np
import pytest

from langgs_ros.geometry import make_transform
from langgs_ros.ros import conversions as cv
from langgs_ros.ros.messages import RosbagsMessages
from langgs_ros.ros.pose_topic import TopicPoses


@pytest.fixture(scope="module")
def f():
    return RosbagsMessages()


def odometry(f, stamp_ns, x, frame="map", child="base_link"):
    pose = cv.pose_stamped(f, cv.header(f, stamp_ns, frame), np.array([x, 0.0, 0.0]), np.array([0, 0, 0, 1.0]))
    pwc = f.make("geometry_msgs/msg/PoseWithCovariance", pose=pose.pose)
    return f.make("nav_msgs/msg/Odometry", header=pose.header, child_frame_id=child, pose=pwc)


def test_odometry_pose_is_interpolated_and_chained_to_the_camera(f):
    poses = TopicPoses("map", tolerance_s=0.05)
    assert poses.add(odometry(f, 1_000_000_000, 0.0)) is None
    assert poses.add(odometry(f, 2_000_000_000, 1.0)) is None
    mount = make_transform(np.eye(3), np.array([0.0, 0.0, 0.5]))
    asked = []

    def lookup(child, camera):
        asked.append((child, camera))
        return mount

    T = poses.camera_pose(1_250_000_000, "camera_optical", lookup)
    assert asked == [("base_link", "camera_optical")]
    assert np.allclose(T[:3, 3], [0.25, 0.0, 0.5])
    assert "extrapolation" in poses.camera_pose(3_000_000_000, "camera_optical", lookup)

    def missing(child, camera):
        raise LookupError("no such frame")

    assert "no transform base_link -> camera_optical" in poses.camera_pose(1_500_000_000, "camera_optical", missing)


def test_pose_stamped_of_the_camera_and_bad_frames(f):
    poses = TopicPoses("map")
    assert poses.camera_pose(0, "cam", lambda a, b: np.eye(4)) == "no message on the pose topic yet"
    msg = cv.pose_stamped(f, cv.header(f, 5, "odom"), np.zeros(3), np.array([0, 0, 0, 1.0]))
    assert "expected the fixed frame 'map'" in poses.add(msg)
    msg = cv.pose_stamped(f, cv.header(f, 5, "map"), np.array([1.0, 2.0, 3.0]), np.array([0, 0, 0, 1.0]))
    assert poses.add(msg) is None
    T = poses.camera_pose(5, "cam", lambda a, b: pytest.fail("no mount lookup for the camera's own pose"))
    assert np.allclose(T[:3, 3], [1, 2, 3])


def test_history_is_bounded(f):
    poses = TopicPoses("map", history_s=1.0)
    for i in range(50):
        poses.add(odometry(f, i * 100_000_000, float(i)))
    edge = poses._buffer._edges["base_link"]  # noqa: SLF001
    assert len(edge.stamps) <= 12
    assert "extrapolation" in poses.camera_pose(0, "base_link", lambda a, b: np.eye(4))
    assert np.allclose(poses.camera_pose(4_850_000_000, "base_link", lambda a, b: np.eye(4))[0, 3], 48.5)

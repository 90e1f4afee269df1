"""A ``nav_msgs/Path`` (rosbags' or rclpy's message: same fields) as a core :class:`PoseGraph`."""

from __future__ import annotations

from typing import Any

import numpy as np

from langgs_ros.errors import InputError
from langgs_ros.geometry import make_transform, quat_xyzw_to_matrix
from langgs_ros.io.image_codec import stamp_to_ns
from langgs_ros.mapping.pose_correction import PoseGraph

__all__ = ["pose_graph_from_path"]


def pose_graph_from_path(msg: Any, fixed_frame: str) -> PoseGraph:
    """The base-frame poses of ``msg`` in ``fixed_frame``. A pose's own header frame, when set,
    must be the fixed frame too (SLAM publishes its trajectory in it). Raises InputError for a path
    in another frame or without a usable pose."""
    frame = str(msg.header.frame_id).lstrip("/")
    if frame and frame != fixed_frame:
        raise InputError(f"pose graph in frame '{frame}', the map's fixed frame is '{fixed_frame}'")
    stamps, poses = [], []
    for pose in msg.poses:
        own = str(pose.header.frame_id).lstrip("/")
        if own and own != fixed_frame:
            raise InputError(f"pose graph pose in frame '{own}', the map's fixed frame is '{fixed_frame}'")
        p, q = pose.pose.position, pose.pose.orientation
        try:
            R = quat_xyzw_to_matrix([q.x, q.y, q.z, q.w])  # noqa: N806
        except ValueError:
            continue  # a zero or non-finite orientation: skipped like a non-finite position
        stamps.append(stamp_to_ns(pose.header.stamp))
        poses.append(make_transform(R, [p.x, p.y, p.z]))
    if not poses:
        raise InputError("pose graph holds no pose with a valid orientation")
    try:
        return PoseGraph.from_poses(np.array(stamps, np.int64), np.array(poses))
    except ValueError as exc:
        raise InputError(f"pose graph: {exc}") from None

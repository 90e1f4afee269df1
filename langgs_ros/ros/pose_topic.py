"""Camera poses from a ``geometry_msgs/PoseStamped`` or ``nav_msgs/Odometry`` topic (rclpy-free).

The topic carries the pose of a body frame (``input.pose_child_frame``, else the Odometry's
``child_frame_id``) in the fixed frame; the camera's optical frame is chained to it by a mount
transform the node looks up in TF. A PoseStamped without a configured child frame is the pose of
the camera optical frame itself. Poses are interpolated at the image stamp (slerp), never
extrapolated beyond ``tolerance_s``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from langgs_ros.io.image_codec import stamp_to_ns
from langgs_ros.io.tf_buffer import POSE_CHILD, TransformBuffer, TransformLookupError

__all__ = ["TopicPoses"]


class TopicPoses:
    """Bounded history of a pose topic; :meth:`camera_pose` answers T_fixed_camera at a stamp."""

    def __init__(self, fixed_frame: str, child_frame: str = "", tolerance_s: float = 0.05,
                 history_s: float = 30.0) -> None:
        self.fixed_frame = fixed_frame.lstrip("/")
        self.child_frame = child_frame
        self.history_ns = int(history_s * 1e9)
        self._buffer = TransformBuffer(int(tolerance_s * 1e9))
        self._child: str | None = None
        self._newest = 0

    def add(self, msg: Any) -> str | None:
        """Store one pose message; returns why it was ignored (None if stored)."""
        parent = str(msg.header.frame_id).lstrip("/")
        if parent != self.fixed_frame:
            return f"pose in frame '{parent}', expected the fixed frame '{self.fixed_frame}'"
        child = self._buffer.add_pose_message(msg, self.child_frame)
        if self._child is not None and child != self._child:
            return f"pose topic child frame changed from '{self._child}' to '{child}'"
        self._child = child
        stamp = stamp_to_ns(msg.header.stamp)
        if stamp > self._newest:
            self._newest = stamp
            self._buffer.forget_before(stamp - self.history_ns)
        return None

    def camera_pose(self, stamp_ns: int, camera_frame: str,
                    mount: Callable[[str, str], np.ndarray]) -> np.ndarray | str:
        """[4, 4] T_fixed_camera at ``stamp_ns``, or the reason there is none. ``mount(child,
        camera)`` returns T_child_camera (from TF) or raises LookupError."""
        if self._child is None:
            return "no message on the pose topic yet"
        try:
            T_fixed_child = self._buffer.lookup(self.fixed_frame, self._child, stamp_ns)
        except TransformLookupError as exc:
            return f"no pose: {exc}"
        camera_frame = camera_frame.lstrip("/")
        if self._child in (POSE_CHILD, camera_frame):
            return T_fixed_child
        try:
            return T_fixed_child @ mount(self._child, camera_frame)
        except LookupError as exc:
            return f"no transform {self._child} -> {camera_frame} in TF: {exc}"

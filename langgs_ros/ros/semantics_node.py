"""``semantics_node``: the 2D semantics stage as its own process (split mode).

Subscribes the camera like the mapping node (:class:`~langgs_ros.ros.frame_input.FrameInput`),
picks keyframes by camera motion, runs the SAM/SAM2 + OpenCLIP backend (or the oracle) on a worker
thread and publishes each keyframe with its segments and embeddings as ``langgs_ros/SemanticFrame``
on ``semantic_frames_topic`` (reliable, keep last 5). Run it where the GPU is; the mapping node
(``split:=true``) takes the frames over the ROS graph.
"""

from __future__ import annotations

import json
from typing import Any

import rclpy
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.clock import Clock, ClockType
from rclpy.logging import get_logger
from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy

from langgs_ros.errors import LangGSError
from langgs_ros.ros import conversions as cv
from langgs_ros.ros.executor import spin
from langgs_ros.ros.frame_input import FrameInput
from langgs_ros.ros.messages import RclpyMessages
from langgs_ros.ros.parameters import (check_node_parameters, config_from_node, declare_parameters,
                                       semantics_parameter_table)
from langgs_ros.runtime.semantics_runtime import SemanticsRuntime
from langgs_ros.semantics.backend import Segmentation
from langgs_ros.types import Frame

__all__ = ["SemanticsNode", "main"]

class SemanticsNode(Node):
    """See the module docstring."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__("semantics_node", **kwargs)
        from std_msgs.msg import String

        from langgs_ros.msg import SemanticFrame

        table = semantics_parameter_table()
        declare_parameters(self, table)
        value = self.get_parameter
        check_node_parameters({n: value(n).value for n, _, _ in table if "." not in n})
        config = config_from_node(lambda n: value(n).value, table)
        semantics = str(value("semantics").value)
        if semantics not in ("clip", "oracle"):
            raise LangGSError(f"semantics_node: parameter semantics must be clip or oracle, not '{semantics}'")
        self.config = config
        self.messages = RclpyMessages()
        self.pub_frames = self.create_publisher(SemanticFrame, str(value("semantic_frames_topic").value),
                                                QoSProfile(depth=5, reliability=ReliabilityPolicy.RELIABLE))
        self.pub_status = self.create_publisher(String, "~/status", 10)
        self.runtime = SemanticsRuntime(config, semantics, self._publish, int(value("queue_size").value))
        self.get_logger().info(f"loading: {self.runtime.configure()}")
        self.input = FrameInput(self, config.input, semantics == "oracle", self.runtime.submit, self._reject,
                                float(value("tf_timeout_s").value), float(value("sync_slop_s").value),
                                str(value("pose_topic_type").value), MutuallyExclusiveCallbackGroup())
        rate = max(1e-3, float(value("status_rate_hz").value))
        self.create_timer(1.0 / rate, self._publish_status, clock=Clock(clock_type=ClockType.STEADY_TIME))
        self.runtime.start()
        self.get_logger().info(f"active: {self.input.describe()} -> {value('semantic_frames_topic').value}")

    def _publish(self, frame: Frame, seg: Segmentation) -> None:
        self.pub_frames.publish(cv.semantic_frame(self.messages, frame, seg, self.config.input.fixed_frame))

    def _reject(self, reason: str) -> None:
        self.runtime.reject(reason)
        self.get_logger().warn(f"frame skipped: {reason}", throttle_duration_sec=5.0)

    def _publish_status(self) -> None:
        from std_msgs.msg import String

        s = self.runtime.status
        self.pub_status.publish(String(data=json.dumps({
            "frames_in": s.frames_in, "frames_dropped": s.frames_dropped, "frames_rejected": s.frames_rejected,
            "keyframes": s.keyframes, "last_segment_ms": None if s.last_segment_ms != s.last_segment_ms
            else round(s.last_segment_ms, 1), "last_error": s.last_error})))

    def destroy_node(self) -> None:
        self.runtime.stop()
        super().destroy_node()


def main(args: list[str] | None = None) -> None:
    """Entry point of ``ros2 run langgs_ros semantics_node``."""
    rclpy.init(args=args)
    try:
        node = SemanticsNode()
    except LangGSError as exc:
        get_logger("semantics_node").fatal(str(exc))
        if rclpy.ok():
            rclpy.shutdown()
        raise SystemExit(1) from None
    spin(node, num_threads=3, release=lambda: node.runtime.stop(timeout=8.0))


if __name__ == "__main__":
    main()

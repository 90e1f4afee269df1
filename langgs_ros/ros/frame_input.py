"""Camera input of the nodes (rclpy): synchronised color [+ depth] [+ instances] subscriptions,
CameraInfo, and the camera pose from TF or from a pose/odometry topic, turned into core
:class:`~langgs_ros.types.Frame` objects by the same :func:`build_frame` the bag reader uses.

Color-only cameras: with ``input.depth_topic`` empty no depth is subscribed and frames carry no
depth (the mapper estimates it by plane sweep).
"""

from __future__ import annotations

import collections
import json
import threading
import time
from collections.abc import Callable
from typing import Any

import numpy as np
from rclpy.clock import Clock, ClockType
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from rclpy.time import Time

from langgs_ros.config import InputConfig
from langgs_ros.errors import LangGSError
from langgs_ros.geometry import make_transform, quat_xyzw_to_matrix
from langgs_ros.io.frame_builder import build_frame
from langgs_ros.io.image_codec import camera_model_from_info
from langgs_ros.ros.pose_topic import TopicPoses
from langgs_ros.types import Frame

__all__ = ["FrameInput", "LATCHED"]

LATCHED = QoSProfile(depth=1, durability=DurabilityPolicy.TRANSIENT_LOCAL, reliability=ReliabilityPolicy.RELIABLE)


def _transform_matrix(tf: Any) -> np.ndarray:
    t, q = tf.transform.translation, tf.transform.rotation
    return make_transform(quat_xyzw_to_matrix([q.x, q.y, q.z, q.w]), np.array([t.x, t.y, t.z]))


class FrameInput:
    """Subscribes the camera topics of ``config`` on ``node`` and calls ``on_frame(frame)`` for
    every usable synchronised set, ``on_reject(reason)`` otherwise.

    Callbacks never block: a set whose camera pose is not in TF (or on the pose topic) yet, which
    is usual when images are stamped just after the newest transform, waits in a short list that a
    timer retries in arrival order; after ``tf_timeout_s`` it is rejected with tf2's reason."""

    WAIT_RETRY_S = 0.01
    """Period of the retry timer of the frames waiting for their pose, seconds."""
    MAX_WAITING = 30
    """Frames that may wait for their pose at once; beyond that the oldest is rejected."""

    def __init__(self, node: Any, config: InputConfig, with_instances: bool, on_frame: Callable[[Frame], None],
                 on_reject: Callable[[str], None], tf_timeout_s: float, sync_slop_s: float,
                 pose_topic_type: str = "odometry", callback_group: Any = None) -> None:
        import message_filters
        from message_filters import SimpleFilter
        from sensor_msgs.msg import CameraInfo, CompressedImage, Image
        from std_msgs.msg import String
        from tf2_ros import Buffer, TransformListener

        self.node, self.config = node, config
        self.on_frame, self.on_reject = on_frame, on_reject
        self.tf_timeout_s = tf_timeout_s
        self._waiting: collections.deque[tuple[float, tuple[Any, ...], Any]] = collections.deque()
        # wall-clock timer: with use_sim_time, /clock stops with the bag, and the last frames must still time out
        self._wait_timer = node.create_timer(self.WAIT_RETRY_S, self._retry_waiting, callback_group=callback_group,
                                             clock=Clock(clock_type=ClockType.STEADY_TIME))
        self.tf_buffer = Buffer()
        self.tf_listener = TransformListener(self.tf_buffer, node)
        self._camera_model = None
        self._camera_lock = threading.Lock()
        self.labels: dict[int, str] = {}
        self.handles: list[Any] = []
        self.started = time.monotonic()
        self.last_seen: dict[str, float] = {}
        """Monotonic time of the newest message per input (color, depth, instances, camera_info)."""
        self.received: dict[str, int] = collections.Counter()
        """Messages received per input, and ``synchronised`` sets of color [+ depth] [+ instances]."""
        # Color: the raw topic, or <topic>/compressed when only that one publishes (first to speak wins;
        # a topic named .../compressed is taken as CompressedImage only).
        self.color_source: str | None = None
        self._color = SimpleFilter()
        if config.color_topic.endswith("/compressed"):
            candidates = [(CompressedImage, config.color_topic)]
        else:
            candidates = [(Image, config.color_topic), (CompressedImage, config.color_topic.rstrip("/") + "/compressed")]
        for msg_type, topic in candidates:
            self.handles.append(node.create_subscription(
                msg_type, topic, lambda msg, t=topic: self._on_color(t, msg), qos_profile_sensor_data,
                callback_group=callback_group))
        self._color_topics = [t for _, t in candidates]
        self._names = ["color"]
        self.filters: list[Any] = [self._color]
        # Depth: the raw topic, or image_transport's <topic>/compressedDepth when only that one publishes
        self.depth_source: str | None = None
        self._depth_topics: list[str] = []
        if config.depth_topic:
            self._names.append("depth")
            self._depth = SimpleFilter()
            self.filters.append(self._depth)
            if config.depth_topic.endswith("/compressedDepth"):
                depth_candidates = [(CompressedImage, config.depth_topic)]
            else:
                depth_candidates = [(Image, config.depth_topic),
                                    (CompressedImage, config.depth_topic.rstrip("/") + "/compressedDepth")]
            for msg_type, topic in depth_candidates:
                self.handles.append(node.create_subscription(
                    msg_type, topic, lambda msg, t=topic: self._on_depth(t, msg), qos_profile_sensor_data,
                    callback_group=callback_group))
            self._depth_topics = [t for _, t in depth_candidates]
        if with_instances:
            self._names.append("instances")
            self.filters.append(message_filters.Subscriber(node, Image, config.instances_topic,
                                                           qos_profile=qos_profile_sensor_data,
                                                           callback_group=callback_group))
            self.handles.append(node.create_subscription(String, config.labels_topic, self._on_labels, LATCHED))
        for name, sub in zip(self._names[1:], self.filters[1:]):
            if name != "depth":  # depth is counted by _on_depth
                sub.registerCallback(lambda *_, n=name: self._seen(n))
        if len(self.filters) == 1:
            self.filters[0].registerCallback(self._on_images)
            self._sync = None
        else:
            self._sync = message_filters.ApproximateTimeSynchronizer(self.filters, queue_size=10, slop=sync_slop_s)
            self._sync.registerCallback(self._on_images)
        self.handles.append(node.create_subscription(CameraInfo, config.camera_info_topic, self._on_camera_info,
                                                     qos_profile_sensor_data))
        self.poses: TopicPoses | None = None
        if config.pose_topic:
            if pose_topic_type not in ("odometry", "pose"):
                raise LangGSError(f"pose_topic_type must be odometry or pose, not '{pose_topic_type}'")
            from geometry_msgs.msg import PoseStamped
            from nav_msgs.msg import Odometry

            self.poses = TopicPoses(config.fixed_frame, config.pose_child_frame, config.tf_tolerance_s)
            msg_type = Odometry if pose_topic_type == "odometry" else PoseStamped
            self.handles.append(node.create_subscription(msg_type, config.pose_topic, self._on_pose, 50))

    def describe(self) -> str:
        """One line naming the topics in use."""
        pose = f"pose topic {self.config.pose_topic}" if self.poses else f"TF {self.config.fixed_frame} -> image frame"
        depth = " or ".join(self._depth_topics) or "none (color only: plane-sweep depth)"
        color = " or ".join(self._color_topics)
        return f"color {color}, depth {depth}, camera_info {self.config.camera_info_topic}, {pose}"

    def silent_inputs(self, after_s: float) -> list[str]:
        """Inputs on which nothing arrived for ``after_s`` seconds (since start or their last message)."""
        now = time.monotonic()
        topics = {"color": " or ".join(self._color_topics), "camera_info": self.config.camera_info_topic}
        if self.config.depth_topic:
            topics["depth"] = " or ".join(self._depth_topics)
        return [f"nothing on {topic} for {now - self.last_seen.get(name, self.started):.0f} s"
                for name, topic in topics.items() if now - self.last_seen.get(name, self.started) > after_s]

    def _seen(self, name: str) -> None:
        self.last_seen[name] = time.monotonic()
        self.received[name] += 1

    def _on_color(self, topic: str, msg: Any) -> None:
        if self.color_source is None:
            self.color_source = topic
            self.node.get_logger().info(f"color images from {topic}")
        if topic != self.color_source:
            return  # both raw and compressed publish: keep the first one
        self._seen("color")
        self._color.signalMessage(msg)

    def _on_depth(self, topic: str, msg: Any) -> None:
        if self.depth_source is None:
            self.depth_source = topic
            self.node.get_logger().info(f"depth images from {topic}")
        if topic != self.depth_source:
            return  # both raw and compressedDepth publish: keep the first one
        self._seen("depth")
        self._depth.signalMessage(msg)

    def destroy(self) -> None:
        """Remove the subscriptions from the node."""
        for handle in self.handles:
            self.node.destroy_subscription(handle)
        self.node.destroy_timer(self._wait_timer)
        self._waiting.clear()
        for sub in self.filters:
            if hasattr(sub, "sub"):
                self.node.destroy_subscription(sub.sub)
        self.tf_listener.unregister()  # its /tf and /tf_static subscriptions
        self.handles, self.filters, self._sync = [], [], None

    def _on_labels(self, msg: Any) -> None:
        try:
            self.labels = {int(k): str(v) for k, v in json.loads(msg.data).items()}
        except (ValueError, AttributeError) as exc:
            self.node.get_logger().warn(f"ignoring labels message that is not JSON {{id: label}}: {exc}")

    def _on_camera_info(self, msg: Any) -> None:
        self._seen("camera_info")
        try:
            model = camera_model_from_info(msg)
        except LangGSError as exc:
            self.on_reject(f"camera_info: {exc}")
            return
        with self._camera_lock:
            self._camera_model = model

    def _on_pose(self, msg: Any) -> None:
        assert self.poses is not None
        problem = self.poses.add(msg)
        if problem:
            self.on_reject(f"pose topic {self.config.pose_topic}: {problem}")

    def _mount(self, child: str, camera: str) -> np.ndarray:
        try:  # the camera mount is static: the newest transform
            return _transform_matrix(self.tf_buffer.lookup_transform(child, camera, Time()))
        except Exception as exc:  # noqa: BLE001 - tf2 raises several exception types
            raise LookupError(str(exc)) from None

    def _base_in_camera(self, camera: str) -> np.ndarray | None:
        """T_cam_base (the mount, static: the newest), or None if TF lacks ``input.base_frame``."""
        if not self.config.base_frame:
            return None
        try:
            return self._mount(camera, self.config.base_frame)
        except LookupError:
            return None

    def _odom_in_world(self, stamp: Any) -> np.ndarray | None:
        """T_world_odom at the stamp, or None if TF lacks ``input.odom_frame`` there."""
        if not self.config.odom_frame:
            return None
        try:
            tf = self.tf_buffer.lookup_transform(self.config.fixed_frame, self.config.odom_frame, Time.from_msg(stamp))
        except Exception:  # noqa: BLE001 - tf2 raises several exception types
            return None
        return _transform_matrix(tf)

    def _pose(self, frame_id: str, stamp: Any) -> np.ndarray | str:
        if self.poses is not None:
            return self.poses.camera_pose(Time.from_msg(stamp).nanoseconds, frame_id, self._mount)
        try:
            tf = self.tf_buffer.lookup_transform(self.config.fixed_frame, frame_id, Time.from_msg(stamp))
        except Exception as exc:  # noqa: BLE001 - tf2 raises several exception types
            return f"no pose {self.config.fixed_frame} <- {frame_id}: {exc}"
        return _transform_matrix(tf)

    def _on_images(self, *msgs: Any) -> None:
        self.received["synchronised"] += 1
        with self._camera_lock:
            model = self._camera_model
        if model is None:
            self.on_reject(f"no CameraInfo received on {self.config.camera_info_topic} yet")
            return
        if self._waiting or not self._try_frame(msgs, model, final=False):
            # keep the arrival order: behind frames already waiting for their pose
            if len(self._waiting) >= self.MAX_WAITING:
                self._waiting.popleft()
                self.on_reject(f"more than {self.MAX_WAITING} frames waited for their camera pose at once; "
                               "dropped the oldest")
            self._waiting.append((time.monotonic(), msgs, model))

    def _retry_waiting(self) -> None:
        """Timer: frames whose pose arrived meanwhile go on; those past ``tf_timeout_s`` are rejected."""
        now = time.monotonic()
        while self._waiting:
            arrived, msgs, model = self._waiting[0]
            if not self._try_frame(msgs, model, final=now - arrived >= self.tf_timeout_s):
                return  # later frames are stamped later: their pose cannot be there either
            self._waiting.popleft()

    def _try_frame(self, msgs: tuple[Any, ...], model: Any, final: bool) -> bool:
        """Turn one synchronised set into a frame (``on_frame``) or a rejection. Returns False when
        its pose is not available yet and ``final`` is False (the set should wait)."""
        named = dict(zip(self._names, msgs))
        color = named["color"]
        pose = self._pose(str(color.header.frame_id).lstrip("/"), color.header.stamp)
        if isinstance(pose, str):
            if not final:
                return False
            self.on_reject(f"{pose} (waited {self.tf_timeout_s:g} s)")
            return True
        frame = build_frame(color, named.get("depth"), named.get("instances"), model, pose, self.config, self.labels,
                            self._base_in_camera(str(color.header.frame_id).lstrip("/")),
                            self._odom_in_world(color.header.stamp))
        if isinstance(frame, str):
            self.on_reject(frame)
        else:
            self.on_frame(frame)
        return True

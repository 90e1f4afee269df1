"""``mapping_node``: a lifecycle node that maps RGB-D streams into a semantic Gaussian map and
serves ``/query``. The map lives in this process; the query service shares it (no copy).

Lifecycle: configure = parameters validated, backend and map (``map_path``) loaded; activate =
subscriptions, services and timers start; deactivate = they stop; cleanup = the map is saved if
``save_on_shutdown`` and released. All work on frames runs on the runtime's worker thread behind
a bounded latest-wins queue, so callbacks and services never wait for mapping.

Input (:class:`~langgs_ros.ros.frame_input.FrameInput`): ``input.color_topic`` (sensor_msgs/Image
or, ending in ``/compressed``, CompressedImage), ``input.depth_topic`` (empty: color only, depth by
plane sweep), ``input.camera_info_topic``; the camera pose from TF (``input.fixed_frame`` -> image
frame) or from ``input.pose_topic`` (Odometry or PoseStamped, ``pose_topic_type``). With
``split:=true`` the node takes ``langgs_ros/SemanticFrame`` keyframes from the semantics node
instead (segments computed there, on a GPU machine if need be) and loads only the text encoder.

Output: ``~/map_cloud``, ``~/status`` (JSON), ``/diagnostics`` (DiagnosticArray), ``/query/*``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import rclpy
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup, ReentrantCallbackGroup
from rclpy.clock import Clock, ClockType
from rclpy.lifecycle import Node as LifecycleNode
from rclpy.lifecycle import State, TransitionCallbackReturn
from rclpy.qos import QoSProfile, ReliabilityPolicy
from rclpy.time import Time

from langgs_ros.errors import LangGSError
from langgs_ros.io.path_message import pose_graph_from_path
from langgs_ros.ros import conversions as cv
from langgs_ros.ros.executor import spin
from langgs_ros.ros.frame_input import LATCHED, FrameInput
from langgs_ros.runtime.mapping_runtime import MappingRuntime
from langgs_ros.ros.messages import RclpyMessages
from langgs_ros.ros.parameters import (check_node_parameters, config_from_node, declare_parameters,
                                       parameter_table)

__all__ = ["MappingNode", "main"]


class MappingNode(LifecycleNode):
    """See the module docstring."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__("mapping_node", **kwargs)
        declare_parameters(self, parameter_table())
        self.messages = RclpyMessages()
        self.runtime: MappingRuntime | None = None
        self._handles: list[Any] = []
        self._input: FrameInput | None = None
        self._steady = Clock(clock_type=ClockType.STEADY_TIME)  # timers that run on when a bag's /clock stops
        self._corrections_logged = 0
        self._tf: tuple[Any, Any] | None = None  # (Buffer, TransformListener) for the robot's pose

    # -- lifecycle --------------------------------------------------------------------------
    def _param(self, name: str) -> Any:
        return self.get_parameter(name).value

    def on_configure(self, state: State) -> TransitionCallbackReturn:
        try:
            check_node_parameters({n: self._param(n) for n, _, _ in parameter_table() if "." not in n})
            config = config_from_node(self._param, parameter_table())
            semantics = str(self._param("semantics"))
            if semantics == "oracle":
                self.get_logger().warn("semantics:=oracle reads ground-truth instances; synthetic data only")
            self.config = config
            split = bool(self._param("split"))
            if split and semantics == "none":
                raise LangGSError("split:=true needs semantics clip or oracle (the semantics node's backend)")
            self.runtime = MappingRuntime(config, semantics, queue_size=int(self._param("queue_size")), split=split)
            note = self.runtime.configure(str(self._param("map_path")) or None)
        except LangGSError as exc:
            self.get_logger().error(f"configure failed: {exc}")
            return TransitionCallbackReturn.FAILURE
        mode = "segments from the semantics node" if split else f"{semantics} semantics"
        self.get_logger().info(f"configured ({mode}): {note}")
        return TransitionCallbackReturn.SUCCESS

    def on_activate(self, state: State) -> TransitionCallbackReturn:
        from std_msgs.msg import String
        from std_srvs.srv import Trigger

        from langgs_ros.msg import SemanticFrame
        from langgs_ros.srv import Query

        frames_group = MutuallyExclusiveCallbackGroup()
        services_group = ReentrantCallbackGroup()
        if self.runtime.split:
            topic = str(self._param("semantic_frames_topic"))
            reliable = QoSProfile(depth=5, reliability=ReliabilityPolicy.RELIABLE)
            self._handles.append(self.create_subscription(SemanticFrame, topic, self._on_semantic_frame, reliable,
                                                          callback_group=frames_group))
            source = f"SemanticFrame keyframes on {topic}"
            if self.config.input.base_frame:  # the robot's pose for navigate queries: TF from now on
                self._split_tf_buffer()
        else:
            try:
                self._input = FrameInput(self, self.config.input, self.runtime.semantics == "oracle",
                                         self.runtime.submit, self._reject, float(self._param("tf_timeout_s")),
                                         float(self._param("sync_slop_s")), str(self._param("pose_topic_type")),
                                         frames_group)
            except LangGSError as exc:
                self.get_logger().error(f"activate failed: {exc}")
                return TransitionCallbackReturn.FAILURE
            source = self._input.describe()
        if self.config.input.pose_graph_topic:
            from nav_msgs.msg import Path as PathMsg

            self._handles.append(self.create_subscription(
                PathMsg, self.config.input.pose_graph_topic, self._on_pose_graph,
                QoSProfile(depth=2, reliability=ReliabilityPolicy.RELIABLE), callback_group=frames_group))
            source += f"; pose corrections from {self.config.input.pose_graph_topic}"
        self._handles += [
            self.create_subscription(String, "/query_text", self._on_query_text, 10, callback_group=services_group),
            self.create_service(Query, "/query", self._on_query, callback_group=services_group),
            self.create_service(Trigger, "~/save_map", self._on_save, callback_group=services_group),
            self.create_service(Trigger, "~/reset", self._on_reset, callback_group=services_group),
        ]
        self._make_publishers()
        rate = float(self._param("map_publish_rate_hz"))
        if rate > 0:
            self._handles.append(self.create_timer(1.0 / rate, self._publish_map, callback_group=services_group,
                                                   clock=self._steady))
        self._handles.append(self.create_timer(1.0 / max(1e-3, float(self._param("status_rate_hz"))),
                                               self._publish_status, callback_group=services_group,
                                               clock=self._steady))
        self.runtime.start()
        self.get_logger().info(f"active: {source}; map in '{self.config.input.fixed_frame}'")
        return TransitionCallbackReturn.SUCCESS

    def _make_publishers(self) -> None:
        from diagnostic_msgs.msg import DiagnosticArray
        from geometry_msgs.msg import PoseStamped
        from nav_msgs.msg import OccupancyGrid
        from sensor_msgs.msg import Image, PointCloud2
        from std_msgs.msg import String
        from visualization_msgs.msg import MarkerArray

        latched = LATCHED
        self.pub_map = self.create_publisher(PointCloud2, "~/map_cloud", latched)
        self.pub_status = self.create_publisher(String, "~/status", 10)
        self.pub_diagnostics = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self.pub_objects = self.create_publisher(MarkerArray, "/query/objects", latched)
        self.pub_mask = self.create_publisher(PointCloud2, "/query/mask", latched)
        self.pub_goal = self.create_publisher(PoseStamped, "/query/goal_pose", latched)
        # Nav2's bt_navigator and RViz's "2D Goal Pose" use a volatile, reliable /goal_pose
        self.pub_navigate = self.create_publisher(PoseStamped, self.config.query.navigate_topic, 10)
        self.pub_mask_image = self.create_publisher(Image, "/query/mask_image", latched)
        self.pub_grid = (self.create_publisher(OccupancyGrid, "~/occupancy", latched)
                         if self._param("publish_occupancy_grid") else None)
        self._publishers = [p for p in (self.pub_map, self.pub_status, self.pub_diagnostics, self.pub_objects, self.pub_mask,
                                        self.pub_goal, self.pub_navigate, self.pub_mask_image, self.pub_grid)
                            if p is not None]

    def on_deactivate(self, state: State) -> TransitionCallbackReturn:
        if self.runtime is not None:
            self.runtime.stop()
        for handle in self._handles:
            self._destroy(handle)
        if self._input is not None:
            self._input.destroy()
        for pub in getattr(self, "_publishers", []):
            self.destroy_publisher(pub)
        self._handles, self._publishers, self._input = [], [], None
        return TransitionCallbackReturn.SUCCESS

    def _destroy(self, handle: Any) -> None:
        for kind in ("subscription", "service", "timer"):
            if type(handle).__name__.lower() == kind:
                getattr(self, f"destroy_{kind}")(handle)

    def on_cleanup(self, state: State) -> TransitionCallbackReturn:
        self._save_if_configured()
        self.runtime = None
        return TransitionCallbackReturn.SUCCESS

    def on_shutdown(self, state: State) -> TransitionCallbackReturn:
        if self.runtime is not None:
            self.runtime.stop()
        self._save_if_configured()
        return TransitionCallbackReturn.SUCCESS

    def release(self) -> bool:
        """On Ctrl-C or shutdown without a lifecycle transition: stop the worker (joined, so no
        thread is inside torch when the process exits) and save if ``save_on_shutdown``. Returns
        whether the worker stopped (within 8 s: launch escalates to SIGKILL after its timeouts)."""
        if self.runtime is None:
            return True
        stopped = self.runtime.stop(timeout=8.0)
        if not stopped:
            self.get_logger().warn("the mapping worker did not stop within 8 s; exiting without it")
        self._save_if_configured()
        return stopped

    def _save_if_configured(self) -> None:
        path = str(self._param("map_path"))
        if self.runtime is not None and path and self._param("save_on_shutdown"):
            try:
                self.get_logger().info(f"map saved to {self.runtime.save(path)}")
            except (LangGSError, OSError) as exc:
                self.get_logger().error(f"could not save the map to {path}: {exc}")

    # -- input ------------------------------------------------------------------------------
    def _on_semantic_frame(self, msg: Any) -> None:
        try:
            frame, segmentation = cv.semantic_frame_to_core(msg, self.config.input.fixed_frame, self.config.input)
        except LangGSError as exc:
            self._reject(f"SemanticFrame: {exc}")
            return
        self.runtime.submit(frame, segmentation)

    def _on_pose_graph(self, msg: Any) -> None:
        """SLAM's corrected trajectory: re-pose the keyframes it covers (under the map lock; the
        status timer logs what moved)."""
        try:
            self.runtime.apply_pose_graph(pose_graph_from_path(msg, self.config.input.fixed_frame))
        except LangGSError as exc:
            self.get_logger().warn(f"pose graph skipped: {exc}", throttle_duration_sec=5.0)

    def _reject(self, reason: str) -> None:
        self.runtime.reject(reason)
        self.get_logger().warn(f"frame skipped: {reason}", throttle_duration_sec=5.0)

    # -- output -----------------------------------------------------------------------------
    def _stamp_ns(self) -> int:
        return self.get_clock().now().nanoseconds

    def _publish_map(self) -> None:
        xyz, rgb = self.runtime.map_points(int(self._param("map_publish_max_points")))
        hdr = cv.header(self.messages, self._stamp_ns(), self.config.input.fixed_frame)
        self.pub_map.publish(cv.pointcloud2(self.messages, hdr, xyz, rgb))
        if self.pub_grid is not None and len(xyz):
            with self.runtime._lock:  # noqa: SLF001 - the grid is built from the live map
                grid = self.runtime._engine_for_map().grid  # noqa: SLF001
            self.pub_grid.publish(cv.occupancy_grid(self.messages, hdr, grid))

    def _publish_status(self) -> None:
        from std_msgs.msg import String

        s = self.runtime.refresh_status()
        if self._input is not None:
            s.input_warning = "; ".join(self._input.silent_inputs(float(self._param("input_timeout_s"))))
            s.input_messages = dict(self._input.received)
        self.pub_status.publish(String(data=json.dumps(s.to_json())))
        new, self._corrections_logged = s.pose_corrections - self._corrections_logged, s.pose_corrections
        if new > 0:  # pose graphs and map -> odom jumps since the last status (a reset counts from 0)
            self.get_logger().info(s.last_correction + (f" (and {new - 1} earlier correction(s))" if new > 1 else ""))
        hdr = cv.header(self.messages, self._stamp_ns(), "")
        self.pub_diagnostics.publish(cv.diagnostics(self.messages, hdr, f"langgs_ros: {self.get_name()}",
                                                    s.level(), s.summary(), s.to_json()))

    def _split_tf_buffer(self) -> Any:
        """Split mode: a TF buffer of the node's own (listening from its first call on), only for
        the robot's pose."""
        if self._tf is None:
            from tf2_ros import Buffer, TransformListener

            own = Buffer()
            self._tf = (own, TransformListener(own, self))
        return self._tf[0]

    def _robot_xy(self) -> tuple[np.ndarray | None, str]:
        """(x, y) of ``input.base_frame`` in the fixed frame from TF (the newest), or None and why."""
        cfg = self.config.input
        if not cfg.base_frame:
            return None, "input.base_frame is empty, so the robot's position is unknown"
        buffer = self._input.tf_buffer if self._input is not None else self._split_tf_buffer()
        try:
            t = buffer.lookup_transform(cfg.fixed_frame, cfg.base_frame, Time()).transform.translation
        except Exception as exc:  # noqa: BLE001 - tf2 raises several exception types
            return None, f"no pose of {cfg.base_frame} in {cfg.fixed_frame} from TF ({type(exc).__name__})"
        return np.array([t.x, t.y]), ""

    def _answer(self, text: str, threshold: float, max_objects: int, max_age_s: float = 0.0,
                navigate: bool = False) -> tuple[Any, Callable[[], None]]:
        """(the Query response, a function that publishes the answer's topics): the service runs
        the second after its response has gone out, so the caller does not wait for them."""
        threshold = threshold or float(self._param("default_threshold"))
        max_objects = max_objects or int(self._param("default_max_objects"))
        robot, why = self._robot_xy() if navigate else (None, "")
        result = self.runtime.query(text, threshold, max_objects, max_age_s, now_ns=self._stamp_ns(),
                                    navigate_from=robot, max_points=int(self._param("answer_max_points")))
        if navigate and robot is None and result.answered:  # no goal rather than one not planned from the robot
            result.goal_pose, result.goal_object = None, -1
            result.message += f"; navigate: {why}"
        relevance = [o.relevance for o in result.objects]
        stamp = self._stamp_ns()
        f = self.messages
        response = cv.query_response(f, result, stamp, relevance, int(self._param("answer_max_points")))
        self.get_logger().info(f"query '{result.query}': {result.message}")

        def publish() -> None:
            try:
                hdr = cv.header(f, stamp, result.frame_id)
                self.pub_objects.publish(cv.marker_array(f, hdr, result))
                if result.objects:
                    best = result.objects[0]
                    self.pub_mask.publish(cv.pointcloud2(f, hdr, best.points, best.colors))
                if result.goal_pose is not None:
                    self.pub_goal.publish(response.goal_pose)
                    if navigate:  # only an explicit request drives the robot
                        self.pub_navigate.publish(response.goal_pose)
                view = self.runtime.mask_in_last_view(result)
                if view is not None:
                    mask, frame = view
                    self.pub_mask_image.publish(cv.mono8_image(f, cv.header(f, frame.stamp_ns, frame.frame_id), mask))
            except Exception as exc:  # noqa: BLE001 - topics are a courtesy; the answer stands
                self.get_logger().error(f"publishing the answer to '{result.query}' failed: {type(exc).__name__}: {exc}")

        return response, publish

    def _on_query(self, request: Any, response: Any) -> Any:
        try:
            answer, publish = self._answer(request.text, float(request.threshold), int(request.max_objects),
                                           float(request.max_age_s), bool(request.navigate))
        except Exception as exc:  # noqa: BLE001 - a failing query answers; it never takes the service down
            self.get_logger().error(f"query '{request.text[:80]}' failed: {type(exc).__name__}: {exc}")
            response.success, response.message = False, f"the query failed: {type(exc).__name__}: {exc}"
            return response
        for name in ("success", "message", "objects", "has_goal", "goal_pose", "goal_object", "path_length_m"):
            setattr(response, name, getattr(answer, name))
        if self.executor is not None:  # runs once this callback has returned and the response is sent
            self.executor.create_task(publish)
        else:
            publish()
        return response

    def _on_query_text(self, msg: Any) -> None:
        try:
            self._answer(msg.data, 0.0, 0)[1]()
        except Exception as exc:  # noqa: BLE001 - same as the service
            self.get_logger().error(f"query '{msg.data[:80]}' failed: {type(exc).__name__}: {exc}")

    def _on_save(self, request: Any, response: Any) -> Any:
        path = str(self._param("map_path"))
        if not path:
            response.success, response.message = False, "parameter map_path is empty; set it to a directory"
            return response
        try:
            response.success, response.message = True, f"saved {self.runtime.save(Path(path))}"
        except (LangGSError, OSError) as exc:
            response.success, response.message = False, f"could not save the map: {exc}"
        return response

    def _on_reset(self, request: Any, response: Any) -> Any:
        try:
            self.runtime.reset()
            response.success, response.message = True, "map cleared"
        except LangGSError as exc:
            response.success, response.message = False, str(exc)
        return response


def main(args: list[str] | None = None) -> None:
    """Entry point of ``ros2 run langgs_ros mapping_node``; the launch file drives the lifecycle."""
    rclpy.init(args=args)
    node = MappingNode()
    spin(node, num_threads=4, release=node.release)


if __name__ == "__main__":
    main()

"""launch_testing, live: bad camera input is reported on ``/diagnostics`` as WARN with its reason
(issue 15): a topic on which nothing arrives, images before any CameraInfo, an image encoding the
node cannot decode, a camera frame with no TF; the node runs color-only (``depth_topic:=''``). Runs where ROS 2 is installed (``colcon test``); skipped elsewhere.
"""

from __future__ import annotations

import pytest

rclpy = pytest.importorskip("rclpy", reason="ROS 2 (rclpy) is not installed; launch tests need a ROS 2 workspace")
launch_testing = pytest.importorskip("launch_testing", reason="launch_testing is not installed")

import tempfile  # noqa: E402
import time  # noqa: E402
import unittest  # noqa: E402
from pathlib import Path  # noqa: E402

import launch_testing.actions  # noqa: E402
import launch_testing.asserts  # noqa: E402
import numpy as np  # noqa: E402
import yaml  # noqa: E402
from ament_index_python.packages import get_package_share_directory  # noqa: E402
from launch import LaunchDescription  # noqa: E402
from launch.actions import IncludeLaunchDescription  # noqa: E402
from launch.launch_description_sources import PythonLaunchDescriptionSource  # noqa: E402


@pytest.mark.launch_test
def generate_test_description():
    work = Path(tempfile.mkdtemp(prefix="langgs_launch_inputs_"))
    share = Path(get_package_share_directory("langgs_ros"))
    params = yaml.safe_load((share / "config" / "mapping_node.yaml").read_text())
    params["/**"]["ros__parameters"].update({"input_timeout_s": 2.0, "status_rate_hz": 4.0,
                                             "refine.background_iterations_per_second": 0.0})
    config = work / "params.yaml"
    config.write_text(yaml.safe_dump(params))
    mapping = IncludeLaunchDescription(
        PythonLaunchDescriptionSource(str(share / "launch" / "mapping.launch.py")),
        launch_arguments={"semantics": "none", "depth_topic": "", "config": str(config)}.items())
    return LaunchDescription([mapping, launch_testing.actions.ReadyToTest()]), {}


class TestBadInputDiagnostics(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        rclpy.init()
        cls.node = rclpy.create_node("langgs_inputs_test")

    @classmethod
    def tearDownClass(cls):
        cls.node.destroy_node()
        rclpy.shutdown()

    def setUp(self):
        from diagnostic_msgs.msg import DiagnosticArray
        from rclpy.qos import qos_profile_sensor_data
        from sensor_msgs.msg import CameraInfo, Image
        from tf2_ros import StaticTransformBroadcaster

        self.diagnostics: list = []
        self.node.create_subscription(DiagnosticArray, "/diagnostics", self.diagnostics.append, 10)
        self.pub_color = self.node.create_publisher(Image, "/camera/color/image_raw", qos_profile_sensor_data)
        self.pub_info = self.node.create_publisher(CameraInfo, "/camera/color/camera_info", qos_profile_sensor_data)
        self.tf = StaticTransformBroadcaster(self.node)

    def _wait_warn(self, words: str, timeout: float = 30.0, publish=None) -> str:
        """Spin (calling ``publish`` every 0.2 s) until a WARN diagnostic contains ``words``."""
        deadline = time.monotonic() + timeout
        seen = ""
        while time.monotonic() < deadline:
            if publish is not None:
                publish()
            rclpy.spin_once(self.node, timeout_sec=0.2)
            for array in self.diagnostics:
                for status in array.status:
                    if status.name.startswith("langgs_ros"):
                        level = status.level[0] if isinstance(status.level, bytes) else int(status.level)
                        seen = f"level {level}: {status.message}"
                        if level == 1 and words in status.message:
                            return status.message
            self.diagnostics.clear()
        self.fail(f"no WARN with '{words}' on /diagnostics within {timeout} s (last: {seen})")

    def _image(self, encoding: str, frame_id: str):
        from sensor_msgs.msg import Image

        msg = Image(height=48, width=64, encoding=encoding, step=64 * 3, is_bigendian=0)
        msg.header.frame_id = frame_id
        msg.header.stamp = self.node.get_clock().now().to_msg()
        msg.data = np.full(48 * 64 * 3, 100, np.uint8).tobytes()
        return msg

    def _info(self, frame_id: str):
        from sensor_msgs.msg import CameraInfo

        msg = CameraInfo(height=48, width=64, distortion_model="plumb_bob")
        msg.header.frame_id = frame_id
        msg.header.stamp = self.node.get_clock().now().to_msg()
        msg.k = [50.0, 0.0, 31.5, 0.0, 50.0, 23.5, 0.0, 0.0, 1.0]
        msg.d = [0.0] * 5
        return msg

    def test_bad_inputs_are_warned_with_their_reason(self, proc_info):
        from geometry_msgs.msg import TransformStamped

        # nothing arrives yet: the silent topics are named
        self._wait_warn("nothing on /camera/color/image_raw", timeout=60.0)
        # images before any CameraInfo
        self._wait_warn("no CameraInfo", publish=lambda: self.pub_color.publish(self._image("rgb8", "cam")))
        # an encoding the node cannot decode (CameraInfo now present, TF too)
        t = TransformStamped()
        t.header.frame_id, t.child_frame_id = "map", "cam"
        t.transform.rotation.w = 1.0
        self.tf.sendTransform(t)

        def publish(encoding: str, frame_id: str):
            def go():
                self.pub_info.publish(self._info(frame_id))
                self.pub_color.publish(self._image(encoding, frame_id))
            return go

        self._wait_warn("unsupported color encoding 'yuv422'", publish=publish("yuv422", "cam"))
        # a camera frame TF does not know
        self._wait_warn("no pose", publish=publish("rgb8", "unknown_cam"))


@launch_testing.post_shutdown_test()
class TestCleanExit(unittest.TestCase):
    def test_every_process_exits_cleanly_on_sigint(self, proc_info):
        launch_testing.asserts.assertExitCodes(proc_info)

"""launch_testing: mapping_node comes up with the oracle backend, maps a replayed synthetic bag and
answers /query. Runs where ROS 2 is installed (colcon test); skipped elsewhere."""

from __future__ import annotations

import pytest

rclpy = pytest.importorskip("rclpy", reason="ROS 2 (rclpy) is not installed; launch tests need a ROS 2 workspace")
launch_testing = pytest.importorskip("launch_testing", reason="launch_testing is not installed")

import tempfile  # noqa: E402
import time  # noqa: E402
import unittest  # noqa: E402
from pathlib import Path  # noqa: E402

from launch import LaunchDescription  # noqa: E402
from launch.actions import ExecuteProcess, IncludeLaunchDescription, TimerAction  # noqa: E402
from launch.launch_description_sources import PythonLaunchDescriptionSource  # noqa: E402
from launch_ros.substitutions import FindPackageShare  # noqa: E402

from langgs_ros.synth.make_bag import SynthSpec, make_synthetic_bag  # noqa: E402

WORK = Path(tempfile.mkdtemp(prefix="langgs_launch_"))


@pytest.mark.launch_test
def generate_test_description():
    synth = make_synthetic_bag(WORK, SynthSpec(width=320, height=240, frames=40))
    share = FindPackageShare("langgs_ros").find("langgs_ros")
    mapping = IncludeLaunchDescription(
        PythonLaunchDescriptionSource(f"{share}/launch/mapping.launch.py"),
        launch_arguments={"semantics": "oracle", "use_sim_time": "true", "map_path": str(WORK / "map")}.items())
    play = ExecuteProcess(cmd=["ros2", "bag", "play", str(synth.bag), "--clock"], output="screen")
    return LaunchDescription([mapping, TimerAction(period=5.0, actions=[play]),
                              launch_testing.actions.ReadyToTest()])


class TestMappingNode(unittest.TestCase):
    def test_query_save_and_reset(self):
        from std_srvs.srv import Trigger

        from langgs_ros.srv import Query

        rclpy.init()
        node = rclpy.create_node("langgs_launch_test")
        try:
            query = node.create_client(Query, "/query")
            save = node.create_client(Trigger, "/mapping_node/save_map")
            self.assertTrue(query.wait_for_service(timeout_sec=60.0), "/query never appeared")
            time.sleep(25.0)  # let the bag play
            future = query.call_async(Query.Request(text="table"))
            rclpy.spin_until_future_complete(node, future, timeout_sec=30.0)
            answer = future.result()
            self.assertTrue(answer.success and answer.objects and answer.has_goal, answer.message)
            self.assertGreater(answer.objects[0].points.width, 0)
            future = save.call_async(Trigger.Request())
            rclpy.spin_until_future_complete(node, future, timeout_sec=30.0)
            self.assertTrue(future.result().success, future.result().message)
            self.assertTrue((WORK / "map" / "map.npz").exists())
        finally:
            node.destroy_node()
            rclpy.shutdown()

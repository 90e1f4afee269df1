"""launch_testing: mapping.launch.py with the oracle backend, in-process (split:=false) and with
semantics_node publishing SemanticFrame keyframes (split:=true), maps a replayed synthetic bag,
answers /query, saves the map, and ``langgs query`` on the saved map gives the same objects and
goal pose. A ``navigate`` request plans from the robot's TF pose: its goal, and only its goal, is
published on ``/goal_pose`` (Nav2's topic), on a free cell of ``~/occupancy``, and equals ``langgs query
--navigate-from`` at the robot's position. Runs where ROS 2 is installed (colcon test); skipped elsewhere."""

from __future__ import annotations

import pytest

rclpy = pytest.importorskip("rclpy", reason="ROS 2 (rclpy) is not installed; launch tests need a ROS 2 workspace")
launch_testing = pytest.importorskip("launch_testing", reason="launch_testing is not installed")

import json  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import unittest  # noqa: E402
from pathlib import Path  # noqa: E402

import launch_testing.actions  # noqa: E402
import yaml  # noqa: E402
from ament_index_python.packages import get_package_share_directory  # noqa: E402
from launch import LaunchDescription  # noqa: E402
from launch.actions import ExecuteProcess, IncludeLaunchDescription, RegisterEventHandler  # noqa: E402
from launch.launch_description_sources import PythonLaunchDescriptionSource  # noqa: E402
from launch_ros.event_handlers import OnStateTransition  # noqa: E402

from langgs_ros.synth.make_bag import SynthSpec, make_synthetic_bag  # noqa: E402

QUERIES = ("table", "red mug")
DRAINED: set[str] = set()  # launches whose bag has been mapped


def _test_config(share: Path, work: Path) -> Path:
    """The installed parameter file without background refinement, so the map the service
    answers on is the map that gets saved."""
    params = yaml.safe_load((share / "config" / "mapping_node.yaml").read_text())
    params["/**"]["ros__parameters"]["refine.background_iterations_per_second"] = 0.0
    params["/**"]["ros__parameters"]["publish_occupancy_grid"] = True
    path = work / "params.yaml"
    path.write_text(yaml.safe_dump(params))
    return path


@pytest.mark.launch_test
@launch_testing.parametrize("split", ["false", "true"])
def generate_test_description(split):
    work = Path(tempfile.mkdtemp(prefix=f"langgs_launch_split_{split}_"))
    synth = make_synthetic_bag(work, SynthSpec(width=320, height=240, frames=40))
    share = Path(get_package_share_directory("langgs_ros"))
    mapping = IncludeLaunchDescription(
        PythonLaunchDescriptionSource(str(share / "launch" / "mapping.launch.py")),
        launch_arguments={"semantics": "oracle", "use_sim_time": "true", "split": split,
                          "map_path": str(work / "map"), "config": str(_test_config(share, work))}.items())
    # play once mapping_node is active (as replay.launch.py does), 2 s later for discovery
    play = ExecuteProcess(cmd=["ros2", "bag", "play", str(synth.bag), "--clock", "--delay", "2"], output="screen")
    start = RegisterEventHandler(OnStateTransition(start_state="activating", goal_state="active", entities=[play],
                                                   handle_once=True))
    return (LaunchDescription([mapping, start,
                               launch_testing.actions.ReadyToTest()]),
            {"play": play, "work": work})


class TestMappingLaunch(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        rclpy.init()
        cls.node = rclpy.create_node("langgs_launch_test")
        from tf2_ros import Buffer, TransformListener

        cls.tf = Buffer()
        cls.tf_listener = TransformListener(cls.tf, cls.node)

    @classmethod
    def tearDownClass(cls):
        cls.node.destroy_node()
        rclpy.shutdown()

    def _mapped(self, proc_info, play, work):
        """Once per launch (each ``split`` has its own ``work`` directory): wait for the bag's end, then for the
        worker to drain its queue (split: the semantics node's too)."""
        if str(work) not in DRAINED:
            proc_info.assertWaitForShutdown(process=play, timeout=180)
            time.sleep(15.0)
            DRAINED.add(str(work))

    def _call(self, client, request, timeout=60.0):
        future = client.call_async(request)
        rclpy.spin_until_future_complete(self.node, future, timeout_sec=timeout)
        self.assertIsNotNone(future.result(), f"no answer from {client.srv_name} within {timeout} s")
        return future.result()

    def test_query_matches_offline_query_on_saved_map(self, proc_info, play, work, split):
        from std_srvs.srv import Trigger

        from langgs_ros.srv import Query

        query = self.node.create_client(Query, "/query")
        save = self.node.create_client(Trigger, "/mapping_node/save_map")
        self.assertTrue(query.wait_for_service(timeout_sec=60.0), "/query never appeared")
        self._mapped(proc_info, play, work)
        answers = {text: self._call(query, Query.Request(text=text)) for text in QUERIES}
        saved = self._call(save, Trigger.Request())
        self.assertTrue(saved.success, saved.message)
        for text, answer in answers.items():
            with self.subTest(text=text, split=split):
                self.assertTrue(answer.success and answer.objects and answer.has_goal, answer.message)
                self.assertEqual(answer.goal_pose.header.frame_id, "map")
                self.assertGreater(answer.objects[0].points.width, 0)
                offline = json.loads(subprocess.run(
                    [sys.executable, "-m", "langgs_ros", "query", str(work / "map"), text, "--json"],
                    check=True, capture_output=True, text=True).stdout)
                self.assertTrue(offline["objects"], offline["message"])
                c = answer.objects[0].centroid
                for got, want in zip((c.x, c.y, c.z), offline["objects"][0]["centroid"]):
                    self.assertAlmostEqual(got, want, delta=1e-3)
                self.assertIsNotNone(offline["goal_pose"])
                p = answer.goal_pose.pose.position
                for got, want in zip((p.x, p.y, p.z), offline["goal_pose"]["position"]):
                    self.assertAlmostEqual(got, want, delta=1e-3)

    def test_navigate_publishes_one_reachable_goal(self, proc_info, play, work, split):
        from geometry_msgs.msg import PoseStamped
        from nav_msgs.msg import OccupancyGrid
        from rclpy.qos import DurabilityPolicy, QoSProfile
        from rclpy.time import Time

        from langgs_ros.srv import Query

        navigate_goals: list = []
        grids: list = []
        self.node.create_subscription(PoseStamped, "/goal_pose", navigate_goals.append, 10)
        latched = QoSProfile(depth=1, durability=DurabilityPolicy.TRANSIENT_LOCAL)
        self.node.create_subscription(OccupancyGrid, "/mapping_node/occupancy", grids.append, latched)
        query = self.node.create_client(Query, "/query")
        self.assertTrue(query.wait_for_service(timeout_sec=60.0), "/query never appeared")
        self._mapped(proc_info, play, work)
        plain = self._call(query, Query.Request(text="red mug"))
        self.assertTrue(plain.success and plain.has_goal, plain.message)
        self.assertEqual(plain.path_length_m, 0.0)
        end = time.monotonic() + 3.0
        while time.monotonic() < end:
            rclpy.spin_once(self.node, timeout_sec=0.1)
        self.assertEqual(navigate_goals, [], "a query without navigate published on /goal_pose")

        robot = self.tf.lookup_transform("map", "base_link", Time()).transform.translation
        answer = self._call(query, Query.Request(text="red mug", navigate=True))
        self.assertTrue(answer.success and answer.has_goal, answer.message)
        self.assertGreaterEqual(answer.goal_object, 0)
        self.assertGreater(answer.path_length_m, 0.0)
        end = time.monotonic() + 10.0
        while not (navigate_goals and grids) and time.monotonic() < end:
            rclpy.spin_once(self.node, timeout_sec=0.1)
        self.assertEqual(len(navigate_goals), 1, "a navigate query publishes its goal once on /goal_pose")
        goal = navigate_goals[0].pose.position
        p = answer.goal_pose.pose.position
        self.assertEqual((goal.x, goal.y), (p.x, p.y))
        self.assertTrue(grids, "no ~/occupancy grid")
        grid = grids[-1]
        i = int((p.x - grid.info.origin.position.x) / grid.info.resolution)
        j = int((p.y - grid.info.origin.position.y) / grid.info.resolution)
        self.assertEqual(grid.data[j * grid.info.width + i], 0, "the goal is not on observed free floor")

        from std_srvs.srv import Trigger

        saved = self._call(self.node.create_client(Trigger, "/mapping_node/save_map"), Trigger.Request())
        self.assertTrue(saved.success, saved.message)

        offline = json.loads(subprocess.run(
            [sys.executable, "-m", "langgs_ros", "query", str(work / "map"), "red mug", "--json",
             f"--navigate-from={robot.x},{robot.y}"], check=True, capture_output=True, text=True).stdout)
        self.assertIsNotNone(offline["goal_pose"], offline["message"])
        for got, want in zip((p.x, p.y), offline["goal_pose"]["position"][:2]):
            self.assertAlmostEqual(got, want, delta=0.05)

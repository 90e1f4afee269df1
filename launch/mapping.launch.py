"""ros2 launch langgs_ros mapping.launch.py [semantics:=clip|oracle|none] [config:=FILE] [map_path:=DIR]
[use_sim_time:=false] [camera:=realsense|oakd|zed|generic] [color_topic:=...] [depth_topic:=...|'']
[camera_info_topic:=...] [split:=false] [start_semantics:=true] [rviz:=false]

``camera:=`` takes the topics the driver publishes by default (langgs_ros/io/camera_presets.py);
a topic argument given overrides it ('auto', the default, takes the preset's).

Starts mapping_node (a lifecycle node) and drives it to active once: configure, then activate when
configuring ends in inactive. Later transitions are the operator's (``ros2 lifecycle set
/mapping_node deactivate`` leaves it inactive). ``rviz:=true`` starts RViz2 only where it is
installed (it is not a dependency: robots are often headless); elsewhere it says so and goes on. ``depth_topic:=''`` maps a color-only camera (plane-sweep depth). ``split:=true``
runs the 2D semantics in semantics_node, which publishes SemanticFrame keyframes to the mapping
node; with ``start_semantics:=false`` this launch starts only the mapping side (run
``ros2 run langgs_ros semantics_node --ros-args --params-file FILE`` on the GPU machine).
"""

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, EmitEvent, LogInfo, OpaqueFunction, RegisterEventHandler
from launch.conditions import IfCondition
from launch.events import matches_action
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution, PythonExpression
from launch_ros.actions import LifecycleNode, Node
from launch_ros.event_handlers import OnStateTransition
from launch_ros.events.lifecycle import ChangeState
from launch_ros.parameter_descriptions import ParameterValue
from launch_ros.substitutions import FindPackageShare
from lifecycle_msgs.msg import Transition


def _is_true(name: str) -> list:
    return ["'", LaunchConfiguration(name), "'.lower() in ('true', '1')"]


def _rviz(context: object) -> list:
    """RViz2 with config/langgs.rviz if rviz2 is installed, else a message (never a failed launch)."""
    from ament_index_python.packages import PackageNotFoundError, get_package_share_directory

    try:
        get_package_share_directory("rviz2")
    except PackageNotFoundError:
        return [LogInfo(msg="rviz:=true but rviz2 is not installed here; mapping runs without it "
                            "(install ros-$ROS_DISTRO-rviz2, or run RViz on another machine)")]
    return [Node(package="rviz2", executable="rviz2", name="rviz2", output="log",
                 arguments=["-d", PathJoinSubstitution([FindPackageShare("langgs_ros"), "config", "langgs.rviz"])],
                 parameters=[{"use_sim_time": ParameterValue(LaunchConfiguration("use_sim_time"), value_type=bool)}])]


def generate_launch_description() -> LaunchDescription:
    share = FindPackageShare("langgs_ros")
    args = {
        "config": (PathJoinSubstitution([share, "config", "mapping_node.yaml"]), "Parameter file of the nodes"),
        "semantics": ("clip", "2D semantics: clip (SAM/SAM2 + OpenCLIP), oracle (synthetic data only), none"),
        "map_path": ("", "Map directory: loaded at start if it holds map.npz, written by ~/save_map"),
        "use_sim_time": ("false", "Use /clock (true when replaying a bag with --clock)"),
        "camera": ("generic", "Camera driver whose default topics to use: realsense, oakd, zed, generic"),
        "color_topic": ("auto", "Color image (ends in /compressed for CompressedImage); auto = the camera's"),
        "depth_topic": ("auto", "Depth registered to color (or its /compressedDepth); '' = color only; "
                                "auto = the camera's"),
        "camera_info_topic": ("auto", "CameraInfo of the color camera; auto = the camera's"),
        "split": ("false", "Run the 2D semantics in semantics_node and send SemanticFrame keyframes to mapping"),
        "start_semantics": ("true", "With split: also start semantics_node here (false: it runs elsewhere)"),
        "rviz": ("false", "Start RViz2 with config/langgs.rviz (map, query mask, boxes, goal)"),
    }
    declared = [DeclareLaunchArgument(name, default_value=default, description=doc)
                for name, (default, doc) in args.items()]

    def text(name: str) -> ParameterValue:  # keeps '' a string parameter
        return ParameterValue(LaunchConfiguration(name), value_type=str)

    camera = {
        "use_sim_time": ParameterValue(LaunchConfiguration("use_sim_time"), value_type=bool),
        "semantics": text("semantics"),
        "camera": text("camera"),
        "input.color_topic": text("color_topic"),
        "input.depth_topic": text("depth_topic"),
        "input.camera_info_topic": text("camera_info_topic"),
    }
    node = LifecycleNode(
        package="langgs_ros", executable="mapping_node", name="mapping_node", namespace="", output="screen",
        sigterm_timeout="15",  # time to join the worker and save (save_on_shutdown) before SIGTERM
        parameters=[LaunchConfiguration("config"), {
            **camera, "map_path": text("map_path"),
            "split": ParameterValue(LaunchConfiguration("split"), value_type=bool)}])
    semantics_node = Node(
        package="langgs_ros", executable="semantics_node", name="semantics_node", output="screen",
        sigterm_timeout="15",
        parameters=[LaunchConfiguration("config"), camera],
        condition=IfCondition(PythonExpression([*_is_true("split"), " and ", *_is_true("start_semantics")])))
    rviz = OpaqueFunction(function=_rviz, condition=IfCondition(LaunchConfiguration("rviz")))
    configure = EmitEvent(event=ChangeState(lifecycle_node_matcher=matches_action(node),
                                            transition_id=Transition.TRANSITION_CONFIGURE))
    activate = RegisterEventHandler(OnStateTransition(
        target_lifecycle_node=node, start_state="configuring", goal_state="inactive", handle_once=True,
        entities=[EmitEvent(event=ChangeState(lifecycle_node_matcher=matches_action(node),
                                              transition_id=Transition.TRANSITION_ACTIVATE))]))
    return LaunchDescription([*declared, node, semantics_node, rviz, activate, configure])

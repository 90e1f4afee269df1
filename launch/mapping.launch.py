"""ros2 launch langgs_ros mapping.launch.py [semantics:=clip|oracle|none] [config:=FILE] [map_path:=DIR]
[use_sim_time:=false] [color_topic:=...] [depth_topic:=...] [camera_info_topic:=...]

Starts mapping_node (a lifecycle node) and drives it to active: configure, then activate once
it is inactive. The split semantics node is not implemented yet (see README).
"""

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, EmitEvent, RegisterEventHandler
from launch.events import matches_action
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import LifecycleNode
from launch_ros.event_handlers import OnStateTransition
from launch_ros.events.lifecycle import ChangeState
from launch_ros.substitutions import FindPackageShare
from lifecycle_msgs.msg import Transition


def generate_launch_description() -> LaunchDescription:
    args = {
        "config": (PathJoinSubstitution([FindPackageShare("langgs_ros"), "config", "mapping_node.yaml"]),
                   "Parameter file of mapping_node"),
        "semantics": ("clip", "2D semantics: clip (SAM/SAM2 + OpenCLIP), oracle (synthetic data only), none"),
        "map_path": ("", "Map directory: loaded at start if it holds map.npz, written by ~/save_map"),
        "use_sim_time": ("false", "Use /clock (true when replaying a bag with --clock)"),
        "color_topic": ("/camera/color/image_raw", "Color image (ends in /compressed for CompressedImage)"),
        "depth_topic": ("/camera/aligned_depth_to_color/image_raw", "Depth registered to color"),
        "camera_info_topic": ("/camera/color/camera_info", "CameraInfo of the color camera"),
    }
    declared = [DeclareLaunchArgument(name, default_value=default, description=doc)
                for name, (default, doc) in args.items()]
    node = LifecycleNode(
        package="langgs_ros", executable="mapping_node", name="mapping_node", namespace="", output="screen",
        parameters=[LaunchConfiguration("config"), {
            "semantics": LaunchConfiguration("semantics"),
            "map_path": LaunchConfiguration("map_path"),
            "use_sim_time": LaunchConfiguration("use_sim_time"),
            "input.color_topic": LaunchConfiguration("color_topic"),
            "input.depth_topic": LaunchConfiguration("depth_topic"),
            "input.camera_info_topic": LaunchConfiguration("camera_info_topic"),
        }])
    configure = EmitEvent(event=ChangeState(lifecycle_node_matcher=matches_action(node),
                                            transition_id=Transition.TRANSITION_CONFIGURE))
    activate = RegisterEventHandler(OnStateTransition(
        target_lifecycle_node=node, goal_state="inactive",
        entities=[EmitEvent(event=ChangeState(lifecycle_node_matcher=matches_action(node),
                                              transition_id=Transition.TRANSITION_ACTIVATE))]))
    return LaunchDescription([*declared, node, activate, configure])

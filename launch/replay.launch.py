"""ros2 launch langgs_ros replay.launch.py bag:=PATH [semantics:=oracle] [rate:=1.0] [delay:=1.0] [map_path:=DIR]

Runs mapping.launch.py with use_sim_time and plays the bag with ``ros2 bag play --clock`` once
mapping_node is active (models loaded, subscriptions up), so the start of the bag is mapped.
Every argument of mapping.launch.py passes through (``config:=``, ``depth_topic:=''``,
``color_topic:=`` ...).
"""

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, ExecuteProcess, IncludeLaunchDescription, RegisterEventHandler
from launch.launch_description_sources import PythonLaunchDescriptionSource
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.event_handlers import OnStateTransition
from launch_ros.substitutions import FindPackageShare


def generate_launch_description() -> LaunchDescription:
    mapping = IncludeLaunchDescription(
        PythonLaunchDescriptionSource(PathJoinSubstitution([FindPackageShare("langgs_ros"), "launch",
                                                            "mapping.launch.py"])),
        launch_arguments={"use_sim_time": "true", "semantics": LaunchConfiguration("semantics"),
                          "map_path": LaunchConfiguration("map_path")}.items())
    play = ExecuteProcess(cmd=["ros2", "bag", "play", LaunchConfiguration("bag"), "--clock",
                               "--rate", LaunchConfiguration("rate"), "--delay", LaunchConfiguration("delay")],
                          output="screen")
    return LaunchDescription([
        DeclareLaunchArgument("bag", description="Bag directory to replay (mcap or sqlite3)"),
        DeclareLaunchArgument("semantics", default_value="clip", description="clip, oracle or none"),
        DeclareLaunchArgument("rate", default_value="1.0", description="Playback rate"),
        DeclareLaunchArgument("delay", default_value="1.0",
                              description="Seconds between the player's start and its first message (time for "
                                          "DDS discovery, so the first frames are not published to nobody)"),
        DeclareLaunchArgument("map_path", default_value="", description="Where ~/save_map writes"),
        mapping,
        RegisterEventHandler(OnStateTransition(start_state="activating", goal_state="active", entities=[play],
                                               handle_once=True)),
    ])

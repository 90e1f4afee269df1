"""langgs_ros: semantic 3D Gaussian maps from RGB-D streams, queried by text.

The core (everything except :mod:`langgs_ros.ros`) is ROS-free: it reads bags with ``rosbags`` and
never imports rclpy. Frames follow REP-103/105: metres, right-handed, a fixed ``map`` frame, cameras
in their optical frame (x right, y down, z forward).
"""

__version__ = "0.1.0"

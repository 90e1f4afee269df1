"""The topics and optical frames common RGB-D camera drivers publish by default, as presets of
``input.*`` (``camera:=realsense`` in the launch file, ``--camera realsense`` for a replay).

Read from each driver's sources and documentation:

* ``realsense``: IntelRealSense/realsense-ros (ros2-master, 4.5x): ``camera_namespace:=camera``,
  ``camera_name:=camera``, depth registered to color only with ``align_depth.enable:=true``;
* ``oakd``: luxonis/depthai-ros (humble/jazzy) ``depthai_ros_driver``: node ``oak``, stereo depth
  aligned to the RGB camera (``i_align_depth``, on by default);
* ``zed``: stereolabs/zed-ros2-wrapper (5.x): ``/<camera_name>/<node_name>/`` = ``/zed/zed_node/``,
  rectified color ``rgb/color/rect/image``, depth ``depth/depth_registered`` (32FC1); the 4.x wrapper
  named color ``rgb/image_rect_color`` and its info ``rgb/camera_info`` (set those topics instead);
* ``generic``: this package's defaults (the ROS image pipeline's usual names).
"""

from __future__ import annotations

from dataclasses import dataclass

from langgs_ros.config import InputConfig
from langgs_ros.errors import ConfigError

__all__ = ["CameraPreset", "PRESETS", "apply_preset"]


@dataclass(frozen=True)
class CameraPreset:
    """Topics of one driver's defaults, and the optical frame its images carry."""

    color_topic: str
    depth_topic: str
    camera_info_topic: str
    optical_frame: str
    note: str = ""


PRESETS: dict[str, CameraPreset] = {
    "realsense": CameraPreset("/camera/camera/color/image_raw", "/camera/camera/aligned_depth_to_color/image_raw",
                              "/camera/camera/color/camera_info", "camera_color_optical_frame",
                              "start the driver with align_depth.enable:=true (depth registered to color)"),
    "oakd": CameraPreset("/oak/rgb/image_raw", "/oak/stereo/image_raw", "/oak/rgb/camera_info",
                         "oak_rgb_camera_optical_frame", "depthai_ros_driver aligns depth to RGB by default"),
    "zed": CameraPreset("/zed/zed_node/rgb/color/rect/image", "/zed/zed_node/depth/depth_registered",
                        "/zed/zed_node/rgb/color/rect/camera_info", "zed_left_camera_frame_optical",
                        "zed-ros2-wrapper 5.x names; 4.x: rgb/image_rect_color and rgb/camera_info"),
    "generic": CameraPreset(InputConfig.color_topic, InputConfig.depth_topic, InputConfig.camera_info_topic, "",
                            "this package's defaults"),
}


def apply_preset(config: InputConfig, name: str) -> CameraPreset:
    """Set the topics of ``config`` to the preset ``name``'s; raises ConfigError for an unknown one."""
    preset = PRESETS.get(name)
    if preset is None:
        raise ConfigError(f"unknown camera preset '{name}' (known: {', '.join(PRESETS)})")
    config.color_topic, config.depth_topic = preset.color_topic, preset.depth_topic
    config.camera_info_topic = preset.camera_info_topic
    return preset

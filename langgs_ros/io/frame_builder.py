"""One :class:`~langgs_ros.types.Frame` from synchronised image messages, a camera model and a pose.

Shared by the bag reader and the ROS node, so both accept and reject exactly the same input.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from langgs_ros.config import InputConfig
from langgs_ros.errors import InputError
from langgs_ros.io.camera_check import distortion_problem, frame_problem, intrinsics_problem, pose_problem
from langgs_ros.io.depth_codec import decode_compressed_depth, is_compressed_depth
from langgs_ros.io.image_codec import (CameraModel, check_image_size, decode_color, decode_compressed_color,
                                       decode_depth, decode_instances, stamp_to_ns)
from langgs_ros.types import Frame

__all__ = ["build_frame"]


def build_frame(color_msg: Any, depth_msg: Any | None, inst_msg: Any | None, model: CameraModel,
                T_world_cam: np.ndarray, config: InputConfig, labels: dict[int, str] | None = None,  # noqa: N803
                T_cam_base: np.ndarray | None = None, T_world_odom: np.ndarray | None = None) -> Frame | str:  # noqa: N803
    """Decode and undistort; returns the frame, or a one-line reason why the input is unusable.

    ``color_msg`` is a sensor_msgs/Image or CompressedImage (told apart by its ``format`` field),
    ``depth_msg`` an Image or an image_transport compressedDepth CompressedImage;
    ``T_world_cam`` [4, 4] is the pose of the image's optical frame in the fixed frame;
    ``T_cam_base`` [4, 4], if known, the pose of the robot base frame in the optical frame;
    ``T_world_odom`` [4, 4], if known, the odometry frame in the fixed frame (kept if it is rigid).
    """
    stamp = stamp_to_ns(color_msg.header.stamp)
    frame_id = str(color_msg.header.frame_id).lstrip("/")
    problem = pose_problem(T_world_cam)
    if problem:
        return f"bad pose: {problem}"
    problem = intrinsics_problem(model.intrinsics) or distortion_problem(model.distortion_model, model.D)
    if problem:
        return f"bad CameraInfo: {problem}"
    try:
        check_image_size(color_msg, config.max_image_pixels)
        rgb = decode_compressed_color(color_msg) if hasattr(color_msg, "format") else decode_color(color_msg)
    except InputError as exc:
        return f"color: {exc}"
    K = model.intrinsics  # noqa: N806
    if rgb.shape[:2] != (K.height, K.width):
        return f"color image {rgb.shape[1]}x{rgb.shape[0]} does not match CameraInfo {K.width}x{K.height}"
    depth = instances = None
    if depth_msg is not None:
        try:
            if is_compressed_depth(depth_msg):  # image_transport's compressedDepth
                depth = decode_compressed_depth(depth_msg, config.max_image_pixels, config.min_depth_m,
                                                config.max_depth_m)
            else:
                check_image_size(depth_msg, config.max_image_pixels)
                depth = decode_depth(depth_msg, config.min_depth_m, config.max_depth_m)
        except InputError as exc:
            return f"depth: {exc}"
        if depth.shape != rgb.shape[:2]:
            return "depth image size differs from color (not registered to color)"
        if not np.isfinite(depth).any():
            return (f"depth: no valid pixel (all 0, NaN, inf or outside "
                    f"{config.min_depth_m:g}..{config.max_depth_m:g} m)")
    if inst_msg is not None:
        try:
            check_image_size(inst_msg, config.max_image_pixels)
            instances = decode_instances(inst_msg)
        except InputError as exc:
            return f"instances: {exc}"
        if instances.shape != rgb.shape[:2]:
            return "instance image size differs from color"
    try:
        rgb = model.undistort(rgb)
        depth = None if depth is None else model.undistort(depth, nearest=True)
        instances = None if instances is None else model.undistort(instances, nearest=True)
    except InputError as exc:
        return f"bad CameraInfo: {exc}"
    T_world_cam = np.asarray(T_world_cam, dtype=np.float64)  # noqa: N806
    T_world_base = None  # noqa: N806
    if T_cam_base is not None and np.all(np.isfinite(T_cam_base)):
        T_world_base = T_world_cam @ np.asarray(T_cam_base, dtype=np.float64)  # noqa: N806
    frame = Frame(stamp_ns=stamp, frame_id=frame_id, rgb=rgb, intrinsics=K, T_world_cam=T_world_cam, depth=depth,
                  instances=instances, labels=dict(labels or {}), T_world_base=T_world_base,
                  T_world_odom=None if T_world_odom is None or pose_problem(T_world_odom) else
                  np.asarray(T_world_odom, dtype=np.float64))
    return frame_problem(frame) or frame

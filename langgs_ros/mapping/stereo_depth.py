"""Depth of color-only keyframes: plane-sweep stereo, then planar filling of its textureless holes.

The fill's candidates include the floor under the robot, the plane through the base frame
(``input.base_frame``, on the floor: REP-105) normal to its z axis, where the frame carries it.

Views are matched in the odometry frame where frames carry map -> odom: a localizer's jump of
map -> odom, or a SLAM correction, then leaves the recent views' relative poses as odometry measured
them. Without it (poses straight in the fixed frame), a correction of the newest keyframe moves the
recent views with it (:meth:`StereoDepth.follow`).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from langgs_ros.config import MappingConfig
from langgs_ros.geometry import invert_transform
from langgs_ros.mapping.plane_fill import PlaneFillConfig, fill_planar_holes
from langgs_ros.mapping.plane_sweep import PlaneSweepConfig, PlaneSweepDepth
from langgs_ros.types import Frame

__all__ = ["StereoDepth", "floor_in_camera"]


def floor_in_camera(frame: Frame) -> np.ndarray | None:
    """The floor plane (n, d with n.x + d = 0) in the frame's optical frame, or None without a base frame."""
    if frame.T_world_base is None:
        return None
    T_cam_base = invert_transform(frame.T_world_cam) @ frame.T_world_base  # noqa: N806
    normal = T_cam_base[:3, 2]
    return np.append(normal, -normal @ T_cam_base[:3, 3])


class StereoDepth:
    """Keeps recent posed color frames; estimates depth for color-only keyframes from them."""

    def __init__(self, config: MappingConfig) -> None:
        self.config = config
        self.sweep = PlaneSweepDepth(PlaneSweepConfig(
            views=config.stereo_views, planes=config.stereo_planes, min_depth_m=config.stereo_min_depth_m,
            max_depth_m=config.stereo_max_depth_m, scale=config.stereo_scale,
            min_confidence=config.stereo_min_confidence, min_baseline_m=config.stereo_min_baseline_m,
            refine_steps=config.stereo_refine_steps, min_consistent_views=config.stereo_consistent_views,
            consistency_tol=config.stereo_consistency_tol))
        self.fill = PlaneFillConfig(scale=config.stereo_scale, max_depth_m=config.stereo_max_depth_m,
                                    border_planes=config.stereo_plane_fill == "planes")
        self._in_odom: bool | None = None  # the kept views are posed in the odometry frame (None: no views yet)

    def _local(self, frame: Frame) -> Frame:
        """``frame`` posed in the odometry frame where it has map -> odom (stereo needs only poses
        relative to recent views, which odometry gives without the jumps of map -> odom), else as it is."""
        in_odom = frame.T_world_odom is not None
        if in_odom != self._in_odom:  # views posed in another frame cannot be matched: start anew
            self.sweep.reset()
            self._in_odom = in_odom
        if not in_odom:
            return frame
        return dataclasses.replace(frame, T_world_cam=invert_transform(frame.T_world_odom) @ frame.T_world_cam)

    def observe(self, frame: Frame) -> None:
        """Remember ``frame`` as a source view (if it moved enough since the last one)."""
        self.sweep.observe(self._local(frame))

    def follow(self, correction: np.ndarray) -> None:
        """A pose correction ``correction`` [4, 4] (new T_world_cam @ old T_cam_world, fixed frame)
        moved the newest keyframe: the recent source views, posed alike, move with it (views posed
        in the odometry frame stay)."""
        if self._in_odom is False:
            self.sweep.follow(correction)

    def estimate(self, frame: Frame) -> tuple[np.ndarray, np.ndarray | None] | None:
        """(depth [H, W] float32 m, NaN invalid; plane-filled pixels [H, W] bool, None when filling
        is off) of ``frame``, or None until an earlier view has enough baseline."""
        depth = self.sweep.estimate(self._local(frame))
        if depth is None or self.config.stereo_plane_fill == "off":
            return None if depth is None else (depth, None)
        floor = floor_in_camera(frame)
        if floor is None and not self.fill.border_planes:
            return depth, None
        return fill_planar_holes(depth, frame.rgb, frame.intrinsics, floor, self.fill)

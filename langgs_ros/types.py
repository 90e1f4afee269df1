"""Core data types shared by bag I/O, semantics, mapping and query.

Conventions (REP-103/105): metres, right-handed frames; a camera pose ``T_world_cam`` maps points
from the camera optical frame (x right, y down, z forward) into the fixed frame (default ``map``).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

__all__ = ["CameraIntrinsics", "Frame"]


@dataclass(frozen=True)
class CameraIntrinsics:
    """Pinhole intrinsics of an undistorted image, in pixels."""

    width: int
    height: int
    fx: float
    fy: float
    cx: float
    cy: float

    @property
    def K(self) -> np.ndarray:  # noqa: N802 - the usual name
        """3x3 camera matrix."""
        return np.array(
            [[self.fx, 0.0, self.cx], [0.0, self.fy, self.cy], [0.0, 0.0, 1.0]], dtype=np.float64
        )

    def scaled(self, factor: float) -> CameraIntrinsics:
        """Intrinsics of the image resized by ``factor`` (pixel centres stay consistent)."""
        return CameraIntrinsics(
            width=int(round(self.width * factor)),
            height=int(round(self.height * factor)),
            fx=self.fx * factor,
            fy=self.fy * factor,
            cx=(self.cx + 0.5) * factor - 0.5,
            cy=(self.cy + 0.5) * factor - 0.5,
        )


@dataclass
class Frame:
    """One synchronised camera observation, undistorted and posed in the fixed frame."""

    stamp_ns: int
    """Header stamp of the color image, nanoseconds."""
    frame_id: str
    """Camera optical frame of the image header."""
    rgb: np.ndarray
    """[H, W, 3] uint8, RGB order."""
    intrinsics: CameraIntrinsics
    T_world_cam: np.ndarray  # noqa: N815 - frames in the name
    """[4, 4] float64 pose of the camera optical frame in the fixed frame."""
    depth: np.ndarray | None = None
    """[H, W] float32 depth along the optical axis in metres; NaN where invalid."""
    instances: np.ndarray | None = None
    """[H, W] uint16 ground-truth instance ids (0 = background), for the oracle backend."""
    labels: dict[int, str] = field(default_factory=dict)
    """Instance id -> label text, for the oracle backend."""
    T_world_base: np.ndarray | None = None  # noqa: N815
    """[4, 4] pose of the robot base frame (``input.base_frame``, on the floor: REP-105) in the
    fixed frame at the image stamp; None where TF has no such frame (hand-held camera, frame folder)."""
    T_world_odom: np.ndarray | None = None  # noqa: N815
    """[4, 4] pose of the odometry frame (``input.odom_frame``) in the fixed frame at the image
    stamp (the localizer's map -> odom); None where TF has no such frame."""

    def with_depth(self, depth: np.ndarray | None) -> Frame:
        """Copy of the frame with another depth image."""
        return replace(self, depth=depth)

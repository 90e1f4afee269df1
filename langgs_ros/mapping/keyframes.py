"""Keyframe selection by camera motion."""

from __future__ import annotations

import numpy as np

__all__ = ["KeyframeSelector"]


class KeyframeSelector:
    """A frame is a keyframe if the camera moved ``translation_m`` or turned ``rotation_deg``
    since the last keyframe (the first frame always is)."""

    def __init__(self, translation_m: float, rotation_deg: float) -> None:
        self.translation_m = translation_m
        self.rotation_rad = np.deg2rad(rotation_deg)
        self.last: np.ndarray | None = None

    def is_keyframe(self, T_world_cam: np.ndarray) -> bool:  # noqa: N803
        """Whether this pose is far enough from the last keyframe; does not record it."""
        if self.last is None:
            return True
        moved = np.linalg.norm(T_world_cam[:3, 3] - self.last[:3, 3])
        R = self.last[:3, :3].T @ T_world_cam[:3, :3]
        angle = np.arccos(np.clip((np.trace(R) - 1) / 2, -1.0, 1.0))
        return bool(moved >= self.translation_m or angle >= self.rotation_rad)

    def accept(self, T_world_cam: np.ndarray) -> None:  # noqa: N803
        """Record a keyframe pose."""
        self.last = T_world_cam.copy()

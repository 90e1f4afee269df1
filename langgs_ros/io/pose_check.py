"""Camera poses that jump are not trusted: one TF sample 50 km off, a localizer's glitch.

A frame whose camera moved farther than ``max_speed_mps`` x dt (plus 5 cm of noise) or turned more
than ``max_turn_rate_dps`` x dt (plus 5 degrees) since the last accepted frame is skipped with the
reason; dt is the stamp difference, at least 0.1 s (close or equal stamps would make any motion a
jump). A new pose that ``confirm`` frames in a row agree on is accepted (the localizer relocalised:
the jump is real), so a bad first pose cannot reject a whole recording.
"""

from __future__ import annotations

import numpy as np

__all__ = ["PoseJumpFilter"]

_MIN_DT_S = 0.1
_SLACK_M = 0.05
_SLACK_DEG = 5.0


def _motion(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """(translation m, rotation deg) from pose ``a`` to ``b`` [4, 4]."""
    cos = (np.trace(a[:3, :3].T @ b[:3, :3]) - 1.0) / 2.0
    return float(np.linalg.norm(b[:3, 3] - a[:3, 3])), float(np.degrees(np.arccos(np.clip(cos, -1.0, 1.0))))


class PoseJumpFilter:
    """Accepts or rejects each frame's pose against the last accepted one (see module docstring).
    ``max_speed_mps`` or ``max_turn_rate_dps`` 0 turns that test off."""

    def __init__(self, max_speed_mps: float, max_turn_rate_dps: float, confirm: int = 3) -> None:
        self.max_speed_mps, self.max_turn_rate_dps, self.confirm = max_speed_mps, max_turn_rate_dps, confirm
        self._last: tuple[int, np.ndarray] | None = None
        self._candidate: list[tuple[int, np.ndarray]] = []
        self.relocalisations = 0

    def _jump(self, before: tuple[int, np.ndarray], stamp_ns: int, pose: np.ndarray) -> str | None:
        dt = max(abs(stamp_ns - before[0]) / 1e9, _MIN_DT_S)
        moved, turned = _motion(before[1], pose)
        if self.max_speed_mps > 0 and moved > self.max_speed_mps * dt + _SLACK_M:
            return (f"camera pose jumps {moved:.2f} m in {dt:.2f} s (faster than input.max_speed_mps "
                    f"{self.max_speed_mps:g})")
        if self.max_turn_rate_dps > 0 and turned > self.max_turn_rate_dps * dt + _SLACK_DEG:
            return (f"camera pose turns {turned:.0f} deg in {dt:.2f} s (faster than input.max_turn_rate_dps "
                    f"{self.max_turn_rate_dps:g})")
        return None

    def check(self, stamp_ns: int, pose: np.ndarray) -> str | None:
        """None to accept the pose (T_world_cam [4, 4] at ``stamp_ns``), else why it is skipped."""
        if self._last is None:
            self._last = (stamp_ns, pose)
            return None
        reason = self._jump(self._last, stamp_ns, pose)
        if reason is None:
            self._last, self._candidate = (stamp_ns, pose), []
            return None
        if self._candidate and self._jump(self._candidate[-1], stamp_ns, pose) is None:
            self._candidate.append((stamp_ns, pose))
        else:
            self._candidate = [(stamp_ns, pose)]
        if len(self._candidate) >= self.confirm:  # several frames agree on the new place: it is real
            self._last, self._candidate = (stamp_ns, pose), []
            self.relocalisations += 1
            return None
        return reason

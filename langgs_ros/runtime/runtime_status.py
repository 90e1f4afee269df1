"""The figures a running mapper reports: frames in, used, dropped and rejected, keyframes,
semantics backlog and lag, background refinement and pose corrections; ``~/status`` publishes them
as JSON and ``/diagnostics`` as one line at a level (OK, or WARN with the reason)."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

__all__ = ["RuntimeStatus"]


@dataclass
class RuntimeStatus:
    """Figures the node publishes on its status topic."""

    frames_in: int = 0
    frames_used: int = 0
    frames_dropped: int = 0
    frames_rejected: int = 0
    keyframes: int = 0
    gaussians: int = 0
    last_update_ms: float = float("nan")
    last_error: str = ""
    errors: int = 0
    """Frames or refinement rounds that raised an unexpected exception (skipped; mapping went on)."""
    input_warning: str = ""
    """What is wrong with the inputs right now (e.g. nothing arrives on a topic); set by the node."""
    keyframes_segmented: int = 0
    """Keyframes whose semantics are fused (the others wait, were dropped or failed)."""
    semantics_pending: int = 0
    """Keyframes in the geometry waiting for their semantics."""
    semantics_dropped: int = 0
    """Keyframes dropped from the full semantics backlog (``semantics.max_pending``)."""
    semantic_lag_s: float = 0.0
    """Recorded time between the newest mapped keyframe and the newest labelled one, s (0: caught up)."""
    semantics_warning: str = ""
    """Why the semantics count as behind (lag above ``semantics.lag_warn_s``); empty when not."""
    input_messages: dict[str, int] = dataclasses.field(default_factory=dict)
    """Messages received per input topic (and synchronised sets); set by the node."""
    refine_iterations: int = 0
    refine_rounds: int = 0
    refine_rolled_back: int = 0
    """Background rounds undone because they raised the loss on held-out frames."""
    last_refine_ms: float = float("nan")
    pose_corrections: int = 0
    """Pose corrections applied: pose graphs (``input.pose_graph_topic``) and map -> odom jumps
    (``input.reanchor_on_map_odom_jump_m``)."""
    last_correction_ms: float = float("nan")
    last_correction: str = ""
    """What the newest correction moved, one line."""

    def to_json(self) -> dict[str, object]:
        """The figures as a JSON-ready dict (NaN -> None)."""
        out: dict[str, object] = {}
        for key, value in dataclasses.asdict(self).items():
            out[key] = None if isinstance(value, float) and math.isnan(value) else (
                round(value, 1) if isinstance(value, float) else value)
        return out

    def level(self) -> int:
        """diagnostic_msgs/DiagnosticStatus level: 0 OK, 1 WARN (frames come in but none is
        used, or most are rejected)."""
        if self.frames_in > 0 and self.frames_used == 0:
            return 1
        return 1 if (self.frames_rejected > self.frames_used or self.errors or self.input_warning
                     or self.semantics_warning) else 0

    def summary(self) -> str:
        """One line for /diagnostics."""
        text = (f"{self.keyframes} keyframes, {self.gaussians} Gaussians, {self.frames_used}/{self.frames_in} "
                f"frames used, {self.frames_dropped} dropped, {self.frames_rejected} rejected"
                + (f", {self.errors} internal errors" if self.errors else "")
                + (f", semantics {self.keyframes_segmented} labelled / {self.semantics_pending} waiting "
                   f"({self.semantic_lag_s:.1f} s behind), {self.semantics_dropped} dropped"
                   if self.keyframes_segmented or self.semantics_pending else "")
                + (f"; inputs: {self.input_warning}" if self.input_warning else "")
                + (f"; {self.semantics_warning}" if self.semantics_warning else ""))
        return text + (f"; last problem: {self.last_error}" if self.level() and self.last_error else "")

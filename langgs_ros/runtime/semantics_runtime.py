"""What the split ``semantics_node`` does, without rclpy: keyframe selection and 2D segmentation
on a worker thread behind a latest-wins queue; each keyframe's segments go to a callback (the node
publishes them as ``langgs_ros/SemanticFrame``).

Keyframes are chosen with the mapping settings (``mapping.keyframe_*``), so the mapping node,
which applies the same rule to the poses it receives, keeps every one of them. The GAGS prompt
density needs the map's depth, which this process does not have: segmentation uses the regular
prompt grid.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from langgs_ros.config import OracleNoiseConfig, PipelineConfig
from langgs_ros.errors import ConfigError, LangGSError
from langgs_ros.mapping.keyframes import KeyframeSelector
from langgs_ros.runtime.worker import QueueWorker
from langgs_ros.semantics.backend import Segmentation, SemanticBackend, create_backend
from langgs_ros.types import Frame

__all__ = ["SemanticsRuntime", "SemanticsStatus"]


@dataclass
class SemanticsStatus:
    frames_in: int = 0
    frames_dropped: int = 0
    frames_rejected: int = 0
    keyframes: int = 0
    last_segment_ms: float = float("nan")
    last_error: str = ""
    errors: int = 0


class SemanticsRuntime(QueueWorker):
    """``submit`` frames; keyframes are segmented on a worker thread and passed to ``publish``."""

    thread_name = "langgs-semantics"

    def __init__(self, config: PipelineConfig, semantics: str, publish: Callable[[Frame, Segmentation], None],
                 queue_size: int = 1, noise: OracleNoiseConfig | None = None) -> None:
        self.config, self.semantics, self.publish = config, semantics, publish
        self._noise = noise
        super().__init__(queue_size)
        self.backend: SemanticBackend | None = None
        self.selector = KeyframeSelector(config.mapping.keyframe_translation_m, config.mapping.keyframe_rotation_deg)
        self.status = SemanticsStatus()

    def configure(self) -> str:
        """Load the backend; raises LangGSError with a clear message (e.g. missing weights)."""
        backend = create_backend(self.semantics, self._noise, self.config.models, self.config.mapping.association_iou,
                                 self.config.semantics)
        if backend is None:
            raise ConfigError("the semantics node needs a backend: clip or oracle")
        self.backend = backend
        return f"{backend.name} backend, {backend.dim}-d embeddings"

    def submit(self, frame: Frame) -> None:
        """Queue a frame; never blocks (the oldest waiting one is dropped when full)."""
        self.status.frames_in += 1
        self._queue.put(frame)
        self.status.frames_dropped = self._queue.dropped

    def reject(self, reason: str) -> None:
        self.status.frames_rejected += 1
        self.status.last_error = reason

    def _handle(self, frame: Frame) -> None:  # type: ignore[override]
        if self.backend is None or not self.selector.is_keyframe(frame.T_world_cam):
            return
        start = time.perf_counter()
        try:
            seg = self.backend.segment(frame)
        except LangGSError as exc:
            self.reject(str(exc))
            return
        self.selector.accept(frame.T_world_cam)
        self.status.keyframes += 1
        self.status.last_segment_ms = 1000 * (time.perf_counter() - start)
        self.publish(frame, seg)

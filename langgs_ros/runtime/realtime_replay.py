"""``langgs replay --realtime``: a recorded bag through the node's own runtime, at the recorded
rate, without ROS: the same latest-wins frame queue, drop rules, asynchronous semantics stage and
background refinement as ``mapping_node``, so what the node would map on this machine is what
this maps. Frames are submitted when their recorded time (divided by ``rate``) comes; reading and
decoding them counts against that time, as a driver's would.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from langgs_ros.config import PipelineConfig
from langgs_ros.errors import InputError
from langgs_ros.io.frame_source import FrameSource, SourceStats
from langgs_ros.io.input_paths import classify_input
from langgs_ros.io.output_paths import check_output_dir
from langgs_ros.runtime.mapping_runtime import MappingRuntime
from langgs_ros.runtime.runtime_status import RuntimeStatus

__all__ = ["RealtimeSummary", "replay_realtime"]


@dataclass
class RealtimeSummary:
    """Outcome of a real-time replay."""

    source: SourceStats
    status: RuntimeStatus
    """The runtime's figures at the end (after draining unless ``drain`` was False)."""
    bag_seconds: float
    """Recorded duration of the frames read, s."""
    seconds: float
    """Wall time from the first frame to the end, draining included, s."""
    drain_seconds: float = 0.0
    lag_samples: list[float] = field(default_factory=list)
    """Semantic lag (recorded s) sampled once per wall second while the bag played."""
    map_path: Path | None = None

    def lag_percentiles(self) -> tuple[float, float, float]:
        """(p50, p95, max) of the sampled semantic lag, s."""
        if not self.lag_samples:
            return 0.0, 0.0, 0.0
        a = np.asarray(self.lag_samples)
        return float(np.percentile(a, 50)), float(np.percentile(a, 95)), float(a.max())


def replay_realtime(path: str | Path, out_dir: str | Path, semantics: str, config: PipelineConfig,
                    rate: float = 1.0, drain: bool = True, queue_size: int = 2,
                    progress: Callable[[str], None] | None = None) -> RealtimeSummary:
    """Play ``path`` (bag or frame folder) at ``rate`` x its recorded speed into a
    :class:`MappingRuntime`, then (``drain``) wait until every accepted keyframe is labelled, and
    save the map to ``out_dir``. ``progress`` gets a line about once a second."""
    from langgs_ros.pipeline import open_source

    if not rate > 0:
        raise InputError(f"--rate must be positive, got {rate}")
    classify_input(path)
    check_output_dir(out_dir, "map directory", create=False)
    runtime = MappingRuntime(config, semantics, queue_size=queue_size, noise=config.oracle)
    runtime.configure()
    say = progress or (lambda _line: None)
    lags: list[float] = []
    start = last = time.monotonic()
    first_ns = last_ns = None
    runtime.start()
    try:
        with open_source(path, config, with_instances=semantics == "oracle") as source:
            for frame in source.frames():
                if first_ns is None:
                    first_ns, start = frame.stamp_ns, time.monotonic()
                last_ns = frame.stamp_ns
                due = start + (frame.stamp_ns - first_ns) / 1e9 / rate
                time.sleep(max(0.0, due - time.monotonic()))
                runtime.submit(frame)
                _correct(runtime, source, say)
                if time.monotonic() - last >= 1.0:
                    last = time.monotonic()
                    lags.append(runtime.refresh_status().semantic_lag_s)
                    say(_line(runtime.status, "playing"))
            _correct(runtime, source, say)
            stats = source.stats
        bag_end = time.monotonic()
        while drain and not runtime.settled():
            time.sleep(0.05)
            if time.monotonic() - last >= 1.0:
                last = time.monotonic()
                say(_line(runtime.refresh_status(), "draining"))
        drain_seconds = time.monotonic() - bag_end
    finally:
        # without draining, a keyframe may be inside the backend for minutes: do not wait for it
        runtime.stop(timeout=30.0 if drain else 2.0)
    status = runtime.refresh_status()
    if status.keyframes == 0:
        raise InputError(f"no usable frames in {path}:\n{stats.summary()}")
    summary = RealtimeSummary(source=stats, status=status,
                              bag_seconds=0.0 if first_ns is None else (last_ns - first_ns) / 1e9,
                              seconds=time.monotonic() - start, drain_seconds=drain_seconds, lag_samples=lags)
    summary.map_path = runtime.save(out_dir)
    return summary


def _correct(runtime: MappingRuntime, source: FrameSource, say: Callable[[str], None]) -> None:
    """Apply a pose graph the bag logged since the last frame, as the node does when one arrives."""
    graph = source.take_pose_graph()
    if graph is not None:
        say(runtime.apply_pose_graph(graph).summary())


def _line(s: RuntimeStatus, phase: str) -> str:
    return (f"{phase}: frames in {s.frames_in}, keyframes mapped {s.keyframes}, segmented {s.keyframes_segmented}, "
            f"waiting {s.semantics_pending}, dropped {s.frames_dropped} frames (queue full) + "
            f"{s.semantics_dropped} keyframes (semantics backlog full), rejected {s.frames_rejected}, "
            f"semantic lag {s.semantic_lag_s:.1f} s")

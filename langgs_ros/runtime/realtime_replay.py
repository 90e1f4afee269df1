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
    gaps_skipped_s: float = 0.0
    """Recorded time skipped over in stamp gaps longer than ``input.max_gap_s``."""
    map_path: Path | None = None

    def lag_percentiles(self) -> tuple[float, float, float]:
        """(p50, p95, max) of the sampled semantic lag, s."""
        if not self.lag_samples:
            return 0.0, 0.0, 0.0
        a = np.asarray(self.lag_samples)
        return float(np.percentile(a, 50)), float(np.percentile(a, 95)), float(a.max())


def replay_realtime(path: str | Path, out_dir: str | Path, semantics: str, config: PipelineConfig,
                    rate: float = 1.0, drain: bool = True, queue_size: int = 2,
                    progress: Callable[[str], None] | None = None, report: Callable[[str], None] | None = None,
                    flags: dict[str, str] | None = None, clock: WallClock | None = None) -> RealtimeSummary:
    """Play ``path`` (bag or frame folder) at ``rate`` x its recorded speed into a
    :class:`MappingRuntime`, then (``drain``) wait until every accepted keyframe is labelled, and
    save the map to ``out_dir``. ``progress`` gets a line about once a second (and one per stamp
    gap longer than ``input.max_gap_s``, which is skipped over); ``report``, ``flags``: see
    :func:`~langgs_ros.pipeline.open_source`; ``clock``: the time it plays by (default the wall's)."""
    from langgs_ros.pipeline import open_source

    if not rate > 0:
        raise InputError(f"--rate must be positive, got {rate}")
    classify_input(path)
    check_output_dir(out_dir, "map directory", create=False)
    clock = clock or WallClock()
    say = progress or (lambda _line: None)
    max_gap_ns = int(config.input.max_gap_s * 1e9)
    lags: list[float] = []
    # the recording is inspected (and refused if unusable) before any model is loaded
    with open_source(path, config, with_instances=semantics == "oracle", flags=flags, report=report) as source:
        runtime = MappingRuntime(config, semantics, queue_size=queue_size, noise=config.oracle)
        runtime.configure()
        if hasattr(clock, "bind"):  # a simulated clock may pace itself by the runtime's work
            clock.bind(runtime)
        start = last = clock.now()
        first_ns = last_ns = None
        skipped_ns = 0  # stamp gaps longer than input.max_gap_s, jumped over
        runtime.start()
        try:
            for frame in source.frames():
                if first_ns is None:
                    first_ns, start = frame.stamp_ns, clock.now()
                elif frame.stamp_ns - last_ns > max_gap_ns:
                    gap = frame.stamp_ns - last_ns
                    skipped_ns += gap
                    say(f"the image stamps jump {gap / 1e9:.1f} s at {(last_ns - first_ns) / 1e9:.1f} s into the "
                        f"recording (more than input.max_gap_s {config.input.max_gap_s:g}): skipped over, not waited for")
                last_ns = frame.stamp_ns
                due = start + (frame.stamp_ns - first_ns - skipped_ns) / 1e9 / rate
                clock.sleep(max(0.0, due - clock.now()))
                runtime.submit(frame)
                _correct(runtime, source, say)
                if clock.now() - last >= 1.0:
                    last = clock.now()
                    lags.append(runtime.refresh_status().semantic_lag_s)
                    say(_line(runtime.status, "playing"))
            _correct(runtime, source, say)
            stats = source.stats
            bag_end = clock.now()
            while drain and not runtime.settled():
                clock.sleep(0.05)
                if clock.now() - last >= 1.0:
                    last = clock.now()
                    say(_line(runtime.refresh_status(), "draining"))
            drain_seconds = clock.now() - bag_end
        finally:
            # without draining, a keyframe may be inside the backend for minutes: do not wait for it
            runtime.stop(timeout=30.0 if drain else 2.0)
    status = runtime.refresh_status()
    if status.keyframes == 0:
        raise InputError(f"no usable frames in {path}:\n{stats.summary()}")
    summary = RealtimeSummary(source=stats, status=status,
                              bag_seconds=0.0 if first_ns is None else (last_ns - first_ns) / 1e9,
                              seconds=clock.now() - start, drain_seconds=drain_seconds, lag_samples=lags,
                              gaps_skipped_s=skipped_ns / 1e9)
    summary.map_path = runtime.save(out_dir)
    return summary


class WallClock:
    """The replay's clock: monotonic seconds and sleeping. Tests substitute a simulated one; a clock
    with a ``bind(runtime)`` method gets the :class:`MappingRuntime` before the first frame."""

    @staticmethod
    def now() -> float:
        return time.monotonic()

    @staticmethod
    def sleep(seconds: float) -> None:
        time.sleep(seconds)


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

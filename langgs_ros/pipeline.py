"""Offline replay: a bag or frame folder -> semantic Gaussian map on disk."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from langgs_ros.config import PipelineConfig, config_to_dict
from langgs_ros.errors import InputError
from langgs_ros.io.bag_reader import BagFrameReader
from langgs_ros.io.frame_folder import FrameFolderReader
from langgs_ros.io.input_paths import classify_input
from langgs_ros.io.output_paths import check_output_dir
from langgs_ros.io.frame_source import FrameSource, SourceStats
from langgs_ros.mapping.map_io import MapData, save_map
from langgs_ros.mapping.mapper import Mapper
from langgs_ros.mapping.pose_correction import CorrectionStats
from langgs_ros.mapping.refine import Refiner
from langgs_ros.mapping.refine_rounds import RefineProgress, RefineReport, refine_in_rounds
from langgs_ros.semantics.backend import create_backend

__all__ = ["ReplayProgress", "ReplaySummary", "open_source", "build_map", "replay"]


@dataclass
class ReplayProgress:
    """Progress of a replay, reported about once a second."""

    frames: int
    keyframes: int
    gaussians: int
    fps: float


@dataclass
class ReplaySummary:
    """Outcome of a replay."""

    source: SourceStats
    keyframes: int
    gaussians: int
    seconds: float
    keyframe_seconds: list[float] = field(default_factory=list)
    map_path: Path | None = None
    stage_seconds: dict[str, float] = field(default_factory=dict)
    """Semantic backend time per stage (masks, embeddings, association), seconds in total."""
    peak_rss_mb: float = 0.0
    """Peak resident memory of the process, MiB."""
    peak_gpu_mb: float = 0.0
    """Peak CUDA memory allocated by torch, MiB (0 without CUDA)."""
    refine: RefineReport | None = None
    """Figures of the refinement after the replay (``--refine``)."""
    corrections: list[CorrectionStats] = field(default_factory=list)
    """Pose corrections applied, in the bag's order: pose graphs (``input.pose_graph_topic``) and
    map -> odom jumps (``input.reanchor_on_map_odom_jump_m``)."""


def open_source(path: str | Path, config: PipelineConfig, with_instances: bool,
                exclude: set[str] | None = None, flags: dict[str, str] | None = None,
                report: Callable[[str], None] | None = None) -> FrameSource:
    """A frame source for a bag (rosbag2 directory or ROS 1 ``.bag``) or a 7-Scenes style frame
    folder. ``report`` gets, line by line, what the recording holds and what the replay uses of it
    (read before any frame); ``flags``: the command-line flag of each ``input.*`` setting, for errors."""
    path = Path(path)
    if classify_input(path) == "folder":
        if with_instances:
            raise InputError(f"{path} is a frame folder without ground-truth instances; "
                             "use --semantics none")
        source: FrameSource = FrameFolderReader(path, max_depth_m=config.input.max_depth_m,
                                                min_depth_m=config.input.min_depth_m, exclude=exclude)
    else:
        source = BagFrameReader(path, config.input, with_instances=with_instances, flags=flags)
    if report is not None:
        try:
            for line in source.inspect():
                report(line)
        except BaseException:
            source.close()
            raise
    return source


def build_map(source: FrameSource, mapper: Mapper,
              progress: Callable[[ReplayProgress], None] | None = None,
              max_frames: int | None = None) -> ReplaySummary:
    """Feed every frame of ``source`` to ``mapper``."""
    start = last = time.perf_counter()
    frames = 0
    kf_seconds: list[float] = []
    corrections: list[CorrectionStats] = []

    def correct() -> None:  # a pose graph is applied where it was logged, after the frames before it
        graph = source.take_pose_graph()
        if graph is not None:
            corrections.append(mapper.apply_pose_graph(graph))

    for frame in source.frames():
        correct()
        frames += 1
        try:
            stats = mapper.integrate(frame)
        except InputError as exc:
            source.stats.skip(str(exc))
            source.stats.frames_used -= 1
            continue
        if stats.reanchored is not None:
            corrections.append(stats.reanchored)
        if stats.keyframe:
            kf_seconds.append(stats.seconds)
            if stats.added == 0 and stats.visible == 0:  # e.g. depth valid only between sampled pixels
                source.stats.skip("keyframe changed nothing in the map (no valid depth at the sampled pixels)")
                source.stats.frames_used -= 1
        now = time.perf_counter()
        if progress and now - last >= 1.0:
            progress(ReplayProgress(frames, mapper.n_keyframes, len(mapper.store), frames / (now - start)))
            last = now
        if max_frames is not None and frames >= max_frames:
            break
    correct()
    return ReplaySummary(source=source.stats, keyframes=mapper.n_keyframes, gaussians=len(mapper.store),
                         seconds=time.perf_counter() - start, keyframe_seconds=kf_seconds, corrections=corrections)


def replay(path: str | Path, out_dir: str | Path, semantics: str, config: PipelineConfig,
           progress: Callable[[ReplayProgress], None] | None = None, refine: bool = False,
           refine_progress: Callable[[RefineProgress], None] | None = None,
           report: Callable[[str], None] | None = None, flags: dict[str, str] | None = None) -> ReplaySummary:
    """Build a map from ``path`` with the ``semantics`` backend and save it to ``out_dir``; with
    ``refine``, then run ``config.refine.iterations`` of refinement on the last ``refine.window``
    keyframes, judged on held-out non-keyframes (:func:`refine_in_rounds`). ``report``: see
    :func:`open_source` (the recording is inspected before any model is loaded)."""
    classify_input(path)  # a clear error for a wrong input path before any model is loaded
    check_output_dir(out_dir, "map directory", create=False)  # before the work, not after it
    with open_source(path, config, with_instances=semantics == "oracle", flags=flags, report=report) as source:
        backend = create_backend(semantics, config.oracle, config.models, config.mapping.association_iou,
                                 config.semantics)
        # blocks beyond the RAM budget wait in the output map directory: the final save writes the rest
        mapper = Mapper(config.mapping, backend, seed=config.oracle.seed, refine=config.refine if refine else None,
                        reanchor_jump_m=config.input.reanchor_on_map_odom_jump_m, directory=out_dir,
                        max_speed_mps=config.input.max_speed_mps, max_turn_rate_dps=config.input.max_turn_rate_dps)
        summary = build_map(source, mapper, progress)
        labels = dict(getattr(source, "labels", {}))
    if summary.keyframes == 0:
        raise InputError(f"no usable frames in {path}:\n{summary.source.summary()}")
    decoder: dict[str, np.ndarray] = {}
    if refine and config.refine.window > 0:
        refiner = Refiner(config.refine, mapper.field, seed=config.oracle.seed)
        if refiner.semantics is not None:
            refiner.semantics.attach(mapper.store)
        views, held_out = list(mapper.views), list(mapper.held_out)
        sub, region = mapper.store.extract(mapper.refine_keys(views + held_out))  # what the views see
        summary.refine = refine_in_rounds(sub, refiner, views, held_out, config.refine.iterations,
                                          config.refine.round_iterations, config.refine.time_budget_s, refine_progress)
        mapper.store.merge(region, sub, refiner.written_fields)
        summary.gaussians = len(mapper.store)
        decoder = refiner.decoder_state()
    data = MapData(
        store=mapper.store, field=mapper.field, fixed_frame=config.input.fixed_frame, semantics=semantics,
        keyframes=mapper.keyframes, floor_z=mapper.floor_z(),
        extra={"source": str(path), "config": config_to_dict(config), "labels": labels,
               "frames_used": summary.source.frames_used, "frames_seen": summary.source.frames_seen,
               "skipped": dict(summary.source.skipped)},
        decoder=decoder)
    summary.map_path = save_map(out_dir, data)
    summary.stage_seconds = dict(getattr(mapper.backend, "stage_seconds", {}))
    summary.peak_rss_mb, summary.peak_gpu_mb = peak_memory_mb()
    return summary


def peak_memory_mb() -> tuple[float, float]:
    """(peak resident memory of this process, peak CUDA memory allocated by torch), MiB."""
    import resource
    import sys

    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux
    if sys.platform == "darwin":
        rss /= 1024.0  # bytes on macOS
    gpu = 0.0
    torch = sys.modules.get("torch")  # only if something already uses torch
    if torch is not None and torch.cuda.is_available() and torch.cuda.is_initialized():
        gpu = torch.cuda.max_memory_allocated() / 2**20
    return rss, gpu

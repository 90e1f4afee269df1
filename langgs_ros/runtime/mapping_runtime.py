"""What the mapping node does, without rclpy: a latest-wins frame queue, a mapping worker thread
that integrates geometry and refines the map in the background when no frame waits, the semantics
stage (:mod:`langgs_ros.runtime.semantics_stage`) that labels keyframes behind it, queries on a
consistent map that say how far semantics lag, save/reset and status figures.

Background refinement has a budget of ``refine.background_iterations_per_second`` (a token
bucket, rounds of at most ``refine.round_iterations``); a round works on a copy of the Gaussians
it refines and stops at the next iteration when a frame arrives, so ingest waits at most one
iteration. The copy is written back under the map lock in one step: queries see the map before
or after a round, never half of it.

The node (:mod:`langgs_ros.ros.mapping_node`) and ``langgs replay --realtime`` only convert
messages (or read a bag) and call this class, so its behaviour (queueing, dropping, keyframes,
query answers) is tested without ROS 2.
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np

from langgs_ros.config import OracleNoiseConfig, PipelineConfig, config_to_dict
from langgs_ros.errors import InputError, LangGSError
from langgs_ros.geometry import invert_transform, project, transform_points
from langgs_ros.mapping.map_io import MapData, load_map, save_map
from langgs_ros.mapping.mapper import Mapper
from langgs_ros.mapping.pose_correction import CorrectionStats, PoseGraph
from langgs_ros.mapping.refine import Refiner, RefineStats
from langgs_ros.query.engine import QueryEngine, QueryResult
from langgs_ros.semantics.backend import Segmentation, create_backend
from langgs_ros.semantics.remote import NO_SEGMENTS, RemoteSegmentation
from langgs_ros.runtime.runtime_status import RuntimeStatus
from langgs_ros.runtime.semantics_stage import SemanticsStage
from langgs_ros.runtime.worker import QueueWorker
from langgs_ros.types import Frame

__all__ = ["MappingRuntime"]


class MappingRuntime(QueueWorker):
    """Owns the map. ``submit`` frames from callbacks; a worker thread integrates them."""

    thread_name = "langgs-mapping"

    def __init__(self, config: PipelineConfig, semantics: str, queue_size: int = 2,
                 noise: OracleNoiseConfig | None = None, split: bool = False) -> None:
        """``split``: segments arrive with the frames (from the semantics node); only the text
        encoder of ``semantics`` is loaded here."""
        self.config = config
        self.semantics = semantics
        self.split = split
        self._noise = noise
        super().__init__(queue_size)
        self._lock = threading.Lock()  # guards the mapper and map snapshot
        self.status = RuntimeStatus()
        self.mapper: Mapper | None = None
        self._engine: QueryEngine | None = None
        self._map_dir: Path | None = None
        self._last_frame: Frame | None = None
        self.refiner: Refiner | None = None
        self._tokens = 0.0
        self._last_tick = time.monotonic()
        self.stage = SemanticsStage(self._lock, config.semantics.max_pending)

    # -- lifecycle --------------------------------------------------------------------------
    def configure(self, map_path: str | Path | None = None) -> str:
        """Create the backend and an empty map, or load ``map_path`` if it holds one. Returns a
        one-line description; raises LangGSError with a clear message on failure."""
        if self.split:
            backend = RemoteSegmentation(self.semantics, self.config.models)
        else:
            backend = create_backend(self.semantics, self._noise, self.config.models,
                                     self.config.mapping.association_iou, self.config.semantics)
        self._map_dir = Path(map_path) if map_path else None
        Mapper.warm_up()
        mapper = self._new_mapper(backend)
        note = "new empty map"
        data = None
        if map_path and (Path(map_path) / "map.npz").exists():
            data = load_map(map_path)
            if data.fixed_frame != self.config.input.fixed_frame:
                raise InputError(f"map {map_path} is in frame '{data.fixed_frame}', the node maps in "
                                 f"'{self.config.input.fixed_frame}'")
            mapper.adopt(data.store, data.field, data.keyframes)
            note = (f"loaded {len(data.store)} Gaussians in {len(data.store.blocks)} blocks from {map_path} "
                    "(read as views and queries need them)")
        with self._lock:
            self.mapper = mapper
            self._engine = None
            self.refiner = self._new_refiner(mapper)
            self.stage.attach(mapper)
        if data is not None and data.decoder and self.refiner is not None and self.refiner.decoder is not None:
            loaded = self.refiner.load_decoder_state(data.decoder)
            note += "; semantic decoder " + ("restored" if loaded else "retrained (saved with other refine settings)")
        self.status.gaussians = len(mapper.store)
        return note

    def _new_mapper(self, backend: object) -> Mapper:
        """A mapper whose blocks beyond the RAM budget wait in ``map_path`` (a temporary directory without)."""
        return Mapper(self.config.mapping, backend, refine=self.config.refine,  # type: ignore[arg-type]
                      reanchor_jump_m=self.config.input.reanchor_on_map_odom_jump_m, directory=self._map_dir,
                      max_speed_mps=self.config.input.max_speed_mps,
                      max_turn_rate_dps=self.config.input.max_turn_rate_dps)

    def _new_refiner(self, mapper: Mapper) -> Refiner | None:
        if self.config.refine.window <= 0:
            return None
        refiner = Refiner(self.config.refine, mapper.field)
        if refiner.semantics is not None:
            if "semantic_features" in mapper.store and \
                    mapper.store.field_shape("semantic_features") != (self.config.refine.semantic_dim,):
                mapper.store.drop_field("semantic_features")  # saved with another semantic_dim: learnt anew
            refiner.semantics.attach(mapper.store)
        return refiner

    def start(self) -> None:
        """Start the mapping worker and the semantics stage (idempotent)."""
        super().start()
        self.stage.start()

    def stop(self, timeout: float = 30.0) -> bool:
        """Stop both workers (see :meth:`QueueWorker.stop`); waiting keyframes keep no semantics."""
        stopped = super().stop(timeout)
        return self.stage.stop(timeout) and stopped

    def process_pending(self) -> int:
        """Integrate the queued frames, then label the waiting keyframes, in this thread (tests)."""
        n = super().process_pending()
        self.stage.process_pending()
        return n

    def settled(self) -> bool:
        """No frame waits for geometry and no keyframe for semantics."""
        return super().settled() and self.stage.settled()

    def refresh_status(self) -> RuntimeStatus:
        """Bring the semantics figures of :attr:`status` up to date; returns it."""
        st, s = self.stage.status, self.status
        s.keyframes_segmented, s.semantics_dropped = st.keyframes_segmented, st.semantics_dropped
        s.semantics_pending, s.semantic_lag_s = self.semantic_lag()
        warn = self.config.semantics.lag_warn_s
        s.semantics_warning = "" if s.semantic_lag_s <= warn else (
            f"semantics lag geometry by {s.semantic_lag_s:.1f} s (> semantics.lag_warn_s {warn:g}): "
            "the 2D backend is slower than the keyframe rate")
        if st.last_error and not s.last_error:
            s.last_error = st.last_error
        return s

    def semantic_lag(self) -> tuple[int, float]:
        """(keyframes waiting for semantics or being labelled, recorded seconds between the newest
        mapped keyframe and the newest labelled one; (0, 0) when none waits)."""
        mapper = self.mapper
        waiting = self.stage.backlog()
        stamps = mapper.keyframes.stamps_ns if mapper is not None else []
        if waiting == 0 or not stamps:
            return 0, 0.0
        labelled = self.stage.status.newest_segmented_ns or stamps[0]
        return waiting, max(0.0, (stamps[-1] - labelled) / 1e9)

    # -- input ------------------------------------------------------------------------------
    def submit(self, frame: Frame, segmentation: Segmentation | None = None) -> None:
        """Queue a frame (with its segments in split mode) for mapping; never blocks (the oldest
        waiting frame is dropped if full)."""
        self.status.frames_in += 1
        self._queue.put((frame, segmentation))
        self.status.frames_dropped = self._queue.dropped

    def reject(self, reason: str) -> None:
        """Count an input that could not become a frame."""
        self.status.frames_rejected += 1
        self.status.last_error = reason

    def _handle(self, item: object) -> None:
        self._integrate(*item)  # type: ignore[misc]

    def _idle_timeout(self) -> float:
        return 0.0 if self._refine_due() else 0.2

    def _idle(self) -> None:
        if self._refine_due():
            self.refine_round(int(self._tokens))

    def _refine_due(self) -> bool:
        """Refill the iteration budget; True when at least one iteration is available."""
        rate = self.config.refine.background_iterations_per_second
        now = time.monotonic()
        cap = max(1, self.config.refine.round_iterations)
        self._tokens = min(self._tokens + rate * (now - self._last_tick), cap)
        self._last_tick = now
        mapper = self.mapper
        return rate > 0 and self.refiner is not None and mapper is not None and bool(mapper.views) \
            and self._tokens >= 1

    def refine_round(self, iterations: int) -> RefineStats | None:
        """One refinement round of at most ``iterations`` on a copy of the map (see module
        docstring); returns its figures, or None when there is nothing to refine."""
        with self._lock:
            mapper, refiner = self.mapper, self.refiner
            if mapper is None or refiner is None:
                return None
            views, held_out = list(mapper.views), list(mapper.held_out)
            # a copy of the blocks the views see: the round works on it without the lock
            sub, region = mapper.store.extract(mapper.refine_keys(views + held_out))
            rnd = refiner.prepare(sub, views, held_out)
        if rnd is None:
            return None
        start = time.perf_counter()
        try:
            stats = refiner.optimise(rnd, iterations, lambda: len(self._queue) > 0 or self._stop.is_set())
        except (RuntimeError, ValueError) as exc:  # e.g. CUDA out of memory: skip the round, keep mapping
            self.status.last_error = f"refinement round failed: {exc}"
            return None
        self._tokens = max(0.0, self._tokens - stats.iterations)
        if stats.iterations:
            with self._lock:
                if self.mapper is mapper:
                    stats = refiner.commit(sub, rnd)
                    if stats.committed and not mapper.store.merge(region, sub, refiner.written_fields):
                        stats.committed = False  # the map moved meanwhile (a pose correction)
                    self.status.gaussians = len(mapper.store)
            self.status.refine_iterations += stats.iterations
            self.status.refine_rounds += 1
            self.status.refine_rolled_back += int(stats.rolled_back)
            self.status.last_refine_ms = 1000 * (time.perf_counter() - start)
        return stats

    def _integrate(self, frame: Frame, segmentation: Segmentation | None = None) -> None:
        """Geometry now, under the map lock; the keyframe then waits for the semantics stage."""
        start = time.perf_counter()
        try:
            with self._lock:
                if self.mapper is None:
                    raise InputError("the map is not configured")
                if self.split and segmentation is None:
                    raise InputError(NO_SEGMENTS)
                if segmentation is not None:  # split mode: segments that cannot fit are refused up front
                    self.mapper.check_segmentation(frame.rgb.shape[:2], segmentation)
                stats, pending = self.mapper.integrate_geometry(frame)
                self._last_frame = frame
        except LangGSError as exc:
            self.reject(str(exc))
            return
        if stats.reanchored is not None:
            self._corrected(stats.reanchored)
        if pending is not None:
            self.stage.submit(pending, segmentation)
        self.status.frames_used += 1
        self.status.keyframes = self.mapper.n_keyframes
        self.status.gaussians = len(self.mapper.store)
        if stats.keyframe:
            self.status.last_update_ms = 1000 * (time.perf_counter() - start)

    # -- map --------------------------------------------------------------------------------
    def _map_data(self, extra: dict | None = None) -> MapData:
        """The live map as :class:`MapData`; ``extra`` None: with the settings (as saved)."""
        assert self.mapper is not None
        return MapData(store=self.mapper.store, field=self.mapper.field, semantics=self.semantics,
                       fixed_frame=self.config.input.fixed_frame, floor_z=self.mapper.floor_z(),
                       keyframes=self.mapper.keyframes,
                       extra={"config": config_to_dict(self.config)} if extra is None else extra)

    def query(self, text: str, threshold: float = 0.0, max_objects: int = 0, max_age_s: float = 0.0,
              now_ns: int | None = None, navigate_from: np.ndarray | None = None, max_points: int = 0) -> QueryResult:
        """Answer ``text`` on the current map. ``threshold``: least relevancy (0..1) of a mask
        Gaussian, 0 = configured default; ``max_objects``: 0 = all; ``max_age_s``: ignore objects
        not seen for longer than that before ``now_ns`` (ROS time, ns; default the newest
        keyframe), 0 = no limit; ``navigate_from``: the robot's (x, y) in the fixed frame (m), for
        a goal at the object it reaches first; ``max_points``: points per object, 0 = all
        (:meth:`QueryEngine.query`)."""
        frame_id = self.config.input.fixed_frame
        if not 0.0 <= threshold < 1.0 or not math.isfinite(threshold):
            return QueryResult(query=str(text), frame_id=frame_id).refuse(f"threshold {threshold} outside [0, 1)")
        if max_objects < 0:
            return QueryResult(query=str(text), frame_id=frame_id).refuse(f"max_objects {max_objects} is negative")
        if max_points < 0:
            return QueryResult(query=str(text), frame_id=frame_id).refuse(f"max_points {max_points} is negative")
        try:
            with self._lock:
                if self.mapper is None:
                    return QueryResult(query=str(text), frame_id=frame_id).refuse("the map is not configured yet")
                engine = self._engine_for_map()
                if threshold > 0:  # relevancy = sigmoid(margin / T)  =>  margin = T * logit(threshold)
                    margin = engine.config.temperature * math.log(threshold / (1 - threshold))
                    engine = QueryEngine(engine.data, replace(engine.config, min_margin=margin), engine.encoder)
                result = engine.query(text, max_age_s, now_ns, max_objects, navigate_from, max_points)
        except Exception as exc:  # noqa: BLE001 - a failing query answers, it never takes the node down
            self._failed(exc)
            return QueryResult(query=str(text), frame_id=frame_id).refuse(
                f"the query failed: {type(exc).__name__}: {exc}")
        return result.note_semantic_lag(*self.semantic_lag())

    def _engine_for_map(self) -> QueryEngine:
        """The query engine of the current map (one per map: its caches follow the map's changes)."""
        assert self.mapper is not None
        if self._engine is None or self._engine.store is not self.mapper.store:
            backend = self.mapper.backend
            encoder = backend.text_encoder if backend is not None else None
            self._engine = QueryEngine(self._map_data(), self.config.query, encoder)
        else:  # the settings do not change while the map lives: no new copy of them per query
            self._engine.data = self._map_data(self._engine.data.extra)
        return self._engine

    def save(self, path: str | Path) -> Path:
        """Write the map atomically to ``path``/map.npz."""
        with self._lock:
            if self.mapper is None:
                raise InputError("the map is not configured")
            data = self._map_data()
            if self.refiner is not None:
                data.decoder = self.refiner.decoder_state()
            pending, lag = self.semantic_lag()  # answers on this map say what was not labelled yet
            data.extra.update(semantics_pending=pending, semantic_lag_s=lag)
            return save_map(path, data)

    def apply_pose_graph(self, graph: PoseGraph) -> CorrectionStats:
        """Re-pose the map with SLAM's corrected trajectory under the map lock: a query sees the
        map before or after the correction, never half of it."""
        with self._lock:
            if self.mapper is None:
                raise InputError("the map is not configured")
            try:
                stats = self.mapper.apply_pose_graph(graph)
            except Exception as exc:  # noqa: BLE001 - counted and logged once; mapping goes on
                self._failed(exc)
                raise InputError(f"the pose graph could not be applied ({type(exc).__name__}: {exc})") from None
        self._corrected(stats)
        return stats

    def _corrected(self, stats: CorrectionStats) -> None:
        self.status.pose_corrections += 1
        self.status.last_correction_ms = 1000 * stats.seconds
        self.status.last_correction = stats.summary()

    def reset(self) -> None:
        """Forget the map (same backend and settings)."""
        with self._lock:
            if self.mapper is None:
                raise InputError("the map is not configured")
            self.mapper = self._new_mapper(self.mapper.backend)
            self.refiner = self._new_refiner(self.mapper)
            self.stage.attach(self.mapper)
            self._engine = None
            self._last_frame = None
        self.status.keyframes = self.status.gaussians = 0

    def map_points(self, max_points: int) -> tuple[np.ndarray, np.ndarray]:
        """(means [M, 3], colors [M, 3] uint8) of at most about ``max_points`` Gaussians, evenly
        subsampled (blocks on disk by the preview kept of them)."""
        with self._lock:
            if self.mapper is None:
                return np.zeros((0, 3), np.float32), np.zeros((0, 3), np.uint8)
            return self.mapper.store.preview(max_points)

    def mask_in_last_view(self, result: QueryResult) -> tuple[np.ndarray, Frame] | None:
        """bool [H, W] of the best object's Gaussians projected into the newest mapped view (and
        that frame), or None without an object or a view. An answer holding a sample of the
        object's Gaussians (``max_points``) is dilated by about the sample's spacing."""
        frame = self._last_frame
        if frame is None or not result.objects:
            return None
        K = frame.intrinsics  # noqa: N806
        pts = transform_points(invert_transform(frame.T_world_cam), result.objects[0].points)
        u, v, z = project(pts, K)
        with np.errstate(invalid="ignore"):
            col, row = np.round(u), np.round(v)
            ok = (z > 0) & (col >= 0) & (col < K.width) & (row >= 0) & (row < K.height)
        col, row, z = col[ok].astype(int), row[ok].astype(int), z[ok]
        if frame.depth is not None:  # hide points behind the observed surface (5 cm slack)
            d = frame.depth[row, col]
            seen = ~(d + 0.05 < z)  # NaN depth: nothing observed in front
            col, row = col[seen], row[seen]
        mask = np.zeros((K.height, K.width), bool)
        mask[row, col] = True
        best = result.objects[0]
        if best.num_gaussians > len(best.points) > 0:  # a sample (max_points): close the gaps between its points
            side = 2 * int(np.ceil(np.sqrt(best.num_gaussians / len(best.points)) / 2)) + 1
            mask = cv2.dilate(mask.astype(np.uint8), cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (side, side))) > 0
        return mask, frame

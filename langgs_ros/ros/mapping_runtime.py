"""What the mapping node does, without rclpy: a latest-wins frame queue, a mapping worker thread,
queries on a consistent map, save/reset and status figures.

The node (:mod:`langgs_ros.ros.mapping_node`) only converts messages and calls this class, so its
behaviour (queueing, dropping, keyframes, query answers) is tested here without ROS 2.
"""

from __future__ import annotations

import collections
import math
import threading
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from langgs_ros.config import OracleNoiseConfig, PipelineConfig, config_to_dict
from langgs_ros.errors import InputError, LangGSError
from langgs_ros.geometry import invert_transform, project, transform_points
from langgs_ros.mapping.map_io import MapData, load_map, save_map
from langgs_ros.mapping.mapper import Mapper
from langgs_ros.query.engine import QueryEngine, QueryResult
from langgs_ros.semantics.backend import create_backend
from langgs_ros.types import Frame

__all__ = ["LatestQueue", "MappingRuntime", "RuntimeStatus"]


class LatestQueue:
    """Bounded FIFO whose ``put`` never blocks: when full, the oldest item is dropped (counted)."""

    def __init__(self, maxsize: int) -> None:
        if maxsize < 1:
            raise ValueError("queue size must be >= 1")
        self._items: collections.deque = collections.deque()
        self._maxsize = maxsize
        self._cond = threading.Condition()
        self._closed = False
        self.dropped = 0

    def put(self, item: object) -> None:
        with self._cond:
            if len(self._items) >= self._maxsize:
                self._items.popleft()
                self.dropped += 1
            self._items.append(item)
            self._cond.notify()

    def get(self, timeout: float | None = None) -> object | None:
        """Oldest item, or None after ``timeout`` seconds or once closed."""
        with self._cond:
            if not self._items and not self._closed:
                self._cond.wait(timeout)
            return self._items.popleft() if self._items else None

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def reopen(self) -> None:
        with self._cond:
            self._closed = False
            self._items.clear()

    def __len__(self) -> int:
        return len(self._items)


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


class MappingRuntime:
    """Owns the map. ``submit`` frames from callbacks; a worker thread integrates them."""

    def __init__(self, config: PipelineConfig, semantics: str, queue_size: int = 2,
                 noise: OracleNoiseConfig | None = None) -> None:
        self.config = config
        self.semantics = semantics
        self._noise = noise
        self._queue = LatestQueue(queue_size)
        self._lock = threading.Lock()  # guards the mapper and map snapshot
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self.status = RuntimeStatus()
        self.mapper: Mapper | None = None
        self._engine: QueryEngine | None = None
        self._engine_key: tuple[int, int] | None = None
        self._last_frame: Frame | None = None

    # -- lifecycle --------------------------------------------------------------------------
    def configure(self, map_path: str | Path | None = None) -> str:
        """Create the backend and an empty map, or load ``map_path`` if it holds one. Returns a
        one-line description; raises LangGSError with a clear message on failure."""
        backend = create_backend(self.semantics, self._noise, self.config.models, self.config.mapping.association_iou)
        mapper = Mapper(self.config.mapping, backend)
        note = "new empty map"
        if map_path and (Path(map_path) / "map.npz").exists():
            data = load_map(map_path)
            if data.fixed_frame != self.config.input.fixed_frame:
                raise InputError(f"map {map_path} is in frame '{data.fixed_frame}', the node maps in "
                                 f"'{self.config.input.fixed_frame}'")
            mapper.adopt(data.gmap, data.field)
            note = f"loaded {len(data.gmap)} Gaussians from {map_path}"
        with self._lock:
            self.mapper = mapper
            self._engine = None
        self.status.gaussians = len(mapper.gmap)
        return note

    def start(self) -> None:
        """Start the worker thread (idempotent)."""
        if self._thread is not None and self._thread.is_alive():
            return
        self._stop.clear()
        self._queue.reopen()
        self._thread = threading.Thread(target=self._work, name="langgs-mapping", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the worker after its current frame; queued frames are discarded."""
        self._stop.set()
        self._queue.close()
        if self._thread is not None:
            self._thread.join(timeout)
        self._thread = None

    # -- input ------------------------------------------------------------------------------
    def submit(self, frame: Frame) -> None:
        """Queue a frame for mapping; never blocks (the oldest waiting frame is dropped if full)."""
        self.status.frames_in += 1
        self._queue.put(frame)
        self.status.frames_dropped = self._queue.dropped

    def reject(self, reason: str) -> None:
        """Count an input that could not become a frame."""
        self.status.frames_rejected += 1
        self.status.last_error = reason

    def process_pending(self) -> int:
        """Integrate every queued frame in this thread (tests and single-threaded use)."""
        n = 0
        while len(self._queue):
            frame = self._queue.get(0)
            if frame is not None:
                self._integrate(frame)  # type: ignore[arg-type]
                n += 1
        return n

    def _work(self) -> None:
        while not self._stop.is_set():
            frame = self._queue.get(timeout=0.2)
            if frame is not None:
                self._integrate(frame)  # type: ignore[arg-type]

    def _integrate(self, frame: Frame) -> None:
        start = time.perf_counter()
        try:
            with self._lock:
                if self.mapper is None:
                    raise InputError("the map is not configured")
                stats = self.mapper.integrate(frame)
                self._last_frame = frame
        except LangGSError as exc:
            self.reject(str(exc))
            return
        self.status.frames_used += 1
        self.status.keyframes = self.mapper.n_keyframes
        self.status.gaussians = len(self.mapper.gmap)
        if stats.keyframe:
            self.status.last_update_ms = 1000 * (time.perf_counter() - start)

    # -- map --------------------------------------------------------------------------------
    def _map_data(self) -> MapData:
        assert self.mapper is not None
        return MapData(gmap=self.mapper.gmap, field=self.mapper.field, semantics=self.semantics,
                       fixed_frame=self.config.input.fixed_frame,
                       extra={"config": config_to_dict(self.config)})

    def query(self, text: str, threshold: float = 0.0, max_objects: int = 0) -> QueryResult:
        """Answer ``text`` on the current map. ``threshold``: least relevancy (0..1) of a mask
        Gaussian, 0 = configured default; ``max_objects``: 0 = all."""
        if not 0.0 <= threshold < 1.0 or not math.isfinite(threshold):
            return QueryResult(query=str(text), frame_id=self.config.input.fixed_frame,
                               message=f"threshold {threshold} outside [0, 1)")
        with self._lock:
            if self.mapper is None:
                return QueryResult(query=str(text), frame_id=self.config.input.fixed_frame,
                                   message="the map is not configured yet")
            engine = self._engine_for_map()
            if threshold > 0:  # relevancy = sigmoid(margin / T)  =>  margin = T * logit(threshold)
                margin = engine.config.temperature * math.log(threshold / (1 - threshold))
                engine = QueryEngine(engine.data, replace(engine.config, min_margin=margin), engine.encoder)
                engine._grid = self._engine._grid  # noqa: SLF001 - same map, same grid
            result = engine.query(text)
        if max_objects > 0:
            result.objects = result.objects[:max_objects]
        return result

    def _engine_for_map(self) -> QueryEngine:
        assert self.mapper is not None
        key = (len(self.mapper.gmap), self.mapper.gmap.revision)
        if self._engine is None or self._engine_key != key:
            backend = self.mapper.backend
            encoder = backend.text_encoder if backend is not None else None
            self._engine = QueryEngine(self._map_data(), self.config.query, encoder)
            self._engine_key = key
        return self._engine

    def save(self, path: str | Path) -> Path:
        """Write the map atomically to ``path``/map.npz."""
        with self._lock:
            if self.mapper is None:
                raise InputError("the map is not configured")
            return save_map(path, self._map_data())

    def reset(self) -> None:
        """Forget the map (same backend and settings)."""
        with self._lock:
            if self.mapper is None:
                raise InputError("the map is not configured")
            self.mapper = Mapper(self.config.mapping, self.mapper.backend)
            self._engine = None
            self._last_frame = None
        self.status.keyframes = self.status.gaussians = 0

    def map_points(self, max_points: int) -> tuple[np.ndarray, np.ndarray]:
        """(means [M, 3], colors [M, 3] uint8) of at most ``max_points`` Gaussians, evenly subsampled."""
        with self._lock:
            if self.mapper is None or len(self.mapper.gmap) == 0:
                return np.zeros((0, 3), np.float32), np.zeros((0, 3), np.uint8)
            gm = self.mapper.gmap
            step = max(1, int(np.ceil(len(gm) / max(1, max_points))))
            return gm["means"][::step].copy(), gm["colors"][::step].copy()

    def colors(self) -> np.ndarray:
        """[N, 3] uint8 colours of the current map's Gaussians."""
        with self._lock:
            return np.zeros((0, 3), np.uint8) if self.mapper is None else self.mapper.gmap["colors"].copy()

    def mask_in_last_view(self, result: QueryResult) -> tuple[np.ndarray, Frame] | None:
        """bool [H, W] of the best object's Gaussians projected into the newest mapped view (and
        that frame), or None without an object or a view."""
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
        return mask, frame

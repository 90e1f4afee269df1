"""Benchmark: a map that grows to a building (issue 31). Figures go to stdout and a JSON file.

``--sizes``: per-keyframe cost against the map's size, in one process. The bundled 640x480 RGB-D room
(oracle semantics, ``pixel_stride`` 2) is mapped into maps that already hold 0.1M, 1M, 5M and 20M
Gaussians elsewhere (copies of the room 12 m apart along +x, out of view), through the node's runtime
at the bag's recorded rate: geometry per keyframe (the mapping worker) and semantic fusion's map-lock
time per keyframe (copy and write-back; voting and codebook training run outside the lock), p50 and
p95, frames dropped and keyframes mapped; then in-process query times on that map (each copy of the
room has every label's instance, so an answer extracts instances in all of them), with every point
of each object and with /query's sample of at most 5,000.

``--building BAG`` (a ``langgs synth --rooms 20`` bag): the same runtime through the whole building at
the recorded rate with ``mapping.ram_budget_mb`` (``--budget``): RSS once a second against the budget,
drops, blocks paged out and in; the map saved after the next-to-last room and again after the last
(only the blocks that changed), loaded again (lazily), queries in process (p50/p95 per label), and
per label the rooms whose instance an answer found (recall), against the bag's ground truth.

    python benchmarks/bench_scale.py --sizes [--work out/bench_scale]
    python benchmarks/bench_scale.py --building out/b20/synth_bag [--budget 256]
"""

from __future__ import annotations

import argparse
import functools
import itertools
import json
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

from langgs_ros.config import PipelineConfig
from langgs_ros.evaluation import load_ground_truth
from langgs_ros.io.bag_reader import BagFrameReader
from langgs_ros.mapping.map_io import load_map
from langgs_ros.query.engine import QueryEngine
from langgs_ros.runtime.mapping_runtime import MappingRuntime
from langgs_ros.synth.make_bag import SynthSpec, make_synthetic_bag
from langgs_ros.types import Frame
from timing import time_per_label


def rss_mb() -> float:
    """Resident memory of this process now (MiB)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def percentiles(values: list[float]) -> dict[str, float]:
    if not values:
        return {"p50": float("nan"), "p95": float("nan"), "n": 0}
    a = np.asarray(values)
    return {"p50": round(float(np.percentile(a, 50)), 1), "p95": round(float(np.percentile(a, 95)), 1),
            "max": round(float(a.max()), 1), "n": int(a.size)}


class Timed:
    """Per-call wall times (ms) of the runtime's geometry step and fusion's locked steps."""

    def __init__(self, runtime: MappingRuntime) -> None:
        mapper = runtime.mapper
        assert mapper is not None
        self.geometry: list[float] = []
        self.fusion_lock: list[float] = []
        self._begin: dict[int, float] = {}
        self._wrap(mapper, "integrate_geometry", self._geometry)
        self._wrap(mapper, "begin_fusion", self._lock)
        self._wrap(mapper, "finish_fusion", self._lock)

    @staticmethod
    def _wrap(obj: object, name: str, sink) -> None:  # noqa: ANN001
        original = getattr(obj, name)

        def timed(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
            start = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                sink(args, 1000 * (time.perf_counter() - start))

        setattr(obj, name, timed)

    def _geometry(self, args: tuple, ms: float) -> None:
        self.geometry.append(ms)

    def _lock(self, args: tuple, ms: float) -> None:
        key = id(args[0]) if args and not hasattr(args[0], "columns") else id(args[0].pending)
        if key in self._begin:  # finish: a keyframe's two locked steps together
            self.fusion_lock.append(self._begin.pop(key) + ms)
        else:
            self._begin[key] = ms


def play(runtime: MappingRuntime, frames: Iterator[Frame], until: Callable[[Frame], bool] | None = None,
         on_second: Callable[[], None] | None = None) -> tuple[float, Frame | None]:
    """Submit ``frames`` at their recorded rate (as ``langgs replay --realtime``) until one for
    which ``until`` is true (returned, not submitted), then wait until the runtime is idle;
    returns (wall seconds, that frame or None)."""
    start = last = time.monotonic()
    first, stopped = None, None
    for frame in frames:
        if until is not None and until(frame):
            stopped = frame
            break
        first = frame.stamp_ns if first is None else first
        due = start + (frame.stamp_ns - first) / 1e9
        time.sleep(max(0.0, due - time.monotonic()))
        runtime.submit(frame)
        if on_second is not None and time.monotonic() - last >= 1.0:
            last = time.monotonic()
            on_second()
    while not runtime.settled():
        time.sleep(0.02)
    return time.monotonic() - start, stopped


def fill(runtime: MappingRuntime, room: dict[str, np.ndarray], target: int) -> int:
    """Add copies of the room's Gaussians 12 m apart along +x (out of the room camera's view) until
    the map holds ``target`` more; returns how many were added."""
    store = runtime.mapper.store  # type: ignore[union-attr]
    added, copy = 0, 1
    n = len(room["means"])
    while added < target:
        take = min(n, target - added)
        fields = {k: v[:take].copy() for k, v in room.items() if k != "uid"}
        fields["means"][:, 0] += 12.0 * copy
        store.append(**fields)
        added += take
        copy += 1
    return added


ANSWER_POINTS = 5000
"""Points per object of an answer over /query (the node's ``answer_max_points`` default)."""


def time_queries(runtime: MappingRuntime, labels: list[str], reps: int) -> dict[str, dict[str, float]]:
    """In-process query times (ms) on the runtime's live map, answers with every point of each
    object ("all_points") and with /query's sample of at most ANSWER_POINTS ("answer_points");
    every copy of the room holds an instance of each label, so the answers find all of them."""
    sampled = functools.partial(runtime.query, max_points=ANSWER_POINTS)
    return {"all_points": percentiles(time_per_label(runtime.query, labels, reps)),
            "answer_points": percentiles(time_per_label(sampled, labels, reps))}


def sizes_rows(work: Path, sizes: list[int], query_reps: int = 10) -> list[dict]:
    bag = work / "room" / "synth_bag"
    if not (bag / "metadata.yaml").exists():
        make_synthetic_bag(work / "room", SynthSpec(seed=0, width=640, height=480, frames=72))
    labels = sorted({o["label"] for o in load_ground_truth(bag.parent / "ground_truth.json")})
    config = PipelineConfig()
    config.mapping.ram_budget_mb = 0.0  # compute against size; paging is measured with --building
    with BagFrameReader(bag, config.input, with_instances=True) as source:
        frames = list(source.frames())
    probe = MappingRuntime(config, "oracle", queue_size=len(frames))
    probe.configure()
    for frame in frames:
        probe.submit(frame)
    probe.process_pending()
    room = probe.mapper.store.snapshot().to_arrays()  # type: ignore[union-attr]
    rows = []
    for size in sizes:
        runtime = MappingRuntime(config, "oracle", queue_size=2)
        runtime.configure()
        filled = fill(runtime, room, size)
        timed = Timed(runtime)
        runtime.start()
        try:
            seconds, _ = play(runtime, iter(frames))
        finally:
            runtime.stop()
        s = runtime.refresh_status()
        query_ms = time_queries(runtime, labels, query_reps)
        row = {"filler_gaussians": filled, "gaussians_at_end": s.gaussians, "wall_s": round(seconds, 1),
               "frames": len(frames), "frames_dropped": s.frames_dropped, "keyframes_mapped": s.keyframes,
               "keyframes_offline": probe.status.keyframes, "keyframes_segmented": s.keyframes_segmented,
               "geometry_ms": percentiles(timed.geometry[1:]), "fusion_lock_ms": percentiles(timed.fusion_lock),
               "query_ms": query_ms, "rss_mb": round(rss_mb())}
        print(json.dumps(row), flush=True)
        rows.append(row)
    return rows


def building_rows(bag: Path, work: Path, budget_mb: float, query_reps: int) -> dict:
    config = PipelineConfig()
    config.mapping.ram_budget_mb = budget_mb
    truth = load_ground_truth(bag.parent / "ground_truth.json")
    rooms = 1 + max(o["room"] for o in truth)
    runtime = MappingRuntime(config, "oracle", queue_size=2)
    runtime.configure()
    baseline = rss_mb()
    timed = Timed(runtime)
    samples: list[tuple[float, float, int, float, int]] = []
    t0 = time.monotonic()
    store = runtime.mapper.store  # type: ignore[union-attr]

    def sample() -> None:  # (s, RSS MiB, Gaussians, resident block arrays MiB, keyframes waiting for semantics)
        samples.append((round(time.monotonic() - t0, 1), round(rss_mb()), runtime.status.gaussians,
                        round(store.resident_bytes() / 2**20), runtime.refresh_status().semantics_pending))

    out: dict = {"rooms": rooms, "ram_budget_mb": budget_mb, "rss_after_configure_mb": round(baseline)}
    runtime.start()
    # frames stream from the bag (a 640x480 building is gigabytes); the map is saved when the camera
    # enters the last room, and again after it
    with BagFrameReader(bag, config.input, with_instances=True) as source:
        frames = source.frames()
        try:
            wall, entering = play(runtime, frames, until=lambda f: f.T_world_cam[0, 3] > 6.0 * (rooms - 1) - 3.0,
                                  on_second=sample)
            t = time.perf_counter()
            runtime.save(work / "building_map")
            out["save_full_s"] = round(time.perf_counter() - t, 2)
            more, _ = play(runtime, itertools.chain([entering] if entering else [], frames), on_second=sample)
            wall += more
            t = time.perf_counter()
            runtime.save(work / "building_map")
            out["save_after_one_more_room_s"] = round(time.perf_counter() - t, 2)
        finally:
            runtime.stop()
        n_frames = source.stats.frames_seen
    s = runtime.refresh_status()
    rss = [r for _, r, *_ in samples]
    peak = int(np.argmax(rss)) if rss else 0
    out.update({"frames": n_frames, "wall_s": round(wall, 1), "frames_dropped": s.frames_dropped,
                "keyframes_mapped": s.keyframes, "keyframes_segmented": s.keyframes_segmented,
                "gaussians": s.gaussians, "blocks": len(store.blocks), "paged_out": store.paged_out,
                "paged_in": store.paged_in, "rss_max_mb": max(rss) if rss else None,
                "rss_max_over_budget_mb": round(max(rss) - baseline - budget_mb) if rss else None,
                # at the RSS peak: what the budget counts (blocks in view are never paged out) and the backlog
                "at_rss_peak": ({"resident_blocks_mb": samples[peak][3], "semantics_pending": samples[peak][4]}
                                if rss else None),
                "resident_blocks_max_mb": max(x[3] for x in samples) if samples else None,
                "geometry_ms": percentiles(timed.geometry[1:]), "fusion_lock_ms": percentiles(timed.fusion_lock),
                "rss_samples": samples[:: max(1, len(samples) // 60)]})
    print(json.dumps({k: v for k, v in out.items() if k != "rss_samples"}), flush=True)
    t = time.perf_counter()
    data = load_map(work / "building_map")
    out["load_s"] = round(time.perf_counter() - t, 2)
    engine = QueryEngine(data, config.query)
    labels = sorted({o["label"] for o in truth})
    t = time.perf_counter()
    engine.query(labels[0])
    out["first_query_after_load_s"] = round(time.perf_counter() - t, 2)
    recall = {label: rooms_found(engine.query(label), [o for o in truth if o["label"] == label]) for label in labels}
    sampled = functools.partial(engine.query, max_points=ANSWER_POINTS)
    out["query_ms"] = {"all_points": percentiles(time_per_label(engine.query, labels, query_reps)),
                       "answer_points": percentiles(time_per_label(sampled, labels, query_reps))}
    out["recall"] = {label: f"{len(found)}/{rooms}" for label, found in recall.items()}
    out["recall_mean"] = round(float(np.mean([len(v) / rooms for v in recall.values()])), 3)
    return out


def rooms_found(result: object, instances: list[dict]) -> list[int]:
    """Rooms whose instance has an answered object's centroid in its box (5 cm slack)."""
    found = []
    for inst in instances:
        lo, hi = np.asarray(inst["bbox_min"]) - 0.05, np.asarray(inst["bbox_max"]) + 0.05
        if any(np.all(o.centroid >= lo) and np.all(o.centroid <= hi) for o in result.objects):  # type: ignore[attr-defined]
            found.append(int(inst["room"]))
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", type=Path, default=Path("out/bench_scale"))
    parser.add_argument("--sizes", action="store_true", help="per-keyframe cost against map size")
    parser.add_argument("--size-list", default="100000,1000000,5000000,10000000,20000000")
    parser.add_argument("--building", type=Path, help="a langgs synth --rooms N bag")
    parser.add_argument("--budget", type=float, default=256.0, help="mapping.ram_budget_mb of the building run")
    parser.add_argument("--query-reps", type=int, default=10)
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    result: dict = {}
    if args.sizes:
        result["sizes"] = sizes_rows(args.work, [int(s) for s in args.size_list.split(",")], args.query_reps)
    if args.building:
        result["building"] = building_rows(args.building, args.work, args.budget, args.query_reps)
    out = args.work / "bench_scale.json"
    out.write_text(json.dumps(result, indent=1))
    print(f"figures: {out}")


if __name__ == "__main__":
    threading.current_thread().name = "bench"
    main()

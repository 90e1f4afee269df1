"""Benchmark: ingest time per keyframe, map size and memory, query latency, per-object 3D IoU.

Runs the synthetic scene (640x480, 72 frames) with the oracle backend, noise off, at the
"realistic" preset (one run per noise seed) and with heavy label swaps (40 % of segments take a
neighbour's label per view), with codebook fusion and with the running-average baseline; the
same bag without its depth topic (color only: plane-sweep depth, the floor from TF's base_link),
mean IoU and goals next to RGB-D; then times queries on a map tiled to >= 1M Gaussians (text encodings cached). Figures go to
stdout and a JSON file.

    python benchmarks/bench_pipeline.py [--work out/bench] [--frames 72] [--query-reps 30] [--noise-seeds 0,1,2]

``--realtime`` instead replays the bag at its recorded rate through the node's runtime
(``langgs replay --realtime``) with the oracle slowed to each of ``--delays`` seconds per keyframe:
keyframes mapped against the offline replay, semantic lag while playing (p50/p95/max), keyframes
dropped, draining time and IoU after draining; ``--arch real`` adds the same replay with the real
SAM 2.1 hiera-t + ViT-B-16 architectures (random weights, same compute) on this machine's device.

    python benchmarks/bench_pipeline.py --realtime [--delays 0,0.5,2,5] [--arch real]

``--changes`` measures a map that stays true (issue 17) on the same room: an object moved at the
middle frame (answers at its old place after each keyframe, keyframes until none is left), odometry
drift undone by SLAM's ``nav_msgs/Path`` and a late map->odom jump undone by re-anchoring (mean IoU
uncorrected / corrected / error-free, time per correction, bytes per Gaussian), and one correction
of a 1M-Gaussian map.

    python benchmarks/bench_pipeline.py --changes
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import resource
import time
from pathlib import Path

import numpy as np

from langgs_ros.config import OracleNoiseConfig, PipelineConfig
from langgs_ros.errors import InputError
from langgs_ros.evaluation import evaluate_queries, load_ground_truth
from langgs_ros.io.bag_reader import BagFrameReader
from langgs_ros.mapping.block_store import BlockStore
from langgs_ros.mapping.map_io import MapData
from langgs_ros.mapping.mapper import Mapper
from langgs_ros.query.engine import QueryEngine
from langgs_ros.semantics.backend import create_backend
from langgs_ros.synth.make_bag import SynthSpec, make_synthetic_bag
from tiled_map import tiled
from timing import time_per_label


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def heavy_swaps(seed: int = 0) -> OracleNoiseConfig:
    """The realistic preset with 40 % of segments taking a neighbour's label in each view."""
    return dataclasses.replace(OracleNoiseConfig.realistic(seed), label_swap_prob=0.4)


def noise_name(noise: OracleNoiseConfig) -> str:
    if noise.label_swap_prob >= heavy_swaps().label_swap_prob:
        return "heavy_swaps"
    return "realistic" if noise.embedding_noise else "off"


def run_variant(frames: list, truth: list, noise: OracleNoiseConfig, fusion: str,
                **mapping: object) -> tuple[dict, Mapper]:
    """Map ``frames`` with one fusion mode (and MappingConfig overrides); returns figures and mapper."""
    config = PipelineConfig()
    config.mapping.fusion = fusion
    for key, value in mapping.items():
        setattr(config.mapping, key, value)
    mapper = Mapper(config.mapping, create_backend("oracle", noise), seed=noise.seed)
    kf_ms, sem_ms = [], []
    for frame in frames:
        try:
            stats = mapper.integrate(frame)
        except InputError:  # color only: the first frame has no earlier view to match
            continue
        if stats.keyframe:
            kf_ms.append(1000 * stats.seconds)
            sem_ms.append(1000 * stats.semantics_seconds)
    engine = QueryEngine(MapData(store=mapper.store, field=mapper.field, semantics="oracle",
                                 floor_z=mapper.floor_z()), config.query)
    scores = evaluate_queries(engine, truth)
    ious = {s.label: round(s.iou, 3) for s in scores}
    row = {
        "fusion": fusion, "noise": noise_name(noise), "depth": "stereo" if frames[0].depth is None else "sensor",
        "goals": sum(s.goal_found for s in scores), "objects": len(scores),
        "keyframes": len(kf_ms), "gaussians": len(mapper.store),
        "ingest_ms_mean": round(float(np.mean(kf_ms)), 1), "ingest_ms_p50": round(float(np.median(kf_ms)), 1),
        "ingest_ms_p95": round(float(np.percentile(kf_ms, 95)), 1),
        "semantics_ms_mean": round(float(np.mean(sem_ms)), 1),
        "first_keyframe_ms": round(kf_ms[0], 1),
        "bytes_per_gaussian": mapper.store.bytes_per_gaussian(),
        "map_mb": round(mapper.store.bytes_per_gaussian() * len(mapper.store) / 2**20, 1),
        "mean_iou": round(float(np.mean(list(ious.values()))), 3), "iou": ious,
        # what is behind each IoU: voxel precision / recall and the answer's distance to the surface
        "iou_parts": {s.label: {"precision": round(s.precision, 2), "recall": round(s.recall, 2),
                                "surface_error_cm_p50_p90": [round(100 * e, 1) if np.isfinite(e) else None
                                                             for e in (s.surface_error_p50_m, s.surface_error_p90_m)]}
                      for s in scores},
        "peak_rss_mb_so_far": round(peak_rss_mb()),
    }
    return row, mapper


def time_queries(data: MapData, labels: list[str], reps: int) -> dict:
    engine = QueryEngine(data)
    engine.warm_up()
    times = time_per_label(engine.query, labels, reps)
    return {"gaussians": len(data.store), "queries": len(times), "p50_ms": round(float(np.median(times)), 1),
            "p95_ms": round(float(np.percentile(times, 95)), 1), "max_ms": round(float(np.max(times)), 1)}


def realtime_rows(bag: Path, truth: list, delays: list[float], arch: str | None, work: Path) -> list[dict]:
    """One ``replay_realtime`` per oracle delay (and per ``arch``), against one offline replay."""
    from langgs_ros.mapping.map_io import load_map
    from langgs_ros.pipeline import replay
    from langgs_ros.runtime.realtime_replay import replay_realtime

    def mean_iou(map_dir: Path) -> float:
        return round(float(np.mean([s.iou for s in evaluate_queries(QueryEngine(load_map(map_dir)), truth)])), 3)

    offline = replay(bag, work / "offline", "oracle", PipelineConfig())
    offline_iou = mean_iou(work / "offline")
    print(f"offline: {offline.keyframes} keyframes, mean IoU {offline_iou}", flush=True)
    runs: list[tuple[str, float, PipelineConfig, bool]] = []
    for delay in delays:
        config = PipelineConfig()
        config.oracle.delay_s = delay
        runs.append(("oracle", delay, config, True))
    if arch:
        from bench_semantics import random_checkpoints  # benchmarks/ is the script's directory

        config = PipelineConfig()
        config.models = random_checkpoints(arch, work / "weights")
        config.models.pred_iou_thresh, config.models.stability_score_thresh = 0.0, 0.0  # random weights
        runs.append(("clip", float("nan"), config, False))  # minutes per keyframe on a CPU: no draining
    rows = []
    for semantics, delay, config, drain in runs:
        out = work / f"realtime_{semantics}_{delay}"
        summary = replay_realtime(bag, out, semantics, config, drain=drain)
        s = summary.status
        p50, p95, worst = summary.lag_percentiles()
        row = {"semantics": semantics if semantics == "oracle" else f"clip ({arch}, random weights)",
               "delay_s": None if np.isnan(delay) else delay, "drained": drain,
               "keyframes": s.keyframes, "offline_keyframes": offline.keyframes,
               "keyframes_segmented": s.keyframes_segmented, "keyframes_dropped_semantics": s.semantics_dropped,
               "keyframes_waiting_at_end": s.semantics_pending, "frames_dropped_queue": s.frames_dropped,
               "lag_p50_s": round(p50, 2), "lag_p95_s": round(p95, 2), "lag_max_s": round(worst, 2),
               "bag_s": round(summary.bag_seconds, 1), "drain_s": round(summary.drain_seconds, 1),
               "mean_iou": mean_iou(out) if semantics == "oracle" else None, "offline_mean_iou": offline_iou}
        print(json.dumps(row), flush=True)
        rows.append(row)
    return rows


def _inside(points: np.ndarray, lo: list[float], hi: list[float], margin: float = 0.05) -> np.ndarray:
    return np.all((points >= np.asarray(lo) - margin) & (points <= np.asarray(hi) + margin), axis=1)


def moved_object_row(work: Path, spec: SynthSpec, label: str = "red mug") -> dict:
    """The object moves at the middle frame: after each keyframe, how many answers for it lie at its
    old place (stale) and at its new one; keyframes from the move until no answer is stale."""
    out = make_synthetic_bag(work / "moved", dataclasses.replace(spec, move=label))
    gt = json.loads(out.ground_truth.read_text())
    old, new = gt["moved"]["before"], next(o for o in gt["objects"] if o["label"] == label)
    config = PipelineConfig()
    mapper = Mapper(config.mapping, create_backend("oracle", OracleNoiseConfig()))
    timeline = []  # (keyframe index, frame after the move?, stale answers, answers at the new place)
    with BagFrameReader(out.bag, config.input, with_instances=True) as source:
        for n, frame in enumerate(source.frames()):
            if not mapper.integrate(frame).keyframe:
                continue
            answer = QueryEngine(MapData(store=mapper.store, field=mapper.field, semantics="oracle"),
                                 config.query).query(label)
            stale = sum(_inside(o.points, old["bbox_min"], old["bbox_max"]).mean() > 0.5 for o in answer.objects)
            fresh = sum(_inside(o.points, new["bbox_min"], new["bbox_max"]).mean() > 0.5 for o in answer.objects)
            timeline.append((mapper.n_keyframes - 1, n >= gt["moved"]["frame"], int(stale), int(fresh)))
    before = [t for t in timeline if not t[1]]
    after = [t for t in timeline if t[1]]
    cleared = next((i for i, t in enumerate(after) if all(u[2] == 0 for u in after[i:])), None)
    truth = load_ground_truth(out.ground_truth)
    engine = QueryEngine(MapData(store=mapper.store, field=mapper.field, semantics="oracle"), config.query)
    return {"scene": f"moved object ({label})", "keyframes_before_move": len(before),
            "stale_answers_at_move": before[-1][2] if before else None, "stale_answers_at_end": after[-1][2],
            "new_place_answered_at_end": after[-1][3] > 0,
            "keyframes_after_move_until_cleared": None if cleared is None else cleared + 1,
            "mean_iou_at_end": round(float(np.mean([s.iou for s in evaluate_queries(engine, truth)])), 3),
            "bytes_per_gaussian": mapper.store.bytes_per_gaussian()}


def pose_error_rows(work: Path, spec: SynthSpec, free_map: Path, truth: list) -> list[dict]:
    """Odometry drift fixed by SLAM's Path, and a late map->odom jump fixed by re-anchoring:
    mean IoU without and with the correction against the drift-free map, and time per correction."""
    from langgs_ros.mapping.map_io import load_map
    from langgs_ros.pipeline import replay

    def mean_iou(map_dir: Path) -> float:
        return round(float(np.mean([s.iou for s in evaluate_queries(QueryEngine(load_map(map_dir)), truth)])), 3)

    rows = []
    for scene, field, setting, value in (("drift", "drift", "pose_graph_topic", "/pose_graph"),
                                         ("relocalize", "relocalize", "reanchor_on_map_odom_jump_m", 0.05)):
        out = make_synthetic_bag(work / scene, dataclasses.replace(spec, **{field: True}))
        config = PipelineConfig()
        replay(out.bag, work / f"{scene}_uncorrected", "oracle", config)
        setattr(config.input, setting, value)
        summary = replay(out.bag, work / f"{scene}_corrected", "oracle", config)
        c = summary.corrections
        rows.append({"scene": scene, "correction": f"input.{setting}: {value}",
                     "mean_iou_error_free": mean_iou(free_map), "mean_iou_uncorrected": mean_iou(work / f"{scene}_uncorrected"),
                     "mean_iou_corrected": mean_iou(work / f"{scene}_corrected"), "corrections": len(c),
                     "gaussians_moved": [x.gaussians_moved for x in c],
                     "correction_ms": [round(1000 * x.seconds, 1) for x in c],
                     "bytes_per_gaussian": load_map(work / f"{scene}_corrected").store.bytes_per_gaussian()})
        print(json.dumps(rows[-1]), flush=True)
    return rows


def correction_at_scale(gaussians: int = 1_000_000, keyframes: int = 100, reps: int = 5) -> dict:
    """Time of one pose graph that re-poses every keyframe of a map of ``gaussians`` Gaussians."""
    from scipy.spatial.transform import Rotation

    from langgs_ros.mapping.keyframe_log import KeyframeLog
    from langgs_ros.mapping.pose_correction import PoseGraph, correct_map

    rng = np.random.default_rng(0)
    log = KeyframeLog()
    gmap = BlockStore()
    gmap.anchor_of = log.anchors
    per = gaussians // keyframes
    for k in range(keyframes):
        pose = np.eye(4)
        pose[:3, 3] = [0.1 * k, 0.0, 0.0]
        log.append(pose, k * 100_000_000, gmap.next_uid, np.eye(4))
        quats = Rotation.random(per, random_state=k).as_quat()[:, [3, 0, 1, 2]].astype(np.float16)
        gmap.append(means=rng.uniform(-3, 3, (per, 3)).astype(np.float32), quats=quats)
    times = []
    for r in range(reps):
        graph_poses = np.array(log.poses)
        graph_poses[:, 1, 3] += 0.01 * (r + 1)  # every keyframe moves
        stats, _ = correct_map(gmap, log, PoseGraph.from_poses(np.array(log.stamps_ns), graph_poses))
        times.append(1000 * stats.seconds)
    return {"gaussians": len(gmap), "keyframes": keyframes, "correction_ms_p50": round(float(np.median(times)), 1),
            "correction_ms_max": round(float(np.max(times)), 1)}


def changes_rows(work: Path, frames: int) -> dict:
    """Issue 17's figures: a moved object, a drift corrected by a Path, a late map->odom jump
    corrected by re-anchoring, and one correction at 1M Gaussians."""
    from langgs_ros.pipeline import replay

    spec = SynthSpec(frames=frames)
    truth = load_ground_truth(work / "ground_truth.json")
    free_map = work / "static_map"
    if not (free_map / "map.npz").exists():
        replay(work / "synth_bag", free_map, "oracle", PipelineConfig())
    moved = moved_object_row(work, spec)
    print(json.dumps(moved), flush=True)
    results = {"moved": moved, "pose_errors": pose_error_rows(work, spec, free_map, truth),
               "correction_at_1m": correction_at_scale()}
    print(json.dumps(results["correction_at_1m"]), flush=True)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", type=Path, default=Path("out/bench"))
    parser.add_argument("--frames", type=int, default=72)
    parser.add_argument("--query-reps", type=int, default=30)
    parser.add_argument("--query-gaussians", type=int, default=1_000_000)
    parser.add_argument("--noise-seeds", default="0,1,2",
                        help="comma-separated seeds of the realistic oracle noise (IoU varies by a few points per seed)")
    parser.add_argument("--realtime", action="store_true", help="replay at the recorded rate through the runtime")
    parser.add_argument("--changes", action="store_true",
                        help="a moved object, odometry drift (Path), a late map->odom jump (re-anchoring), 1M-Gaussian correction")
    parser.add_argument("--delays", default="0,0.5,2,5", help="with --realtime: oracle seconds per keyframe")
    parser.add_argument("--arch", choices=["tiny", "real"], help="with --realtime: also the clip backend, random weights")
    args = parser.parse_args()
    bag = args.work / "synth_bag"
    if not bag.exists():
        print("rendering the synthetic bag ...", flush=True)
        make_synthetic_bag(args.work, SynthSpec(frames=args.frames))
    truth = load_ground_truth(args.work / "ground_truth.json")
    if args.changes:
        results = changes_rows(args.work, args.frames)
        (args.work / "bench_changes.json").write_text(json.dumps(results, indent=1), encoding="utf-8")
        print(f"results in {args.work / 'bench_changes.json'}", flush=True)
        return
    if args.realtime:
        rows = realtime_rows(bag, truth, [float(d) for d in args.delays.split(",")], args.arch, args.work)
        (args.work / "bench_realtime.json").write_text(json.dumps(rows, indent=1), encoding="utf-8")
        print(f"results in {args.work / 'bench_realtime.json'}", flush=True)
        os._exit(0)  # a --no-drain run may leave the backend inside a keyframe: do not tear torch down under it
    config = PipelineConfig()
    with BagFrameReader(bag, config.input, with_instances=True) as source:
        frames = list(source.frames())
    print(f"{len(frames)} frames of 640x480 RGB-D loaded (decode time not counted below)", flush=True)
    results = {"variants": []}
    codebook_clean = None
    noises = [("off", OracleNoiseConfig())]
    noises += [("realistic", OracleNoiseConfig.realistic(int(seed))) for seed in args.noise_seeds.split(",")]
    noises += [("heavy_swaps", heavy_swaps(int(seed))) for seed in args.noise_seeds.split(",")]
    color_only = [dataclasses.replace(f, depth=None) for f in frames]
    runs = [(name, noise, fusion, frames) for name, noise in noises for fusion in ("codebook", "average")]
    runs.append(("off", OracleNoiseConfig(), "codebook", color_only))
    for name, noise, fusion, source in runs:
        row, mapper = run_variant(source, truth, noise, fusion)
        row["noise_seed"] = noise.seed
        results["variants"].append(row)
        print(json.dumps({k: v for k, v in row.items() if k not in ("iou", "iou_parts")}), flush=True)
        print("   IoU per object:", row["iou"], flush=True)
        print("   precision, recall, surface error p50/p90 (cm):", row["iou_parts"], flush=True)
        if name == "off" and fusion == "codebook" and source is frames:
            codebook_clean = mapper
    assert codebook_clean is not None
    for name in ("realistic", "heavy_swaps"):
        noisy = {fusion: [r["mean_iou"] for r in results["variants"] if r["noise"] == name and r["fusion"] == fusion]
                 for fusion in ("codebook", "average")}
        results[f"{name}_mean_iou"] = {fusion: round(float(np.mean(v)), 3) for fusion, v in noisy.items()}
        print(f"{name} noise, mean IoU over seeds:", json.dumps(results[f"{name}_mean_iou"]), flush=True)
    results["query"] = time_queries(tiled(codebook_clean.store, codebook_clean.field, args.query_gaussians), [o["label"] for o in truth],
                                    args.query_reps)
    print("query latency:", json.dumps(results["query"]), flush=True)
    results["peak_rss_mb"] = round(peak_rss_mb())
    (args.work / "bench_results.json").write_text(json.dumps(results, indent=1))
    print(f"peak RSS {results['peak_rss_mb']} MB; results in {args.work / 'bench_results.json'}")


if __name__ == "__main__":
    main()

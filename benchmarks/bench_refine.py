"""Benchmark: refinement and RGB-only depth on the synthetic scene (CPU unless CUDA is present).

* held-out-view PSNR and median depth error, feed-forward map vs refined (every 4th frame held out);
* CPU (or GPU) time per refinement iteration at the rendering resolution;
* plane-sweep depth of color-only keyframes vs the exact synthetic depth, and on real RGB-D frames
  (``--real``, the shelf frames of ../shared/data/real) vs the depth camera: per frame, and the
  surface of a map built from color alone vs held-out frames' depth;
* ``langgs replay --refine`` on the real frame folders (``--refine-real``; SUN3D and shelf frames
  of ../shared/data/real): held-out PSNR and depth error before/after, time per iteration, peak
  memory (``--only-real`` for these alone);
* with ``--semantic N``: mean 3D IoU of the oracle's object queries under the "realistic" noise
  preset, feed-forward codebook map vs N iterations of semantic refinement (``refine.semantic_dim``
  16) on every keyframe (views at ``--semantic-scale``).

    python benchmarks/bench_refine.py [--frames 24] [--width 320 --height 240] [--iterations 40]
        [--pixel-stride 4] [--work out/bench_refine] [--semantic 100 --semantic-scale 0.5] [--real DIR]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

import numpy as np

from langgs_ros.config import OracleNoiseConfig, PipelineConfig, RefineConfig
from langgs_ros.errors import InputError
from langgs_ros.evaluation import depth_error_in_view, evaluate_queries, load_ground_truth
from langgs_ros.io.frame_folder import FrameFolderReader
from langgs_ros.mapping.map_io import MapData
from langgs_ros.io.bag_reader import BagFrameReader
from langgs_ros.mapping.mapper import Mapper
from langgs_ros.mapping.plane_sweep import PlaneSweepConfig, PlaneSweepDepth
from langgs_ros.mapping.refine import Refiner, psnr, refine_map, render_view
from langgs_ros.query.engine import QueryEngine
from langgs_ros.semantics.backend import create_backend
from langgs_ros.synth.make_bag import SynthSpec, make_synthetic_bag


def held_out_quality(mapper: Mapper, frames: list) -> tuple[float, float]:
    """(mean PSNR dB, mean of per-view median |depth error| m) of the map rendered at ``frames``."""
    psnrs, errors = [], []
    for f in frames:
        rgb, depth = render_view(mapper.store.snapshot(), f, 1.0)
        psnrs.append(psnr(rgb, f.rgb / 255.0))
        ok = np.isfinite(f.depth) & (depth > 0)
        errors.append(float(np.median(np.abs(depth[ok] - f.depth[ok]))))
    return float(np.mean(psnrs)), float(np.mean(errors))


def mean_iou(mapper: Mapper, truth: list[dict], config: PipelineConfig) -> tuple[float, dict[str, float]]:
    engine = QueryEngine(MapData(store=mapper.store, field=mapper.field, semantics="oracle"), config.query)
    ious = {s.label: round(s.iou, 3) for s in evaluate_queries(engine, truth)}
    return float(np.mean(list(ious.values()))), ious


def sweep_errors(frames: list, sweep: PlaneSweepDepth) -> dict:
    """Plane-sweep depth of each frame from the ones before it vs its depth image (m)."""
    errors, valid, sweep_ms = [], [], []
    for f in frames:
        start = time.perf_counter()
        depth = sweep.estimate(f)
        sweep.observe(f)
        if depth is None:
            continue
        sweep_ms.append(1000 * (time.perf_counter() - start))
        measured = np.isfinite(f.depth)
        ok = np.isfinite(depth) & measured
        valid.append(ok.sum() / max(1, measured.sum()))
        errors.append(np.abs(depth[ok] - f.depth[ok]))
    err = np.concatenate(errors) if errors else np.zeros(1)
    return {"valid_fraction": round(float(np.mean(valid)) if valid else 0.0, 3),
            "median_err_m": round(float(np.median(err)), 4), "p90_err_m": round(float(np.percentile(err, 90)), 4),
            "ms_per_frame": round(float(np.median(sweep_ms)), 1) if sweep_ms else None}


def rgb_only_real(folder: Path) -> dict:
    """Plane sweep on real RGB-D frames vs the depth camera; a color-only map vs held-out depth."""
    reader = FrameFolderReader(folder)
    config = PipelineConfig()
    frames = [reader.load(n) for n in reader.names]
    row = {"real_sweep": sweep_errors(frames, PlaneSweepDepth(PlaneSweepConfig(
        min_confidence=config.mapping.stereo_min_confidence, min_baseline_m=config.mapping.stereo_min_baseline_m)))}
    held = set(range(2, len(frames), 5))
    # color only as before issue 18 (one sweep, no consistency check, no plane fill, no averaging)
    before = dataclasses.replace(config.mapping, stereo_refine_steps=0, stereo_consistent_views=0,
                                 stereo_plane_fill="off", stereo_average_positions=False)
    for mode, mapping in (("rgbd", config.mapping), ("rgb_only_before", before), ("rgb_only", config.mapping)):
        mapper = Mapper(mapping, None)
        for i, f in enumerate(frames):
            if i not in held:
                try:
                    mapper.integrate(f if mode == "rgbd" else dataclasses.replace(f, depth=None))
                except InputError:  # color only: no earlier view with baseline yet
                    pass
        err = np.concatenate([depth_error_in_view(mapper.store["means"], frames[i]) for i in sorted(held)])
        row[f"real_map_{mode}"] = {"keyframes": mapper.n_keyframes, "gaussians": len(mapper.store),
                                   "held_out_pixels": int(err.size), "median_err_m": round(float(np.median(err)), 4),
                                   "p90_err_m": round(float(np.percentile(err, 90)), 4)}
    rgbd_pixels = row["real_map_rgbd"]["held_out_pixels"]
    for mode in ("rgb_only_before", "rgb_only"):  # held-out depth pixels the map covers, vs the RGB-D map
        row[f"real_map_{mode}"]["coverage_vs_rgbd"] = round(row[f"real_map_{mode}"]["held_out_pixels"] / rgbd_pixels, 3)
    return row


def _refine_real_child(folder: str, iterations: int, queue: object) -> None:
    """In a fresh process (its own peak memory): ``langgs replay FOLDER --semantics none --refine``."""
    import tempfile

    from langgs_ros.pipeline import replay

    config = PipelineConfig()
    config.refine.iterations = iterations
    with tempfile.TemporaryDirectory() as out:
        summary = replay(folder, out, "none", config, refine=True)
    r = summary.refine
    b, a = r.before, r.after
    queue.put({"folder": folder, "keyframes": summary.keyframes, "gaussians": summary.gaussians,
               "replay_s": round(summary.seconds, 1), "held_out_views": b.views if b else 0,
               "psnr_before_db": round(b.psnr_db, 2) if b else None, "psnr_after_db": round(a.psnr_db, 2) if a else None,
               "depth_err_before_m": round(b.depth_error_m, 5) if b else None,
               "depth_err_after_m": round(a.depth_error_m, 5) if a else None,
               "iterations": r.iterations, "rounds": r.rounds, "rolled_back": r.rolled_back, "kept": r.kept,
               "refine_s": round(r.seconds, 1), "s_per_iteration": round(r.seconds / max(1, r.iterations), 2),
               "refined_gaussians": r.refined, "peak_rss_mb": round(summary.peak_rss_mb), "line": r.line()})


def refine_real(folders: list[Path], iterations: int) -> list[dict]:
    """The replay's own held-out figures of ``--refine`` on real frame folders (one process each)."""
    import multiprocessing

    ctx = multiprocessing.get_context("spawn")
    rows = []
    for folder in folders:
        if not folder.is_dir():
            continue
        queue = ctx.Queue()
        proc = ctx.Process(target=_refine_real_child, args=(str(folder), iterations, queue))
        proc.start()
        rows.append(queue.get())
        proc.join()
        print(json.dumps(rows[-1]), flush=True)
    return rows


def semantic_refinement(bag: Path, truth: list[dict], pixel_stride: int, iterations: int, scale: float) -> dict:
    """3D IoU under realistic oracle noise, feed-forward vs semantic refinement on all keyframes."""
    config = PipelineConfig()
    config.mapping.pixel_stride = pixel_stride
    refine = RefineConfig(window=1000, scale=scale, semantic_dim=16, lr_semantic=0.05, densify_max_fraction=0.0)
    with BagFrameReader(bag, config.input, with_instances=True) as source:
        frames = list(source.frames())
    mapper = Mapper(config.mapping, create_backend("oracle", OracleNoiseConfig.realistic()), refine=refine)
    for f in frames:
        mapper.integrate(f)
    before, ious_before = mean_iou(mapper, truth, config)
    refiner = Refiner(refine, mapper.field)
    refiner.semantics.attach(mapper.store)
    gm, region = mapper.store.extract([b.key for b in mapper.store.blocks])  # the refiner works on a copy
    stats = refiner.refine(gm, list(mapper.views), iterations)
    mapper.store.merge(region, gm, refiner.written_fields)
    after, ious_after = mean_iou(mapper, truth, config)
    return {"semantic_iterations": stats.iterations, "semantic_views": len(mapper.views),
            "semantic_s_per_iteration": round(stats.seconds / max(1, stats.iterations), 2),
            "semantic_loss_last": round(stats.semantic_loss, 3), "codes_changed": stats.codes_changed,
            "iou_feedforward": round(before, 3), "iou_refined": round(after, 3),
            "iou_per_object_feedforward": ious_before, "iou_per_object_refined": ious_after}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, default=24)
    parser.add_argument("--width", type=int, default=320)
    parser.add_argument("--height", type=int, default=240)
    parser.add_argument("--iterations", type=int, default=40)
    parser.add_argument("--pixel-stride", type=int, default=4)
    parser.add_argument("--work", type=Path, default=Path("out/bench_refine"))
    parser.add_argument("--semantic", type=int, default=0, help="iterations of semantic refinement (0 = skip)")
    parser.add_argument("--semantic-scale", type=float, default=0.5)
    parser.add_argument("--real", type=Path, default=Path(__file__).resolve().parents[2] / "shared/data/real/shelf_objects/frames",
                        help="real RGB-D frame folder for the plane-sweep figures (skipped if missing)")
    real = Path(__file__).resolve().parents[2] / "shared/data/real"
    parser.add_argument("--refine-real", type=Path, nargs="*",
                        default=[real / "sun3d_studyroom/seq-01", real / "shelf_objects/frames"],
                        help="real frame folders for `langgs replay --refine`'s held-out figures (missing ones skipped)")
    parser.add_argument("--refine-real-iterations", type=int, default=RefineConfig().iterations)
    parser.add_argument("--only-real", action="store_true", help="only the --refine-real figures")
    parser.add_argument("--only-color-real", action="store_true",
                        help="only the color-only figures on --real (before/after issue 18's stereo changes)")
    args = parser.parse_args()
    if args.only_color_real:
        print(json.dumps(rgb_only_real(args.real), indent=1))
        return
    if args.only_real:
        print(json.dumps(refine_real(args.refine_real, args.refine_real_iterations), indent=1))
        return

    bag = args.work / f"synth_{args.width}x{args.height}_{args.frames}" / "synth_bag"
    if not bag.exists():
        make_synthetic_bag(bag.parent, SynthSpec(width=args.width, height=args.height, frames=args.frames))
    config = PipelineConfig()
    config.mapping.pixel_stride = args.pixel_stride
    with BagFrameReader(bag, config.input) as source:
        frames = list(source.frames())
    train = [f for i, f in enumerate(frames) if i % 4 != 2]
    held = [f for i, f in enumerate(frames) if i % 4 == 2]

    mapper = Mapper(config.mapping, None)
    keyframes = [f for f in train if mapper.integrate(f).keyframe]
    before = held_out_quality(mapper, held)
    config = RefineConfig(iterations=args.iterations, scale=1.0, time_budget_s=1e9)
    gm, region = mapper.store.extract([b.key for b in mapper.store.blocks])  # the refiner works on a copy
    stats = refine_map(gm, keyframes, config)
    mapper.store.merge(region, gm, Refiner(config).written_fields)
    after = held_out_quality(mapper, held)

    # RGB-only: plane-sweep depth of each training frame from the frames before it
    sweep = sweep_errors(train, PlaneSweepDepth(PlaneSweepConfig(
        min_confidence=config.mapping.stereo_min_confidence, min_baseline_m=config.mapping.stereo_min_baseline_m)))

    row = {
        "image": f"{args.width}x{args.height}", "gaussians": len(mapper.store), "keyframes": len(keyframes),
        "held_out_views": len(held),
        "psnr_feedforward_db": round(before[0], 2), "psnr_refined_db": round(after[0], 2),
        "depth_err_feedforward_m": round(before[1], 4), "depth_err_refined_m": round(after[1], 4),
        "refine_iterations": stats.iterations, "refine_s_per_iteration": round(stats.seconds / max(1, stats.iterations), 2),
        "refine_loss_first_last": [round(stats.first_loss, 4), round(stats.last_loss, 4)], "pruned": stats.pruned,
        "synthetic_sweep": sweep,
    }
    if args.real.is_dir():
        row.update(rgb_only_real(args.real))
    row["refine_real"] = refine_real(args.refine_real, args.refine_real_iterations)
    if args.semantic:
        truth = load_ground_truth(bag.parent / "ground_truth.json")
        row.update(semantic_refinement(bag, truth, args.pixel_stride, args.semantic, args.semantic_scale))
    print(json.dumps(row, indent=1))
    (args.work / "refine.json").write_text(json.dumps(row, indent=1))


if __name__ == "__main__":
    main()

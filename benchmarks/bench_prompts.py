"""Benchmark: do SAM's prompts land on every object? Judged without weights (issue 34).

The synthetic bags carry each keyframe's ground-truth instance image, so whether a prompt falls on
an object is measurable here. Each keyframe is mapped (oracle semantics fused, so the map's
``labelled_views`` grow as in a run) and prompted by the geometry planner
(:mod:`langgs_ros.semantics.prompt_planner`, at each ``--max-prompts``) and by the 8x8 and 32x32
grids. Per method: prompts per keyframe; the share of the ground-truth instances visible with at
least 400 pixels of valid depth that receive a prompt inside them (a mask where the keyframe has no
depth labels nothing: fusion reaches only Gaussians the view's depth sees); the same for the small ones (visible area
below 2 % of the image: the synthetic objects' parts are not labelled apart, so small instances
stand for them); the share of prompts on surface the map had labelled from ``known_views`` views;
the planner's time per keyframe.

    python benchmarks/bench_prompts.py [--bags out/room/synth_bag,out/b20/synth_bag] [--max-prompts 24,48,64]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from langgs_ros.config import PipelineConfig
from langgs_ros.io.bag_reader import BagFrameReader
from langgs_ros.mapping.mapper import Mapper
from langgs_ros.semantics.oracle import OracleBackend
from langgs_ros.semantics.prompt_planner import plan_prompts
from langgs_ros.synth.make_bag import SynthSpec, make_synthetic_bag

MIN_PIXELS = 400
SMALL_FRAC = 0.02


class GuidedOracle(OracleBackend):
    """The oracle, given the map's guidance like the clip backend (labelled_views per cell)."""

    uses_depth_guidance = True


def grid(side: int, height: int, width: int) -> np.ndarray:
    """SAM's regular ``side`` x ``side`` prompt grid (segment_anything's build_point_grid), pixels."""
    offs = (np.arange(side) + 0.5) / side
    xs, ys = np.meshgrid(offs * width, offs * height)
    return np.stack([xs.ravel(), ys.ravel()], axis=1)


class Tally:
    """Coverage figures of one prompting method over keyframes."""

    def __init__(self) -> None:
        self.prompts: list[int] = []
        self.visible = self.covered = self.small = self.small_covered = 0
        self.on_known = 0
        self.seconds: list[float] = []

    def add(self, points: np.ndarray, instances: np.ndarray, depth: np.ndarray, known: np.ndarray,
            seconds: float = 0.0) -> None:
        h, w = instances.shape
        cols = np.clip(np.round(points[:, 0]).astype(int), 0, w - 1)
        rows = np.clip(np.round(points[:, 1]).astype(int), 0, h - 1)
        hit = set(np.unique(instances[rows, cols]).tolist())
        ids, counts = np.unique(instances[(instances > 0) & np.isfinite(depth) & (depth > 0)], return_counts=True)
        for inst, n in zip(ids.tolist(), counts.tolist()):
            if n < MIN_PIXELS:
                continue
            self.visible += 1
            self.covered += inst in hit
            if n < SMALL_FRAC * h * w:
                self.small += 1
                self.small_covered += inst in hit
        self.prompts.append(len(points))
        self.on_known += int(known[rows, cols].sum())
        self.seconds.append(seconds)

    def row(self) -> dict:
        return {"prompts_per_keyframe_mean": round(float(np.mean(self.prompts)), 1),
                "prompts_per_keyframe_p95": round(float(np.percentile(self.prompts, 95)), 1),
                "instances_visible": self.visible, "coverage": round(self.covered / max(1, self.visible), 4),
                "small_instances_visible": self.small,
                "small_coverage": round(self.small_covered / max(1, self.small), 4),
                "prompts_on_labelled_surface": round(self.on_known / max(1, sum(self.prompts)), 4),
                "ms_per_keyframe": round(1000 * float(np.mean(self.seconds)), 1)}


def bag_rows(bag: Path, caps: list[int], limit: int | None) -> dict:
    config = PipelineConfig()
    known_views = config.models.known_views
    mapper = Mapper(config.mapping, GuidedOracle(config.oracle))
    tallies = {f"geometry_{cap}": Tally() for cap in caps} | {"grid_8x8": Tally(), "grid_32x32": Tally()}
    keyframes = 0
    with BagFrameReader(bag, config.input, with_instances=True) as source:
        for frame in source.frames():
            _, pending = mapper.integrate_geometry(frame)
            if pending is None:
                continue
            f = pending.frame
            h, w = f.rgb.shape[:2]
            views = pending.guidance.labelled_views
            cells = np.nan_to_num(views, nan=0.0) >= known_views
            rows = np.minimum(np.arange(h) * views.shape[0] // h, views.shape[0] - 1)
            cols = np.minimum(np.arange(w) * views.shape[1] // w, views.shape[1] - 1)
            known = cells[rows[:, None], cols[None, :]]
            for cap in caps:
                start = time.perf_counter()
                plan = plan_prompts(f.depth, f.intrinsics.fx, f.intrinsics.fy, h, w, cap, views, known_views)
                tallies[f"geometry_{cap}"].add(plan.points, f.instances, f.depth, known, time.perf_counter() - start)
            tallies["grid_8x8"].add(grid(8, h, w), f.instances, f.depth, known)
            tallies["grid_32x32"].add(grid(32, h, w), f.instances, f.depth, known)
            mapper.fuse_semantics(pending, mapper.segment(pending))
            keyframes += 1
            if limit and keyframes >= limit:
                break
    return {"bag": str(bag), "keyframes": keyframes, "methods": {k: t.row() for k, t in tallies.items()}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", type=Path, default=Path("out/bench_prompts"))
    parser.add_argument("--bags", default="", help="comma-separated synthetic bags (default: the bundled room)")
    parser.add_argument("--max-prompts", default="24,48,64")
    parser.add_argument("--limit", type=int, default=0, help="at most this many keyframes per bag (0: all)")
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    bags = [Path(b) for b in args.bags.split(",") if b]
    if not bags:
        room = args.work / "room" / "synth_bag"
        if not (room / "metadata.yaml").exists():
            make_synthetic_bag(args.work / "room", SynthSpec(seed=0, width=640, height=480, frames=72))
        bags = [room]
    rows = []
    for bag in bags:
        row = bag_rows(bag, [int(c) for c in args.max_prompts.split(",")], args.limit or None)
        print(json.dumps(row, indent=1), flush=True)
        rows.append(row)
    out = args.work / "bench_prompts.json"
    out.write_text(json.dumps(rows, indent=1))
    print(f"figures: {out}")


if __name__ == "__main__":
    main()

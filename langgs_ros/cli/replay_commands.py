"""``langgs synth``, ``langgs replay`` (offline and ``--realtime``) and ``langgs demo``."""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path
from typing import Any

from langgs_ros.cli.common import INPUT_FLAGS, command_config, log
from langgs_ros.cli.query_commands import answer, load_map_noted, print_answer
from langgs_ros.config import InputConfig, PipelineConfig, load_config
from langgs_ros.errors import ConfigError, InputError
from langgs_ros.io.output_paths import check_not_an_input, check_output_dir

__all__ = ["cmd_synth", "cmd_replay", "cmd_demo", "xy"]


def xy(text: str) -> tuple[float, float]:
    """argparse type of 'X,Y' (metres)."""
    try:
        x, y = (float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected X,Y in metres, got '{text}'") from None
    if not (math.isfinite(x) and math.isfinite(y)):
        raise argparse.ArgumentTypeError(f"expected finite X,Y, got '{text}'")
    return x, y


def cmd_synth(args: argparse.Namespace) -> int:
    from langgs_ros.synth.make_bag import SynthSpec

    if args.seed < 0:
        raise InputError(f"--seed must be 0 or more, got {args.seed}")
    limit = InputConfig.max_image_pixels
    if args.width * args.height > limit:  # checked before anything is allocated
        raise InputError(f"--width {args.width} x --height {args.height} = {args.width * args.height} pixels is more "
                         f"than images may have (input.max_image_pixels {limit}, e.g. 4096 x 4096)")
    _synth(args.out, SynthSpec(seed=args.seed, width=args.width, height=args.height, frames=args.frames,
                               storage=args.storage, compressed=args.compressed, move=args.move or "",
                               move_to=args.move_to, drift=args.drift, relocalize=args.relocalize,
                               rooms=args.rooms, compressed_depth=args.compressed_depth or ""))
    return 0


def _synth(out: Path, spec: Any) -> None:
    from langgs_ros.synth.make_bag import make_synthetic_bag

    start = time.perf_counter()

    def progress(done: int, total: int) -> None:
        if done % 10 == 0 or done == total:
            log(f"[synth] rendered {done}/{total} frames ({time.perf_counter() - start:.0f} s)")

    result = make_synthetic_bag(out, spec, progress=progress)
    log(f"[synth] bag: {result.bag}\n[synth] ground truth: {result.ground_truth}")


def _report(line: str) -> None:
    log(f"[data] {line}")


def cmd_replay(args: argparse.Namespace) -> int:
    config = command_config(args)
    check_not_an_input(args.out, [args.bag, getattr(args, "config", None)], "--out (the map directory)")
    if args.realtime:
        if args.refine:
            raise ConfigError("--refine refines after an offline replay; with --realtime the node's background "
                              "refinement runs instead (refine.background_iterations_per_second in --config)")
        _replay_realtime_and_report(args.bag, args.out, args.semantics, config, args.rate, not args.no_drain)
        return 0
    if args.rate != 1.0 or args.no_drain:
        raise ConfigError("--rate and --no-drain apply to --realtime replays only")
    _replay_and_report(args.bag, args.out, args.semantics, config, refine=args.refine)
    return 0


def _replay_realtime_and_report(bag: Path, out: Path, semantics: str, config: PipelineConfig, rate: float,
                                drain: bool) -> None:
    """``replay --realtime``: the node's runtime at the recorded rate, progress and summary on stderr."""
    from langgs_ros.runtime.realtime_replay import replay_realtime

    if semantics == "oracle":
        log("[replay] semantics: ORACLE (ground-truth instances) - for synthetic/annotated data only")
    log(f"[replay] real time x{rate:g} through the node's runtime (semantics behind geometry, "
        f"at most {config.semantics.max_pending} keyframes waiting)")
    summary = replay_realtime(bag, out, semantics, config, rate, drain, progress=lambda line: log(f"[replay] {line}"),
                              report=_report, flags=INPUT_FLAGS)
    s = summary.status
    p50, p95, worst = summary.lag_percentiles()
    gaps = f", {summary.gaps_skipped_s:.1f} s of stamp gaps skipped over" if summary.gaps_skipped_s else ""
    log(f"[replay] done: {summary.bag_seconds:.1f} s of recording in {summary.seconds:.1f} s "
        f"(draining {summary.drain_seconds:.1f} s{gaps})")
    log(f"[replay] frames in {s.frames_in}, used {s.frames_used}, dropped {s.frames_dropped} (mapping queue full), "
        f"rejected {s.frames_rejected}{f' (last: {s.last_error})' if s.frames_rejected else ''}")
    log(f"[replay] keyframes mapped {s.keyframes}, segmented {s.keyframes_segmented}, dropped from the semantics "
        f"backlog {s.semantics_dropped}, still waiting {s.semantics_pending}")
    log(f"[replay] semantic lag while playing: p50 {p50:.1f} s, p95 {p95:.1f} s, max {worst:.1f} s")
    log("[replay] " + summary.source.summary().replace("\n", "\n[replay] "))
    log(f"[replay] map written to {summary.map_path}")


def _replay_and_report(bag: Path, out: Path, semantics: str, config: PipelineConfig, refine: bool = False) -> None:
    """Build the map of ``bag`` into ``out`` with progress and a summary on stderr."""
    from langgs_ros.mapping.refine_rounds import RefineProgress
    from langgs_ros.pipeline import ReplayProgress, replay

    if semantics == "oracle":
        log("[replay] semantics: ORACLE (ground-truth instances) - for synthetic/annotated data only")

    def progress(p: ReplayProgress) -> None:
        log(f"[replay] frames {p.frames}  keyframes {p.keyframes}  Gaussians {p.gaussians}  {p.fps:.1f} fps")

    if refine:
        log(f"[replay] then {config.refine.iterations} refinement iterations on the last {config.refine.window} "
            f"keyframes, in rounds of {config.refine.round_iterations} judged on held-out frames (refine.* in --config)")

    def refine_progress(p: RefineProgress) -> None:
        judged = "" if math.isnan(p.held_out_before) else (
            f", held-out loss {p.held_out_before:.4f} -> {p.held_out_after:.4f}"
            + (" (worse: round rolled back)" if p.rolled_back else ""))
        log(f"[replay] refine iteration {p.iterations}/{p.total}: loss {p.loss:.4f}{judged}, {p.seconds:.0f} s")

    summary = replay(bag, out, semantics, config, progress, refine=refine, refine_progress=refine_progress,
                     report=_report, flags=INPUT_FLAGS)
    per_kf = 1000 * sum(summary.keyframe_seconds) / max(1, len(summary.keyframe_seconds))
    log(f"[replay] done in {summary.seconds:.1f} s: {summary.keyframes} keyframes, {summary.gaussians} Gaussians, "
         f"{per_kf:.0f} ms per keyframe")
    if summary.stage_seconds:
        n = max(1, summary.keyframes)
        stages = "  ".join(f"{k} {1000 * v / n:.0f} ms" for k, v in summary.stage_seconds.items())
        log(f"[replay] semantics per keyframe: {stages}")
    if summary.refine is not None:
        r = summary.refine
        log(f"[replay] refinement: {r.rounds} rounds ({r.rolled_back} rolled back), training loss "
            f"{r.first_loss:.3f} -> {r.last_loss:.3f}, {r.refined} Gaussians refined, {r.densified} added, "
            f"{r.pruned} pruned")
    for correction in summary.corrections:
        log(f"[replay] {correction.summary()}")
    gpu = f", GPU {summary.peak_gpu_mb:.0f} MiB" if summary.peak_gpu_mb else ""
    log(f"[replay] peak memory: RSS {summary.peak_rss_mb:.0f} MiB{gpu}")
    log("[replay] " + summary.source.summary().replace("\n", "\n[replay] "))
    log(f"[replay] map written to {summary.map_path}")
    if summary.refine is not None:
        log(summary.refine.line())


def cmd_demo(args: argparse.Namespace) -> int:
    from langgs_ros.io.output_paths import atomic_write
    from langgs_ros.synth.make_bag import SynthSpec

    out = check_output_dir(args.out)
    bag = out / "synth_bag"
    if not (bag / "metadata.yaml").is_file():  # none, or a leftover of an interrupted run
        if bag.exists():
            import shutil

            shutil.rmtree(bag)
        _synth(out, SynthSpec(seed=0, width=640, height=480, frames=72, storage="mcap"))
    config = load_config(None)
    _replay_and_report(bag, out / "map", "oracle", config)
    png, result_path = out / "query.png", out / "query.json"
    result = answer(load_map_noted(out / "map"), args.text, config, png)
    atomic_write(result_path, lambda fh: fh.write(json.dumps(result.to_json(), indent=1).encode()), what="answer")
    print_answer(result)
    log(f"[demo] answer: {result_path}\n[demo] picture: {png}")
    return 0



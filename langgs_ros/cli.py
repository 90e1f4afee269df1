"""``langgs``: build semantic Gaussian maps from bags and query them by text, without ROS.

Subcommands: ``synth`` (synthetic scene bag), ``replay`` (bag or frame folder -> map),
``query`` (map + text -> objects and goal pose), ``demo`` (all three on the bundled scene),
``models`` (the SAM/SAM2/OpenCLIP weights the config selects, and where they go).
Expected failures print ``error: ...`` and exit with status 2. Anything else is a bug: it prints
``internal error: ...`` (the traceback only with ``LANGGS_DEBUG=1``) and exits with status 3.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
import traceback
from pathlib import Path
from typing import Any

from langgs_ros.config import PipelineConfig, load_config
from langgs_ros.errors import ConfigError, LangGSError
from langgs_ros.io.output_paths import check_output_dir, check_output_file, os_reason

__all__ = ["main", "entrypoint"]


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _cmd_synth(args: argparse.Namespace) -> int:
    from langgs_ros.synth.make_bag import SynthSpec

    _synth(args.out, SynthSpec(seed=args.seed, width=args.width, height=args.height, frames=args.frames,
                               storage=args.storage, compressed=args.compressed, move=args.move or "",
                               move_to=args.move_to, drift=args.drift, relocalize=args.relocalize,
                               rooms=args.rooms))
    return 0


def _xy(text: str) -> tuple[float, float]:
    """argparse type of 'X,Y' (metres)."""
    try:
        x, y = (float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected X,Y in metres, got '{text}'") from None
    if not (math.isfinite(x) and math.isfinite(y)):
        raise argparse.ArgumentTypeError(f"expected finite X,Y, got '{text}'")
    return x, y


def _synth(out: Path, spec: Any) -> None:
    from langgs_ros.synth.make_bag import make_synthetic_bag

    start = time.perf_counter()

    def progress(done: int, total: int) -> None:
        if done % 10 == 0 or done == total:
            _log(f"[synth] rendered {done}/{total} frames ({time.perf_counter() - start:.0f} s)")

    result = make_synthetic_bag(out, spec, progress=progress)
    _log(f"[synth] bag: {result.bag}\n[synth] ground truth: {result.ground_truth}")


def _config(args: argparse.Namespace) -> PipelineConfig:
    config = load_config(getattr(args, "config", None))
    if getattr(args, "noise", None) == "realistic":
        from langgs_ros.config import OracleNoiseConfig

        config.oracle = OracleNoiseConfig.realistic(seed=config.oracle.seed)
    if getattr(args, "fusion", None):
        config.mapping.fusion = args.fusion
    return config


def _cmd_replay(args: argparse.Namespace) -> int:
    if args.realtime:
        if args.refine:
            raise ConfigError("--refine refines after an offline replay; with --realtime the node's background "
                              "refinement runs instead (refine.background_iterations_per_second in --config)")
        _replay_realtime_and_report(args.bag, args.out, args.semantics, _config(args), args.rate, not args.no_drain)
        return 0
    if args.rate != 1.0 or args.no_drain:
        raise ConfigError("--rate and --no-drain apply to --realtime replays only")
    _replay_and_report(args.bag, args.out, args.semantics, _config(args), refine=args.refine)
    return 0


def _replay_realtime_and_report(bag: Path, out: Path, semantics: str, config: PipelineConfig, rate: float,
                                drain: bool) -> None:
    """``replay --realtime``: the node's runtime at the recorded rate, progress and summary on stderr."""
    from langgs_ros.runtime.realtime_replay import replay_realtime

    if semantics == "oracle":
        _log("[replay] semantics: ORACLE (ground-truth instances) - for synthetic/annotated data only")
    _log(f"[replay] real time x{rate:g} through the node's runtime (semantics behind geometry, "
         f"at most {config.semantics.max_pending} keyframes waiting)")
    summary = replay_realtime(bag, out, semantics, config, rate, drain, progress=lambda line: _log(f"[replay] {line}"))
    s = summary.status
    p50, p95, worst = summary.lag_percentiles()
    _log(f"[replay] done: {summary.bag_seconds:.1f} s of recording in {summary.seconds:.1f} s "
         f"(draining {summary.drain_seconds:.1f} s)")
    _log(f"[replay] frames in {s.frames_in}, used {s.frames_used}, dropped {s.frames_dropped} (mapping queue full), "
         f"rejected {s.frames_rejected}{f' (last: {s.last_error})' if s.frames_rejected else ''}")
    _log(f"[replay] keyframes mapped {s.keyframes}, segmented {s.keyframes_segmented}, dropped from the semantics "
         f"backlog {s.semantics_dropped}, still waiting {s.semantics_pending}")
    _log(f"[replay] semantic lag while playing: p50 {p50:.1f} s, p95 {p95:.1f} s, max {worst:.1f} s")
    _log("[replay] " + summary.source.summary().replace("\n", "\n[replay] "))
    _log(f"[replay] map written to {summary.map_path}")


def _replay_and_report(bag: Path, out: Path, semantics: str, config: PipelineConfig, refine: bool = False) -> None:
    """Build the map of ``bag`` into ``out`` with progress and a summary on stderr."""
    from langgs_ros.mapping.refine_rounds import RefineProgress
    from langgs_ros.pipeline import ReplayProgress, replay

    if semantics == "oracle":
        _log("[replay] semantics: ORACLE (ground-truth instances) - for synthetic/annotated data only")

    def progress(p: ReplayProgress) -> None:
        _log(f"[replay] frames {p.frames}  keyframes {p.keyframes}  Gaussians {p.gaussians}  {p.fps:.1f} fps")

    if refine:
        _log(f"[replay] then {config.refine.iterations} refinement iterations on the last {config.refine.window} "
             f"keyframes, in rounds of {config.refine.round_iterations} judged on held-out frames (refine.* in --config)")

    def refine_progress(p: RefineProgress) -> None:
        judged = "" if math.isnan(p.held_out_before) else (
            f", held-out loss {p.held_out_before:.4f} -> {p.held_out_after:.4f}"
            + (" (worse: round rolled back)" if p.rolled_back else ""))
        _log(f"[replay] refine iteration {p.iterations}/{p.total}: loss {p.loss:.4f}{judged}, {p.seconds:.0f} s")

    summary = replay(bag, out, semantics, config, progress, refine=refine, refine_progress=refine_progress)
    per_kf = 1000 * sum(summary.keyframe_seconds) / max(1, len(summary.keyframe_seconds))
    _log(f"[replay] done in {summary.seconds:.1f} s: {summary.keyframes} keyframes, {summary.gaussians} Gaussians, "
         f"{per_kf:.0f} ms per keyframe")
    if summary.stage_seconds:
        n = max(1, summary.keyframes)
        stages = "  ".join(f"{k} {1000 * v / n:.0f} ms" for k, v in summary.stage_seconds.items())
        _log(f"[replay] semantics per keyframe: {stages}")
    if summary.refine is not None:
        r = summary.refine
        _log(f"[replay] refinement: {r.rounds} rounds ({r.rolled_back} rolled back), training loss "
             f"{r.first_loss:.3f} -> {r.last_loss:.3f}, {r.refined} Gaussians refined, {r.densified} added, "
             f"{r.pruned} pruned")
    for correction in summary.corrections:
        _log(f"[replay] {correction.summary()}")
    gpu = f", GPU {summary.peak_gpu_mb:.0f} MiB" if summary.peak_gpu_mb else ""
    _log(f"[replay] peak memory: RSS {summary.peak_rss_mb:.0f} MiB{gpu}")
    _log("[replay] " + summary.source.summary().replace("\n", "\n[replay] "))
    _log(f"[replay] map written to {summary.map_path}")
    if summary.refine is not None:
        _log(summary.refine.line())


def _answer(map_dir: Path, text: str, config: PipelineConfig, png: Path | None, max_age_s: float = 0.0) -> Any:
    """The query result of ``text`` on the map in ``map_dir``, ignoring objects not seen in the
    last ``max_age_s`` seconds of the recording (0: none); draws ``png`` if given (its path is
    checked before the map is loaded)."""
    from langgs_ros.mapping.map_io import load_map
    from langgs_ros.query.engine import QueryEngine

    if png is not None:
        check_output_file(png, "picture")
    data = load_map(map_dir)
    for note in data.notes:
        _log(f"[query] note: {note}")
    result = QueryEngine(data, config.query).query(text, max_age_s)
    if png is not None:
        from langgs_ros.viz import render_top_down, write_png

        means, colors = data.store.preview(4_000_000)
        write_png(png, render_top_down(means, colors, result, config.query.robot_radius))
    return result


def _print_answer(result: Any) -> None:
    print(f"query: '{result.query}' ({result.message})")
    for rank, obj in enumerate(result.objects, 1):
        c, lo, hi = obj.centroid, obj.bbox_min, obj.bbox_max
        print(f"  #{rank} score {obj.score:.3f}  {len(obj.points)} Gaussians  centroid ({c[0]:.2f}, {c[1]:.2f}, {c[2]:.2f})"
              f"  box ({lo[0]:.2f}, {lo[1]:.2f}, {lo[2]:.2f})..({hi[0]:.2f}, {hi[1]:.2f}, {hi[2]:.2f}) [{result.frame_id}]"
              + (f"  last seen {obj.age_s:.1f} s before the map's end" if obj.age_s is not None else ""))
    if result.goal_pose is not None:
        g = result.goal_pose
        print(f"  goal: ({g.position[0]:.2f}, {g.position[1]:.2f}, {g.position[2]:.2f}) yaw {g.yaw:.2f} rad "
              f"[{result.frame_id}], {g.distance_to_object:.2f} m from the object")
    elif result.objects:
        print("  goal: none")


def _cmd_query(args: argparse.Namespace) -> int:
    config = _config(args)
    result = _answer(args.map, args.text, config, args.png, args.max_age)
    if args.json:
        print(json.dumps(result.to_json(config.query.max_points), ensure_ascii=True))
        return 0
    _print_answer(result)
    if args.png:
        print(f"  picture: {args.png}")
    return 0


def _cmd_models(args: argparse.Namespace) -> int:
    from langgs_ros.semantics.models import model_files

    config = _config(args)
    files = model_files(config.models)
    for f in files:
        state = "present" if f.present else "MISSING"
        print(f"{f.role:28s} {f.architecture:32s} {state:8s} {f.path}")
        if not f.present:
            print(f"{'':28s} get it from: {f.source}")
    if args.check:
        from langgs_ros.semantics.backend import create_backend

        create_backend("clip", models=config.models)  # raises a LangGSError naming a bad file
        print("all models load")
    elif not all(f.present for f in files):
        _log("some weights are missing: `langgs replay --semantics clip` will stop at start-up; "
             "put the files where listed or set their paths under 'models:' in a --config file")
        return 1
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
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
    result = _answer(out / "map", args.text, config, png)
    atomic_write(result_path, lambda fh: fh.write(json.dumps(result.to_json(), indent=1).encode()), what="answer")
    _print_answer(result)
    _log(f"[demo] answer: {result_path}\n[demo] picture: {png}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The ``langgs`` argument parser."""
    parser = argparse.ArgumentParser(prog="langgs", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("synth", help="render the synthetic room into a ROS 2 bag with ground truth")
    p.add_argument("--out", required=True, type=Path, help="output directory (gets synth_bag/ and ground_truth.json)")
    p.add_argument("--seed", type=int, default=0, help="trajectory seed")
    p.add_argument("--frames", type=int, default=72, help="number of camera frames (10 Hz; with --rooms: per room's loop)")
    p.add_argument("--rooms", type=int, default=1,
                   help="rooms of a building in a row, joined by doorways, visited in turn (1: the bundled room)")
    p.add_argument("--width", type=int, default=640)
    p.add_argument("--height", type=int, default=480)
    p.add_argument("--storage", choices=["mcap", "sqlite3"], default="mcap", help="rosbag2 storage format")
    p.add_argument("--compressed", action="store_true",
                   help="color only as <color topic>/compressed (PNG), like a compressed-only camera driver")
    p.add_argument("--drift", action="store_true",
                   help="odometry drifts (0.29 m and 4 degrees by the end) and a nav_msgs/Path of the true base poses "
                        "on /pose_graph corrects it after the last image (replay with input.pose_graph_topic: "
                        "/pose_graph)")
    p.add_argument("--relocalize", action="store_true",
                   help="map->odom is off by 0.29 m and 4 degrees until the middle frame, then jumps to the truth, as a "
                        "localizer converging late (replay with input.reanchor_on_map_odom_jump_m: 0.05)")
    p.add_argument("--move", metavar="OBJECT", help="move this object (e.g. 'red mug') at the middle frame; the "
                   "ground truth gives its final place and, under 'moved', the old one")
    p.add_argument("--move-to", type=_xy, default=(-0.45, 0.15), metavar="X,Y",
                   help="with --move: its new centre in map, metres (default: a free spot on the table)")
    p.set_defaults(func=_cmd_synth)

    p = sub.add_parser("replay", help="build a map from a ROS 2 bag or a 7-Scenes style frame folder")
    p.add_argument("bag", type=Path, help="rosbag2 directory (mcap or sqlite3) or frame folder")
    p.add_argument("--out", required=True, type=Path, help="map directory to write (map.npz)")
    p.add_argument("--semantics", choices=["clip", "oracle", "none"], default="clip",
                   help="semantic backend: clip (SAM/SAM2 + OpenCLIP), oracle (ground-truth instances, "
                        "synthetic/annotated data only) or none (geometry only)")
    p.add_argument("--config", type=Path, help="YAML/JSON config file (sections input, mapping, query, oracle)")
    p.add_argument("--fusion", choices=["codebook", "average"], help="semantic fusion mode (default codebook)")
    p.add_argument("--noise", choices=["off", "realistic"], default="off", help="oracle noise preset")
    p.add_argument("--refine", action="store_true",
                   help="refine the map after the replay (refine.iterations on the last refine.window keyframes)")
    p.add_argument("--realtime", action="store_true",
                   help="play at the recorded rate through the node's runtime (frame queue, drops, semantics behind "
                        "geometry, background refinement), as mapping_node would on this machine")
    p.add_argument("--rate", type=float, default=1.0, help="with --realtime: playback speed factor")
    p.add_argument("--no-drain", action="store_true",
                   help="with --realtime: stop at the bag's end instead of waiting for the semantics backlog")
    p.set_defaults(func=_cmd_replay)

    p = sub.add_parser("query", help="find objects matching a text in a map")
    p.add_argument("map", type=Path, help="map directory written by replay")
    p.add_argument("text", help="what to look for, e.g. 'mug'")
    p.add_argument("--json", action="store_true", help="print the answer as JSON")
    p.add_argument("--png", type=Path, help="also draw the map from above with the answer")
    p.add_argument("--max-age", type=float, default=0.0, metavar="S",
                   help="ignore objects not seen in the last S seconds before the map's newest keyframe "
                        "(default 0: no limit)")
    p.add_argument("--config", type=Path, help="YAML/JSON config file (query section)")
    p.set_defaults(func=_cmd_query)

    p = sub.add_parser("models", help="list the SAM/SAM2/OpenCLIP weights the config selects and where they go")
    p.add_argument("--config", type=Path, help="YAML/JSON config file (models section)")
    p.add_argument("--check", action="store_true", help="also load every model (start-up check)")
    p.set_defaults(func=_cmd_models)

    p = sub.add_parser("demo", help="synthesise the bundled scene, build its map and answer a query")
    p.add_argument("--out", type=Path, default=Path("out/demo"), help="working directory")
    p.add_argument("--text", default="red mug", help="query to answer")
    p.set_defaults(func=_cmd_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; returns the exit status."""
    args = build_parser().parse_args(argv)
    try:
        return _exit_past_workers(int(args.func(args)))
    except LangGSError as exc:
        _log(f"error: {exc}")
        return 2
    except OSError as exc:  # a file system failure outside the checked paths: still the user's to fix
        where = f" ({exc.filename})" if exc.filename else ""
        _log(f"error: {os_reason(exc)}{where}")
        return 2
    except KeyboardInterrupt:
        _log("interrupted")
        return 130
    except Exception as exc:  # noqa: BLE001 - a bug: say so in one line, trace on request
        if os.environ.get("LANGGS_DEBUG"):
            traceback.print_exc()
        _log(f"internal error: {type(exc).__name__}: {exc} (a bug in langgs_ros; LANGGS_DEBUG=1 shows the traceback)")
        return 3


def _exit_past_workers(code: int) -> int:
    """``code``; but if a worker thread is still inside a model (``replay --realtime --no-drain``
    stopped while the 2D backend runs a keyframe for minutes), exit now: letting the interpreter
    tear down under a running torch op aborts the process ("terminate called ...")."""
    import threading

    busy = [t.name for t in threading.enumerate() if t.name.startswith("langgs-") and t.is_alive()]
    if busy:
        _log(f"[langgs] not waiting for {', '.join(busy)} (busy in the backend); exiting")
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    return code


def entrypoint() -> None:
    """Console-script entry point."""
    sys.exit(main())

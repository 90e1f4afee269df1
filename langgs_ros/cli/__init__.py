"""``langgs``: build semantic Gaussian maps from bags and query them by text, without ROS.

Subcommands: ``synth`` (synthetic scene bag), ``replay`` (bag or frame folder -> map),
``query`` (map + texts -> objects and goal poses), ``demo`` (all three on the bundled scene),
``models`` (the SAM/SAM2/OpenCLIP weights the config selects, and where they go).
Expected failures print ``error: ...`` and exit with status 2. Anything else is a bug: it prints
``internal error: ...`` (the traceback only with ``LANGGS_DEBUG=1``) and exits with status 3.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import traceback
from pathlib import Path

from langgs_ros.cli.common import add_input_flags, log
from langgs_ros.cli.query_commands import cmd_models, cmd_query
from langgs_ros.cli.replay_commands import cmd_demo, cmd_replay, cmd_synth, xy
from langgs_ros.errors import LangGSError
from langgs_ros.io.camera_presets import PRESETS
from langgs_ros.io.output_paths import os_reason

__all__ = ["main", "entrypoint", "build_parser"]


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
    p.add_argument("--move-to", type=xy, default=(-0.45, 0.15), metavar="X,Y",
                   help="with --move: its new centre in map, metres (default: a free spot on the table)")
    p.add_argument("--compressed-depth", choices=["png", "rvl"],
                   help="depth only as <depth topic>/compressedDepth, as image_transport records it (png: Humble's "
                        "codec, rvl: Iron and later)")
    p.set_defaults(func=cmd_synth)

    p = sub.add_parser("replay", help="build a map from a ROS 2 or ROS 1 bag or a 7-Scenes style frame folder")
    p.add_argument("bag", type=Path, help="rosbag2 directory (mcap or sqlite3), ROS 1 .bag file or frame folder")
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
    p.add_argument("--camera", choices=sorted(PRESETS),
                   help="topics of a camera driver's defaults (realsense, oakd, zed, generic); flags below override")
    add_input_flags(p)
    p.set_defaults(func=cmd_replay)

    p = sub.add_parser("query", help="find objects matching texts in a map")
    p.add_argument("map", type=Path, help="map directory written by replay")
    p.add_argument("text", nargs="+", help="what to look for, e.g. 'mug' (several: answered in one process)")
    p.add_argument("--json", action="store_true",
                   help="print the answer as JSON (a list for several texts; indented on a terminal)")
    p.add_argument("--pretty", action="store_true", help="with --json: indent it even when piped")
    p.add_argument("--max-objects", type=int, default=0, metavar="N", help="at most N objects per answer (0: all)")
    p.add_argument("--png", type=Path, help="also draw the map from above with the answer (one text)")
    p.add_argument("--max-age", type=float, default=0.0, metavar="S",
                   help="ignore objects not seen in the last S seconds before the map's newest keyframe "
                        "(default 0: no limit)")
    p.add_argument("--navigate-from", type=xy, metavar="X,Y",
                   help="the robot's position in the map frame (m): the goal approaches the object it reaches "
                        "first by a path over the navigation grid, not the best-scored one")
    p.add_argument("--config", type=Path, help="YAML/JSON config file (query section)")
    p.set_defaults(func=cmd_query)

    p = sub.add_parser("models", help="list the SAM/SAM2/OpenCLIP weights the config selects and where they go")
    p.add_argument("--config", type=Path, help="YAML/JSON config file (models section)")
    p.add_argument("--check", action="store_true", help="also load every model (start-up check)")
    p.set_defaults(func=cmd_models)

    p = sub.add_parser("demo", help="synthesise the bundled scene, build its map and answer a query")
    p.add_argument("--out", type=Path, default=Path("out/demo"), help="working directory")
    p.add_argument("--text", default="red mug", help="query to answer")
    p.set_defaults(func=cmd_demo)
    return parser


_XY_FLAGS = ("--navigate-from", "--move-to")
_XY_VALUE = re.compile(r"^-[\d.]")


def _attach_negative_xy(argv: list[str]) -> list[str]:
    """``--navigate-from -1.5,2`` as ``--navigate-from=-1.5,2``: argparse takes a value that
    starts with '-' (and is not a plain number) for a flag."""
    out: list[str] = []
    for arg in argv:
        if out and out[-1] in _XY_FLAGS and _XY_VALUE.match(arg):
            out[-1] = f"{out[-1]}={arg}"
        else:
            out.append(arg)
    return out


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; returns the exit status."""
    args = build_parser().parse_args(_attach_negative_xy(sys.argv[1:] if argv is None else list(argv)))
    try:
        return _exit_past_workers(int(args.func(args)))
    except LangGSError as exc:
        log(f"error: {exc}")
        return 2
    except OSError as exc:  # a file system failure outside the checked paths: still the user's to fix
        where = f" ({exc.filename})" if exc.filename else ""
        log(f"error: {os_reason(exc)}{where}")
        return 2
    except KeyboardInterrupt:
        log("interrupted")
        return 130
    except Exception as exc:  # noqa: BLE001 - a bug: say so in one line, trace on request
        if os.environ.get("LANGGS_DEBUG"):
            traceback.print_exc()
        log(f"internal error: {type(exc).__name__}: {exc} (a bug in langgs_ros; LANGGS_DEBUG=1 shows the traceback)")
        return 3


def _exit_past_workers(code: int) -> int:
    """``code``; but if a worker thread is still inside a model (``replay --realtime --no-drain``
    stopped while the 2D backend runs a keyframe for minutes), exit now: letting the interpreter
    tear down under a running torch op aborts the process ("terminate called ...")."""
    import threading

    busy = [t.name for t in threading.enumerate() if t.name.startswith("langgs-") and t.is_alive()]
    if busy:
        log(f"[langgs] not waiting for {', '.join(busy)} (busy in the backend); exiting")
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    return code


def entrypoint() -> None:
    """Console-script entry point."""
    sys.exit(main())

"""``langgs query`` (several texts in one process) and ``langgs models``."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from langgs_ros.cli.common import command_config, log
from langgs_ros.config import PipelineConfig
from langgs_ros.errors import InputError, MapFileError
from langgs_ros.io.output_paths import check_not_an_input, check_output_file

__all__ = ["cmd_query", "cmd_models", "answer", "print_answer", "load_map_noted"]


def load_map_noted(map_dir: Path) -> Any:
    """The map in ``map_dir``, its loading notes logged."""
    from langgs_ros.mapping.map_io import load_map

    data = load_map(map_dir)
    for note in data.notes:
        log(f"[query] note: {note}")
    return data


def answer(data: Any, text: str, config: PipelineConfig, png: Path | None = None, max_age_s: float = 0.0,
           engine: Any = None, max_objects: int = 0, navigate_from: tuple[float, float] | None = None) -> Any:
    """The query result of ``text`` on the loaded map ``data``, ignoring objects not seen in the last
    ``max_age_s`` seconds of the recording (0: none), at most ``max_objects`` (0: all), the goal
    for the object reached first from ``navigate_from`` (x, y in the map frame, m) if given; draws
    ``png`` if given (its path checked before: :func:`cmd_query`). ``engine``: a QueryEngine of
    ``data`` to reuse (its caches)."""
    from langgs_ros.query.engine import QueryEngine

    engine = engine or QueryEngine(data, config.query)
    result = engine.query(text, max_age_s, max_objects=max_objects,
                          navigate_from=None if navigate_from is None else np.asarray(navigate_from, np.float64))
    if png is not None:
        from langgs_ros.viz import render_top_down, write_png

        means, colors = data.store.preview(4_000_000)
        write_png(png, render_top_down(means, colors, result, config.query.robot_radius))
    return result


def print_answer(result: Any) -> None:
    print(f"query: '{result.query}' ({result.message})")
    for rank, obj in enumerate(result.objects, 1):
        c, lo, hi = obj.centroid, obj.bbox_min, obj.bbox_max
        print(f"  #{rank} score {obj.score:.3f}  {obj.num_gaussians} Gaussians  centroid ({c[0]:.2f}, {c[1]:.2f}, {c[2]:.2f})"
              f"  box ({lo[0]:.2f}, {lo[1]:.2f}, {lo[2]:.2f})..({hi[0]:.2f}, {hi[1]:.2f}, {hi[2]:.2f}) [{result.frame_id}]"
              + (f"  last seen {obj.age_s:.1f} s before the map's end" if obj.age_s is not None else ""))
    if result.goal_pose is not None:
        g = result.goal_pose
        path = f", {g.path_length:.2f} m of path from the robot" if np.isfinite(g.path_length) else ""
        print(f"  goal: ({g.position[0]:.2f}, {g.position[1]:.2f}, {g.position[2]:.2f}) yaw {g.yaw:.2f} rad "
              f"[{result.frame_id}], {g.distance_to_object:.2f} m from object #{result.goal_object + 1}{path}")
    elif result.objects:
        print("  goal: none")


def cmd_query(args: argparse.Namespace) -> int:
    """Answer every text of the command line on one loaded map (the start-up, torch and the map,
    is paid once). Exit status 2 when a text could not be answered at all (see ``answered``)."""
    from langgs_ros.query.engine import QueryEngine

    config = command_config(args)
    if args.max_objects < 0:
        raise InputError(f"--max-objects must be 0 (all) or more, got {args.max_objects}")
    if args.png is not None:
        if len(args.text) > 1:
            raise InputError("--png draws one answer: give one text with it")
        check_output_file(args.png, "picture")
        map_file = Path(args.map) / "map.npz" if Path(args.map).is_dir() else Path(args.map)
        check_not_an_input(args.png, [map_file, Path(args.map) / "blocks", getattr(args, "config", None)], "--png")
    start = time.perf_counter()
    data = None
    for attempt in range(2):  # a map replaced by its writer between reading the manifest and a block: read again
        data = load_map_noted(args.map)
        engine = QueryEngine(data, config.query)
        try:
            results = [answer(data, text, config, args.png, args.max_age, engine, args.max_objects,
                              args.navigate_from) for text in args.text]
            break
        except MapFileError as exc:
            if attempt or "missing" not in str(exc):
                raise
    log(f"[query] {len(args.text)} answer(s) in {time.perf_counter() - start:.2f} s (after start-up)")
    if args.json:
        answers = [r.to_json(config.query.max_points) for r in results]
        body = answers[0] if len(answers) == 1 else answers
        pretty = args.pretty or sys.stdout.isatty()
        print(json.dumps(body, ensure_ascii=True, indent=1 if pretty else None))
    else:
        for result in results:
            print_answer(result)
        if args.png:
            print(f"  picture: {args.png}")
    refused = [r for r in results if not r.answered]
    if refused:
        log(f"error: {len(refused)} of {len(results)} queries could not be answered: "
            + "; ".join(f"'{r.query}': {r.message}" for r in refused))
        return 2
    return 0


def cmd_models(args: argparse.Namespace) -> int:
    """List the weights the config selects. Exit 0 when all are there, 2 when one is missing or
    (``--check``) does not load."""
    from langgs_ros.semantics.models import model_files

    config = command_config(args)
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
        log("error: some weights are missing: `langgs replay --semantics clip` will stop at start-up; put the "
            "files where listed or set their paths under 'models:' in a --config file")
        return 2
    return 0

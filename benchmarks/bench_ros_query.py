"""Benchmark: ``/query`` round trip over ROS 2 (issue 31), where a ROS 2 install and this package's
colcon workspace are sourced.

A map written by ``langgs replay`` is tiled (copies 7 m apart along +x) to ``--gaussians`` and saved;
``mapping.launch.py`` (oracle text encoder) loads it; a client calls ``/query`` for every label of the
ground truth ``--reps`` times and times each call from request to response (the node publishes its
topics after the response). Figures go to stdout and ``--out`` as JSON.

    source /opt/ros/jazzy/setup.bash && source ~/ws/install/setup.bash
    python benchmarks/bench_ros_query.py --map out/room_map --truth out/room/ground_truth.json \\
        [--gaussians 1000000] [--reps 20] [--out out/bench_ros_query.json]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np

from tiled_map import tiled


def tiled_map(source: Path, target: int, out: Path) -> int:
    """Save ``source``'s map repeated until it holds >= ``target`` Gaussians into ``out``; returns the count."""
    from langgs_ros.mapping.map_io import load_map, save_map

    data = load_map(source)
    big = tiled(data.store, data.field, target, data.semantics, data.fixed_frame)
    save_map(out, big)
    return len(big.store)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--map", type=Path, required=True, help="map directory (langgs replay --semantics oracle)")
    parser.add_argument("--truth", type=Path, required=True, help="ground_truth.json of its synthetic bag")
    parser.add_argument("--gaussians", type=int, default=1_000_000)
    parser.add_argument("--reps", type=int, default=20)
    parser.add_argument("--out", type=Path, default=Path("out/bench_ros_query.json"))
    args = parser.parse_args()

    import rclpy

    from langgs_ros.evaluation import load_ground_truth
    from langgs_ros.srv import Query

    labels = sorted({o["label"] for o in load_ground_truth(args.truth)})
    work = Path(tempfile.mkdtemp(prefix="langgs_ros_query_"))
    count = tiled_map(args.map, args.gaussians, work / "map")
    print(f"map of {count} Gaussians in {work / 'map'}", flush=True)
    launch = subprocess.Popen(["ros2", "launch", "langgs_ros", "mapping.launch.py", "semantics:=oracle",
                               f"map_path:={work / 'map'}"], stdout=open(work / "launch.log", "w"),
                              stderr=subprocess.STDOUT, start_new_session=True)
    rclpy.init()
    node = rclpy.create_node("langgs_bench_query")
    try:
        client = node.create_client(Query, "/query")
        if not client.wait_for_service(timeout_sec=120.0):
            raise SystemExit(f"/query never appeared; see {work / 'launch.log'}")

        def call(text: str) -> tuple[float, object]:
            start = time.perf_counter()
            future = client.call_async(Query.Request(text=text))
            rclpy.spin_until_future_complete(node, future, timeout_sec=60.0)
            return 1000 * (time.perf_counter() - start), future.result()

        for label in labels:  # warm: the map's blocks and summaries, text encodings
            _, answer = call(label)
            if answer is None or not answer.success:
                raise SystemExit(f"/query '{label}' failed: {getattr(answer, 'message', 'no answer')}")
        times, points = [], []
        for _ in range(args.reps):
            for label in labels:
                ms, answer = call(label)
                times.append(ms)
                points.append(sum(o.points.width for o in answer.objects))
        a = np.asarray(times)
        row = {"gaussians": count, "labels": len(labels), "calls": len(times),
               "round_trip_ms": {"p50": round(float(np.percentile(a, 50)), 1), "p95": round(float(np.percentile(a, 95)), 1),
                                 "max": round(float(a.max()), 1)},
               "mask_points_per_answer_mean": round(float(np.mean(points)))}
        print(json.dumps(row, indent=1))
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(row, indent=1))
        print(f"figures: {args.out}")
    finally:
        node.destroy_node()
        rclpy.shutdown()
        os.killpg(launch.pid, signal.SIGINT)
        try:
            launch.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(launch.pid, signal.SIGKILL)


if __name__ == "__main__":
    main()

"""``langgs replay --realtime`` against the offline replay: with the oracle made as slow as a real
model (``oracle.delay_s``), geometry keeps up with the recording and, once the semantics backlog
has drained, the map answers nearly as well as the offline one (issue 16)."""

from __future__ import annotations

import numpy as np

from langgs_ros.config import PipelineConfig
from langgs_ros.evaluation import evaluate_queries, load_ground_truth
from langgs_ros.mapping.map_io import load_map
from langgs_ros.pipeline import replay
from langgs_ros.query.engine import QueryEngine
from langgs_ros.runtime.realtime_replay import replay_realtime


def _mean_iou(map_dir, truth) -> float:
    return float(np.mean([s.iou for s in evaluate_queries(QueryEngine(load_map(map_dir)), truth)]))


def test_realtime_with_a_slow_backend_matches_the_offline_replay(synth_bag, tmp_path):
    config = PipelineConfig()  # the node's defaults (pixel_stride 2: geometry keeps up with 10 Hz here)
    oracle_map = tmp_path / "offline"
    replay(synth_bag.bag, oracle_map, "oracle", config)
    config.oracle.delay_s = 1.0  # seconds per segmented keyframe
    lines: list[str] = []
    summary = replay_realtime(synth_bag.bag, tmp_path / "realtime", "oracle", config, progress=lines.append)
    s = summary.status
    offline = load_map(oracle_map)
    offline_keyframes = len(offline.keyframes)
    assert s.keyframes >= 0.9 * offline_keyframes, (s, offline_keyframes)
    assert s.semantics_pending == 0 and s.keyframes_segmented >= 1
    assert s.keyframes_segmented + s.semantics_dropped == s.keyframes  # every keyframe is accounted for
    assert s.semantics_dropped > 0  # 1 s per keyframe cannot keep up with the recording: the backlog policy ran
    assert any(line.startswith("playing:") for line in lines)
    truth = load_ground_truth(synth_bag.ground_truth)
    realtime_iou, offline_iou = _mean_iou(tmp_path / "realtime", truth), _mean_iou(oracle_map, truth)
    print(f"keyframes {s.keyframes}/{offline_keyframes}, segmented {s.keyframes_segmented}, "
          f"IoU realtime {realtime_iou:.3f} offline {offline_iou:.3f}, lag p50/p95/max {summary.lag_percentiles()}")
    assert realtime_iou >= offline_iou - 0.02


def test_no_drain_stops_at_the_bags_end_and_the_answer_says_what_is_not_labelled(tmp_path):
    import json
    import subprocess
    import sys

    from langgs_ros.synth.make_bag import SynthSpec, make_synthetic_bag

    synth = make_synthetic_bag(tmp_path, SynthSpec(width=96, height=72, frames=12))
    config = tmp_path / "slow.yaml"
    config.write_text("oracle:\n  delay_s: 60.0\n")  # the backend never finishes a keyframe here
    run = subprocess.run([sys.executable, "-m", "langgs_ros", "replay", str(synth.bag), "--out", str(tmp_path / "map"),
                          "--semantics", "oracle", "--realtime", "--no-drain", "--config", str(config)],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert "still waiting" in run.stderr and "segmented 0" in run.stderr
    query = subprocess.run([sys.executable, "-m", "langgs_ros", "query", str(tmp_path / "map"), "table", "--json"],
                           capture_output=True, text=True)
    answer = json.loads(query.stdout)  # a map without semantics yet cannot answer: exit 2, the JSON says why
    assert query.returncode == 2 and not answer["answered"]
    assert answer["semantics"]["pending_keyframes"] > 0 and "not yet labelled" in answer["message"]

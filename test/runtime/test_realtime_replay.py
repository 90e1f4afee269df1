"""``langgs replay --realtime`` against the offline replay: with the oracle made as slow as a real
model (``oracle.delay_s``), geometry keeps up with the recording and, once the semantics backlog
has drained, the map answers nearly as well as the offline one (issue 16).

Nothing here depends on the machine's speed (issue 33): the recording's time is a simulated clock
that moves on only once geometry has taken the frames given so far (a machine of any speed keeps
up), and stamp gaps are checked on the sleeps the replay asks for, not on the wall clock."""

from __future__ import annotations

import time

import numpy as np

from langgs_ros.config import PipelineConfig
from langgs_ros.evaluation import evaluate_queries, load_ground_truth
from langgs_ros.mapping.map_io import load_map
from langgs_ros.pipeline import replay
from langgs_ros.query.engine import QueryEngine
from langgs_ros.runtime.realtime_replay import replay_realtime


class GeometryPacedClock:
    """Recorded time that advances by what the replay sleeps, each step only after the mapping
    worker has taken every frame submitted (semantics keep running in real time beside it)."""

    def __init__(self) -> None:
        self.t = 0.0
        self.sleeps: list[float] = []
        self.runtime = None

    def bind(self, runtime) -> None:  # noqa: ANN001
        self.runtime = runtime

    def now(self) -> float:
        return self.t

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        while self.runtime is not None and self.runtime.backlog():  # the frame queue and the frame in hand
            time.sleep(0.002)
        time.sleep(0.001)  # let the worker threads run
        self.t += seconds


def _mean_iou(map_dir, truth) -> float:
    return float(np.mean([s.iou for s in evaluate_queries(QueryEngine(load_map(map_dir)), truth)]))


def test_realtime_with_a_slow_backend_matches_the_offline_replay(synth_bag, tmp_path):
    config = PipelineConfig()  # the node's defaults (pixel_stride 2: geometry keeps up with 10 Hz here)
    oracle_map = tmp_path / "offline"
    replay(synth_bag.bag, oracle_map, "oracle", config)
    config.oracle.delay_s = 1.0  # seconds per segmented keyframe
    lines: list[str] = []
    summary = replay_realtime(synth_bag.bag, tmp_path / "realtime", "oracle", config, progress=lines.append,
                              clock=GeometryPacedClock())
    s = summary.status
    offline = load_map(oracle_map)
    offline_keyframes = len(offline.keyframes)
    assert s.frames_dropped == 0 and s.keyframes == offline_keyframes, (s, offline_keyframes)
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


def test_a_stamp_gap_is_skipped_over_not_slept_through(small_bag, tmp_path):
    """A recording paused for an hour (stamps jump +1 h mid-bag): the replay says so and never asks
    to sleep longer than ``input.max_gap_s``."""
    bag = small_bag(frames=8, time_jump_at=4)
    config = PipelineConfig()
    clock, lines = GeometryPacedClock(), []
    summary = replay_realtime(bag, tmp_path / "map", "none", config, progress=lines.append, clock=clock)
    assert summary.gaps_skipped_s > 3599.0
    assert max(clock.sleeps) < config.input.max_gap_s
    assert any("jump 3600.1 s" in line and "skipped over" in line for line in lines), lines
    assert summary.status.frames_in == 8 and summary.status.frames_rejected == 0

"""Pose corrections from SLAM (issue 17): a nav_msgs/Path re-poses the keyframes it covers and the
Gaussians anchored to them (``langgs synth --drift`` + ``input.pose_graph_topic`` end to end); a
map -> odom jump re-anchors keyframes (``langgs synth --relocalize`` +
``input.reanchor_on_map_odom_jump_m``)."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from langgs_ros.config import PipelineConfig
from langgs_ros.errors import InputError
from langgs_ros.evaluation import evaluate_queries, load_ground_truth
from langgs_ros.geometry import make_transform, normals_from_quat_wxyz
from langgs_ros.io.bag_reader import BagFrameReader
from langgs_ros.mapping.block_store import BlockStore, block_keys
from langgs_ros.mapping.keyframe_log import KeyframeLog
from langgs_ros.mapping.map_io import load_map
from langgs_ros.mapping.pose_correction import PoseGraph, correct_map, reanchor_map
from langgs_ros.pipeline import replay
from langgs_ros.query.engine import QueryEngine
from langgs_ros.synth.make_bag import POSE_GRAPH_TOPIC, SynthSpec, make_synthetic_bag

S = 1_000_000_000


def _pose(x: float, y: float, yaw_deg: float) -> np.ndarray:
    return make_transform(Rotation.from_euler("z", yaw_deg, degrees=True).as_matrix(), [x, y, 0.0])


def test_the_graph_is_interpolated_inside_its_span_only():
    graph = PoseGraph.from_poses(np.array([3, 1, 2, 2]) * S,  # unsorted, a duplicate stamp
                                 np.array([_pose(2, 0, 20), _pose(0, 0, 0), _pose(1, 0, 10), _pose(9, 9, 0)]))
    assert graph.stamps_ns.tolist() == [S, 2 * S, 3 * S]
    covered, T = graph.base_poses_at(np.array([0, 1.5 * S, 2.5 * S, 4 * S], np.int64))
    assert covered.tolist() == [False, True, True, False]
    assert np.allclose(T[1], _pose(0.5, 0, 5)) and np.allclose(T[2], _pose(1.5, 0, 15))
    bad = _pose(0, 0, 0)
    bad[0, 0] = np.nan
    with pytest.raises(ValueError, match="no usable pose"):
        PoseGraph.from_poses(np.array([S]), bad[None])


def _store(log: KeyframeLog) -> BlockStore:
    """Half-metre blocks: the Gaussians below span many, and a correction moves some into others."""
    store = BlockStore(0.5)
    store.anchor_of = log.anchors
    return store


def test_a_correction_moves_the_gaussians_a_keyframe_created_rigidly():
    log = KeyframeLog()
    gmap = _store(log)
    mount = make_transform(np.eye(3), [0.1, 0.0, 1.3])  # T_base_cam
    rng = np.random.default_rng(0)
    for k, base in enumerate([_pose(0, 0, 0), _pose(1, 0, 0), _pose(2, 0, 0)]):
        log.append(base @ mount, (10 + k) * S, gmap.next_uid, None if k == 2 else mount)
        quats = Rotation.random(50, random_state=k).as_quat()[:, [3, 0, 1, 2]].astype(np.float16)
        gmap.append(means=rng.uniform(-1, 1, (50, 3)).astype(np.float32), quats=quats)
    before = {name: gmap[name].copy() for name in ("means", "quats")}
    blocks_before = len(gmap.blocks)
    # SLAM: keyframe 1's base was really at (1, 0.3) turned 10 degrees; keyframe 0 (10 s) is outside the graph
    graph = PoseGraph.from_poses(np.array([11, 12]) * S, np.array([_pose(1, 0.3, 10), _pose(2, 0.3, 10)]))
    stats, moved = correct_map(gmap, log, graph)
    assert moved.tolist() == [1] and stats.keyframes_moved == 1 and stats.gaussians_moved == 50
    assert stats.keyframes_without_mount == 1  # keyframe 2: no base frame in TF when it was integrated
    assert np.allclose(log.poses[1], _pose(1, 0.3, 10) @ mount)
    D = log.poses[1] @ np.linalg.inv(_pose(1, 0, 0) @ mount)
    rows = slice(50, 100)
    assert np.allclose(gmap["means"][rows], before["means"][rows] @ D[:3, :3].T + D[:3, 3], atol=1e-5)
    assert np.allclose(normals_from_quat_wxyz(gmap["quats"][rows]),
                       normals_from_quat_wxyz(before["quats"][rows]) @ D[:3, :3].T, atol=2e-3)
    for other in (slice(0, 50), slice(100, 150)):  # not covered, or no mount: where they were
        assert np.array_equal(gmap["means"][other], before["means"][other])
    # every Gaussian lies in the block of its mean again (moved ones changed block)
    for blk in gmap.blocks:
        if blk.count:
            assert (block_keys(blk.gaussians["means"], gmap.block_size) == blk.key).all()
    assert len(gmap.blocks) >= blocks_before


class _PathMessage:
    """The fields of a nav_msgs/Path that the reader uses (rosbags' and rclpy's classes have them)."""

    def __init__(self, frame: str, poses: list) -> None:
        self.header = type("H", (), {"frame_id": frame})()
        self.poses = poses


def test_a_pose_graph_in_another_frame_is_refused():
    from langgs_ros.io.path_message import pose_graph_from_path

    with pytest.raises(InputError, match="frame 'odom'"):
        pose_graph_from_path(_PathMessage("odom", []), "map")
    with pytest.raises(InputError, match="no pose"):
        pose_graph_from_path(_PathMessage("map", []), "map")


@pytest.fixture(scope="module")
def drift_bag(tmp_path_factory):
    return make_synthetic_bag(tmp_path_factory.mktemp("drift"), SynthSpec(width=320, height=240, frames=72,
                                                                          drift=True))


def _mean_iou(map_dir, truth) -> float:
    return float(np.mean([s.iou for s in evaluate_queries(QueryEngine(load_map(map_dir)), truth)]))


def test_a_wrong_pose_graph_topic_type_is_an_error(drift_bag):
    config = PipelineConfig()
    config.input.pose_graph_topic = "/camera/color/camera_info"
    with pytest.raises(InputError, match="not nav_msgs/Path"):
        BagFrameReader(drift_bag.bag, config.input)


def test_slams_path_undoes_odometry_drift(drift_bag, oracle_map, tmp_path):
    gt = json.loads(drift_bag.ground_truth.read_text())
    assert gt["drift"]["pose_graph_topic"] == POSE_GRAPH_TOPIC
    truth = load_ground_truth(drift_bag.ground_truth)
    config = PipelineConfig()
    config.mapping.pixel_stride = 1  # as the drift-free map of the fixture
    replay(drift_bag.bag, tmp_path / "drifted", "oracle", config)
    config.input.pose_graph_topic = POSE_GRAPH_TOPIC
    summary = replay(drift_bag.bag, tmp_path / "corrected", "oracle", config)
    (correction,) = summary.corrections
    assert correction.keyframes_moved == summary.keyframes and correction.keyframes_without_mount == 0
    free, drifted, corrected = (_mean_iou(oracle_map, truth), _mean_iou(tmp_path / "drifted", truth),
                                _mean_iou(tmp_path / "corrected", truth))
    print(f"mean IoU: drift-free {free:.3f}, drifted {drifted:.3f}, corrected {corrected:.3f}")
    assert corrected >= free - 0.02, (free, corrected)  # issue 17 asks 0.05; 0.951 vs 0.953 with relabel_window
    assert drifted < corrected - 0.1, (drifted, corrected)
    saved = load_map(tmp_path / "corrected").keyframes  # mounts and corrected poses survive save/load
    assert all(m is not None for m in saved.mounts) and len(saved) == summary.keyframes


def test_a_map_odom_jump_re_expresses_the_keyframes_integrated_before_it():
    log = KeyframeLog()
    gmap = _store(log)
    wrong, right = _pose(0.3, -0.2, 5), _pose(0, 0, 0)  # map -> odom: the localizer's guess, then the truth
    rng = np.random.default_rng(1)
    for k, (odom_cam, T_world_odom) in enumerate([(_pose(0, 0, 0), wrong), (_pose(1, 0, 30), wrong),
                                                  (_pose(2, 0, 0), None), (_pose(3, 0, 0), right)]):
        log.append(T_world_odom @ odom_cam if T_world_odom is not None else odom_cam, k * S, gmap.next_uid,
                   None, T_world_odom)
        gmap.append(means=rng.uniform(-1, 1, (20, 3)).astype(np.float32),
                    quats=np.tile(np.array([1, 0, 0, 0], np.float16), (20, 1)))
    before = gmap["means"].copy()
    stats, moved = reanchor_map(gmap, log, right, min_shift_m=0.05)
    # keyframes 0 and 1 were placed with the wrong map -> odom; 2 has none (kept); 3 is already right
    assert moved.tolist() == [0, 1] and stats.gaussians_moved == 40 and stats.source == "map -> odom jump"
    assert np.allclose(log.poses[1], right @ _pose(1, 0, 30)) and np.allclose(log.odom[0], right)
    D = right @ np.linalg.inv(wrong)  # each moved keyframe's Gaussians move rigidly with it
    assert np.allclose(gmap["means"][:40], before[:40] @ D[:3, :3].T + D[:3, 3], atol=1e-5)
    assert np.array_equal(gmap["means"][40:], before[40:])
    again, moved = reanchor_map(gmap, log, _pose(0.01, 0, 0), min_shift_m=0.05)  # under the threshold
    assert moved.size == 0 and again.gaussians_moved == 0
    restored = KeyframeLog.from_arrays(**log.to_arrays())  # kept with the map
    assert restored.odom[2] is None and np.allclose(restored.odom[3], right)


def test_a_pose_graph_supersedes_map_odom_for_the_keyframes_it_moves():
    log = KeyframeLog()
    gmap = _store(log)
    mount = make_transform(np.eye(3), [0.1, 0.0, 1.3])
    log.append(_pose(0, 0, 0) @ mount, 10 * S, gmap.next_uid, mount, _pose(0.5, 0, 0))
    graph = PoseGraph.from_poses(np.array([10]) * S, _pose(0, 1, 0)[None])
    correct_map(gmap, log, graph)
    assert log.odom[0] is None  # a later map -> odom jump leaves the graph's pose alone
    assert reanchor_map(gmap, log, _pose(0, 0, 0), 0.05)[1].size == 0


@pytest.fixture(scope="module")
def relocalized_bag(tmp_path_factory):
    return make_synthetic_bag(tmp_path_factory.mktemp("reloc"), SynthSpec(width=320, height=240, frames=72,
                                                                          relocalize=True))


def test_a_localizer_that_converges_late_is_undone_by_reanchoring(relocalized_bag, oracle_map, tmp_path):
    gt = json.loads(relocalized_bag.ground_truth.read_text())
    assert gt["relocalize"]["frame"] == 36
    truth = load_ground_truth(relocalized_bag.ground_truth)
    config = PipelineConfig()
    config.mapping.pixel_stride = 1  # as the drift-free map of the fixture
    replay(relocalized_bag.bag, tmp_path / "kept", "oracle", config)
    config.input.reanchor_on_map_odom_jump_m = 0.05
    summary = replay(relocalized_bag.bag, tmp_path / "reanchored", "oracle", config)
    assert summary.corrections and all(c.source == "map -> odom jump" for c in summary.corrections)
    free, kept, reanchored = (_mean_iou(oracle_map, truth), _mean_iou(tmp_path / "kept", truth),
                              _mean_iou(tmp_path / "reanchored", truth))
    print(f"mean IoU: true map->odom {free:.3f}, jump kept {kept:.3f}, re-anchored {reanchored:.3f}; "
          + "; ".join(c.summary() for c in summary.corrections))
    assert reanchored >= free - 0.05, (free, reanchored)
    assert kept < reanchored - 0.1, (kept, reanchored)


def _stereo_depth_quality(mapper, frames, correct_at=None, shift=None):
    """(valid fraction, median |error| m) of the stereo depth of each keyframe of ``frames`` mapped
    color-only, and the index in that list of the first keyframe after a correction. Without
    ``correct_at`` the correction is a map -> odom jump in the frames; with it, a pose graph that moves
    every keyframe by ``shift`` at frame ``correct_at``, and later frames are posed shifted alike."""
    rows, first_after = [], None
    for i, frame in enumerate(frames):
        truth = frame.depth
        frame = dataclasses.replace(frame, depth=None)
        if correct_at is not None:
            frame = dataclasses.replace(frame, T_world_odom=None)
            if i == correct_at:
                log = mapper.keyframes
                bases = np.array([shift @ pose @ np.linalg.inv(mount) for pose, mount in zip(log.poses, log.mounts)])
                assert mapper.apply_pose_graph(PoseGraph.from_poses(np.array(log.stamps_ns), bases)).keyframes_moved
                first_after = len(rows)
            if i >= correct_at:
                frame = dataclasses.replace(frame, T_world_cam=shift @ frame.T_world_cam,
                                            T_world_base=shift @ frame.T_world_base)
        try:
            stats, pending = mapper.integrate_geometry(frame)
        except InputError:  # the first frame: no earlier view to match yet
            continue
        if pending is None:
            continue
        if stats.reanchored is not None and first_after is None:
            first_after = len(rows)
        ok = np.isfinite(pending.frame.depth) & np.isfinite(truth)
        rows.append((ok.mean(), float(np.median(np.abs(pending.frame.depth[ok] - truth[ok]))) if ok.any() else np.inf))
    return rows, first_after


@pytest.mark.parametrize("correction", ["map -> odom jump", "pose graph, no odometry frame"])
def test_stereo_source_views_follow_a_correction(relocalized_bag, correction):
    """Color only: the first keyframe after a correction still gets good stereo depth, because the
    recent views the plane sweep matches against are posed in odom (a map -> odom jump leaves them
    alone), or move with the newest keyframe where frames have no odometry frame."""
    from langgs_ros.config import OracleNoiseConfig
    from langgs_ros.mapping.mapper import Mapper
    from langgs_ros.semantics.backend import create_backend

    config = PipelineConfig()
    with BagFrameReader(relocalized_bag.bag, config.input, with_instances=True) as source:
        frames = list(source.frames())
    mapper = Mapper(config.mapping, create_backend("oracle", OracleNoiseConfig()), reanchor_jump_m=0.05)
    if correction == "map -> odom jump":
        rows, after = _stereo_depth_quality(mapper, frames[:44])
    else:
        rows, after = _stereo_depth_quality(mapper, frames[:30], correct_at=20, shift=_pose(0.3, -0.2, 5))
    before = rows[1:after]  # the first keyframe has no earlier depth map to agree with
    assert after is not None and len(before) > 10
    valid, error = rows[after]
    assert valid >= 0.5 * np.median([r[0] for r in before]), (rows[after], before)
    assert error <= 2 * np.median([r[1] for r in before]) + 0.01, (rows[after], before)


def test_frames_that_wait_while_slam_corrects_the_past_are_posed_by_the_graph(relocalized_bag):
    """A frame stamped inside the newest Path's span that arrives after it (it sat in a queue) is
    posed by the Path, not by its stale TF pose; one stamped after the Path's end keeps its pose."""
    from langgs_ros.config import MappingConfig
    from langgs_ros.mapping.mapper import Mapper

    with BagFrameReader(relocalized_bag.bag, PipelineConfig().input) as source:
        frames = [f for _, f in zip(range(24), source.frames())]
    drift = _pose(0.3, -0.2, 5)  # odometry's error: TF poses every frame shifted by it

    def drifted(frame):
        return dataclasses.replace(frame, T_world_cam=drift @ frame.T_world_cam, T_world_base=drift @ frame.T_world_base,
                                   T_world_odom=drift @ frame.T_world_odom)

    mapper = Mapper(MappingConfig(keyframe_translation_m=0.0, keyframe_rotation_deg=0.0), None)  # all keyframes
    for frame in frames[:10]:
        mapper.integrate(drifted(frame))
    graph = PoseGraph.from_poses(np.array([f.stamp_ns for f in frames[:16]]), np.array([f.T_world_base for f in frames[:16]]))
    stats = mapper.apply_pose_graph(graph)
    assert stats.keyframes_moved == 10
    for frame in frames[10:20]:  # they waited: TF still gave them the drifted pose
        mapper.integrate(drifted(frame))
    log = mapper.keyframes
    assert len(log) == 20
    for k in range(16):  # the graph's span: true poses, no map -> odom (the graph's pose is not odometry's)
        assert np.allclose(log.poses[k], frames[k].T_world_cam, atol=1e-6), k
        assert log.odom[k] is None, k
    for k in range(16, 20):  # after its end: TF's pose
        assert np.allclose(log.poses[k], drift @ frames[k].T_world_cam, atol=1e-6), k

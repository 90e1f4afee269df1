"""The mapping node's logic without rclpy: queueing and dropping, the worker, queries, save/reset."""

from __future__ import annotations

import itertools
import time

import numpy as np
import pytest

from langgs_ros.config import PipelineConfig
from langgs_ros.evaluation import load_ground_truth
from langgs_ros.io.bag_reader import BagFrameReader
from langgs_ros.mapping.map_io import load_map
from langgs_ros.query.engine import QueryEngine
from langgs_ros.runtime.mapping_runtime import MappingRuntime
from langgs_ros.runtime.worker import LatestQueue


def test_latest_queue_drops_the_oldest_and_never_blocks():
    q = LatestQueue(2)
    for i in range(5):
        q.put(i)
    assert q.dropped == 3 and q.get(0) == 3 and q.get(0) == 4 and q.get(0.01) is None
    q.close()
    assert q.get(10) is None  # returns at once once closed
    with pytest.raises(ValueError):
        LatestQueue(0)


@pytest.fixture(scope="module")
def frames(synth_bag):
    with BagFrameReader(synth_bag.bag, PipelineConfig().input, with_instances=True) as source:
        return list(itertools.islice(source.frames(), 0, None, 2))


@pytest.fixture(scope="module")
def runtime(frames):
    rt = MappingRuntime(PipelineConfig(), "oracle", queue_size=len(frames))
    assert rt.configure() == "new empty map"
    for frame in frames:
        rt.submit(frame)
    assert rt.process_pending() == len(frames)
    return rt


def test_runtime_maps_and_answers_like_the_offline_engine(runtime, synth_bag, tmp_path):
    s = runtime.status
    assert s.frames_in == s.frames_used > 0 and s.frames_dropped == 0 and s.keyframes > 0 and s.gaussians > 0
    label = load_ground_truth(synth_bag.ground_truth)[0]["label"]
    answer = runtime.query(label)
    assert answer.objects and answer.goal_pose is not None
    runtime.save(tmp_path)
    offline = QueryEngine(load_map(tmp_path)).query(label)  # what `langgs query` answers on the saved map
    assert np.allclose(offline.objects[0].centroid, answer.objects[0].centroid)
    assert np.allclose(offline.goal_pose.position, answer.goal_pose.position)
    mask, frame = runtime.mask_in_last_view(answer)
    assert mask.shape == frame.depth.shape and mask.any()


def test_an_answer_with_a_point_budget_reads_a_sample_and_summarises_the_whole(runtime, synth_bag):
    """max_points (what /query sends): the same instances, boxes, scores and goal; at most that many
    points each, evenly spread over the object; the view mask still covers the object."""
    label = load_ground_truth(synth_bag.ground_truth)[0]["label"]
    full, sampled = runtime.query(label), runtime.query(label, max_points=40)
    assert len(full.objects) == len(sampled.objects) > 0
    for whole, part in zip(full.objects, sampled.objects):
        assert len(whole.points) == whole.num_gaussians > 40 and part.num_gaussians == whole.num_gaussians
        assert 20 <= len(part.points) <= 40
        assert len(part.uids) == len(part.colors) == len(part.relevance) == len(part.points)
        assert set(part.uids.tolist()) <= set(whole.uids.tolist())
        assert np.allclose(part.centroid, whole.centroid) and part.score == pytest.approx(whole.score)
        assert np.allclose(part.bbox_min, whole.bbox_min) and np.allclose(part.bbox_max, whole.bbox_max)
        extent = whole.bbox_max - whole.bbox_min  # spread over the object, not its first rows
        assert np.all(part.points.max(axis=0) - part.points.min(axis=0) >= 0.5 * extent)
    for text in ("red mug", "table"):  # goals are planned around every voxel, not the sample
        whole, tiny = runtime.query(text), runtime.query(text, max_points=2)
        assert whole.goal_pose is not None and tiny.goal_pose is not None and len(tiny.objects[0].points) <= 2
        assert np.allclose(tiny.goal_pose.position, whole.goal_pose.position), text
        assert np.allclose(tiny.goal_pose.orientation_xyzw, whole.goal_pose.orientation_xyzw), text
    assert runtime.query(label, max_points=-1).message.startswith("max_points")
    mask_full, _ = runtime.mask_in_last_view(full)
    mask_part, _ = runtime.mask_in_last_view(sampled)
    assert (mask_part & mask_full).sum() >= 0.5 * mask_full.sum()


def test_threshold_max_objects_and_odd_queries(runtime, synth_bag):
    label = load_ground_truth(synth_bag.ground_truth)[0]["label"]
    assert len(runtime.query(label, max_objects=1).objects) == 1
    strict = runtime.query(label, threshold=0.999999)
    assert not strict.objects and "nothing in the map matches" in strict.message
    for bad in ("", "   ", "x" * 500):
        assert not runtime.query(bad).objects
    assert "threshold" in runtime.query(label, threshold=1.5).message


def test_worker_thread_drops_when_busy_and_reset_empties_the_map(frames, tmp_path):
    rt = MappingRuntime(PipelineConfig(), "oracle", queue_size=1)
    rt.configure()
    rt.start()
    for frame in frames:  # faster than a keyframe takes: most wait, the oldest are dropped
        rt.submit(frame)
    deadline = time.time() + 60
    while rt.status.frames_used + rt.status.frames_dropped < len(frames) and time.time() < deadline:
        time.sleep(0.05)
    rt.stop()
    s = rt.status
    assert s.frames_dropped > 0 and s.frames_used + s.frames_dropped == len(frames) and s.gaussians > 0
    saved = s.gaussians
    rt.save(tmp_path)
    rt.reset()
    assert rt.status.gaussians == 0 and rt.query("table").message == "the map is empty"
    # a restarted node continues on the saved map
    again = MappingRuntime(PipelineConfig(), "oracle")
    assert again.configure(tmp_path).startswith(f"loaded {saved} Gaussians")
    wrong = MappingRuntime(PipelineConfig(), "none")
    with pytest.raises(Exception, match="semantics"):
        wrong.configure(tmp_path)


def test_background_refinement_commits_rounds_and_yields_to_frames(frames):
    config = PipelineConfig()
    config.refine.round_iterations = 2
    rt = MappingRuntime(config, "oracle", queue_size=4)
    rt.configure()
    for frame in frames[:6]:
        rt.submit(frame)
    rt.process_pending()
    gmap = rt.mapper.store
    revision, before = gmap.revision, rt.query("table")
    stats = rt.refine_round(2)
    assert stats.iterations == 2 and stats.committed and gmap.revision > revision
    assert rt.status.refine_rounds == 1 and rt.status.refine_iterations == 2
    after = rt.query("table")
    assert after.objects and np.linalg.norm(after.objects[0].centroid - before.objects[0].centroid) < 0.05
    rt.submit(frames[6])  # a waiting frame ends a round before its first iteration
    revision = gmap.revision
    assert rt.refine_round(2).iterations == 0 and gmap.revision == revision
    assert rt.process_pending() == 1


def test_a_restarted_node_continues_with_the_saved_semantic_decoder(frames, tmp_path):
    config = PipelineConfig()
    config.refine.semantic_dim, config.refine.scale = 4, 0.25
    rt = MappingRuntime(config, "oracle", queue_size=4)
    rt.configure()
    for frame in frames[:3]:
        rt.submit(frame)
    rt.process_pending()
    assert rt.refine_round(1).iterations == 1
    rt.save(tmp_path)
    again = MappingRuntime(config, "oracle")
    assert again.configure(tmp_path).endswith("semantic decoder restored")
    saved = rt.refiner.decoder_state()
    assert saved and all(np.array_equal(v, again.refiner.decoder_state()[k]) for k, v in saved.items())
    config.refine.semantic_dim = 8
    assert MappingRuntime(config, "oracle").configure(tmp_path).endswith("retrained (saved with other refine settings)")


def test_worker_refines_within_its_budget_when_idle(frames):
    config = PipelineConfig()
    config.refine.background_iterations_per_second = 4.0
    config.refine.round_iterations = 2
    rt = MappingRuntime(config, "oracle", queue_size=8)
    rt.configure()
    for frame in frames[:4]:
        rt.submit(frame)
    rt.process_pending()
    start = time.monotonic()
    rt.start()
    while rt.status.refine_rounds < 2 and time.monotonic() - start < 60:
        time.sleep(0.05)
    rt.stop()
    elapsed = time.monotonic() - start
    assert rt.status.refine_rounds >= 2
    assert rt.status.refine_iterations <= 4.0 * elapsed + 2  # the token bucket holds at most one round
    off = PipelineConfig()
    off.refine.background_iterations_per_second = 0.0
    idle = MappingRuntime(off, "oracle")
    idle.configure()
    idle.submit(frames[0])
    idle.process_pending()
    assert not idle._refine_due()  # noqa: SLF001


def test_the_worker_survives_any_exception_of_one_frame(frames, caplog):
    """Malformed frames are rejected with a reason; an unexpected exception is counted, reported
    and logged once, and the worker thread goes on with later frames (issue 14, item 6)."""
    import dataclasses

    from langgs_ros.types import CameraIntrinsics

    rt = MappingRuntime(PipelineConfig(), "oracle", queue_size=16)
    rt.configure()
    good = frames[0]
    malformed = [
        dataclasses.replace(good, T_world_cam=np.eye(3)),  # 3x3 pose
        dataclasses.replace(good, rgb=good.rgb[..., 0]),  # 2-D colour
        dataclasses.replace(good, intrinsics=CameraIntrinsics(64, 48, 50.0, 50.0, 31.5, 23.5)),  # other size
    ]
    rt.start()
    try:
        for frame in malformed:
            rt.submit(frame)
        deadline = time.monotonic() + 30
        while rt.status.frames_rejected < 3 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert rt.status.frames_rejected == 3, rt.status
        mapper = rt.mapper
        real = mapper.integrate_geometry
        calls = {"n": 0}

        def flaky(frame):
            calls["n"] += 1
            if calls["n"] <= 2:
                raise IndexError("index 999 is out of bounds")
            return real(frame)

        mapper.integrate_geometry = flaky
        for frame in frames[:4]:
            rt.submit(frame)
            time.sleep(0.3)
        deadline = time.monotonic() + 60
        while rt.status.frames_used < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert rt._thread is not None and rt._thread.is_alive()
        assert rt.status.errors == 2 and "IndexError" in rt.status.last_error
        assert rt.status.frames_used >= 2 and rt.status.keyframes >= 1
        assert rt.status.level() == 1 and "internal errors" in rt.status.summary()
        assert sum("IndexError" in r.getMessage() for r in caplog.records) == 1  # traceback logged once
    finally:
        rt.stop()


def test_queries_that_cannot_be_answered_say_so():
    """Query.srv's success is false for an empty map and bad requests (issue 15); a query that was
    answered and matched nothing is answered."""
    rt = MappingRuntime(PipelineConfig(), "oracle", queue_size=2)
    assert not rt.query("mug").answered  # not configured yet
    rt.configure()
    for text, threshold, objects, words in [("red mug", 0.0, 0, "empty"), ("", 0.0, 0, "empty query"),
                                            ("x" * 10000, 0.0, 0, "longer than"), ("mug", 1.5, 0, "threshold"),
                                            ("mug", float("nan"), 0, "threshold"), ("mug", 0.0, -1, "max_objects")]:
        result = rt.query(text, threshold, objects)
        assert not result.answered and words in result.message, (text, result.message)


def test_an_answered_query_that_matches_nothing_is_still_answered(runtime):
    result = runtime.query("zebra")
    assert result.answered and not result.objects

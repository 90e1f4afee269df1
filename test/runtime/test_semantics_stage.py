"""Semantics behind geometry: a late result lands where its view saw, pruned Gaussians are
skipped, the backlog keeps its bound by dropping the keyframe the map labels most, and the lag is
reported in status and answers."""

from __future__ import annotations

import itertools
import threading

import numpy as np
import pytest

from langgs_ros.config import PipelineConfig
from langgs_ros.evaluation import load_ground_truth
from langgs_ros.io.bag_reader import BagFrameReader
from langgs_ros.mapping.mapper import Mapper
from langgs_ros.runtime.mapping_runtime import MappingRuntime
from langgs_ros.runtime.semantics_stage import SemanticsStage
from langgs_ros.runtime.worker import QueueWorker
from langgs_ros.semantics.backend import create_backend


@pytest.fixture(scope="module")
def frames(synth_bag):
    with BagFrameReader(synth_bag.bag, PipelineConfig().input, with_instances=True) as source:
        return list(itertools.islice(source.frames(), 0, None, 3))


def _mapper() -> Mapper:
    config = PipelineConfig()
    return Mapper(config.mapping, create_backend("oracle"))


def test_a_late_result_lands_on_the_gaussians_its_view_saw(frames):
    m = _mapper()
    _, first = m.integrate_geometry(frames[0])
    seg = m.segment(first)
    _, second = m.integrate_geometry(frames[1])  # the map grows before the first view's semantics arrive
    created_later = m.store.snapshot().rows_of(second.uids[second.is_new])
    assert created_later.size and (created_later >= 0).all()
    fused = m.fuse_semantics(first, seg)
    snapshot = m.store.snapshot()
    labelled = snapshot["labelled_views"]
    seen = snapshot.rows_of(first.uids)
    assert fused == np.count_nonzero(seen >= 0) > 0
    assert (labelled[seen[seen >= 0]] == 1).all()
    assert not labelled[created_later].any()  # Gaussians of the newer view got nothing from the old one
    assert (snapshot["tracks"][created_later] == -1).all()


def test_gaussians_pruned_meanwhile_are_skipped(frames):
    m = _mapper()
    _, pending = m.integrate_geometry(frames[0])
    seg = m.segment(pending)
    # half of them go (as pruning would) before the semantics arrive
    removed = m.store.remove_uids(m.store.locate(pending.uids[::2], pending.keys[::2]))
    rows = m.store.snapshot().rows_of(pending.uids)
    assert np.count_nonzero(rows < 0) == removed > 0
    assert m.fuse_semantics(pending, seg) == len(m.store)
    assert (m.store["labelled_views"] == 1).all()


def test_a_full_backlog_drops_the_keyframe_the_map_labels_most(frames):
    m = _mapper()
    stage = SemanticsStage(threading.Lock(), max_pending=2)
    stage.attach(m)
    a = m.integrate_geometry(frames[0])[1]
    b = m.integrate_geometry(frames[3])[1]
    c = m.integrate_geometry(frames[6])[1]
    stage.submit(a)
    handles = m.store.locate(b.uids, b.keys)  # b's view is labelled already
    m.store.scatter(handles, {"labelled_views": np.ones(int(handles.found.sum()), np.uint8)})
    stage.submit(b)
    stage.submit(c)
    assert len(stage.pending()) == 2 and stage.status.semantics_dropped == 1
    assert [p.keyframe for p in stage.pending()] == [a.keyframe, c.keyframe]
    stage.process_pending()
    assert stage.status.keyframes_segmented == 2 and stage.settled()
    assert stage.status.newest_segmented_ns == c.frame.stamp_ns


def test_lag_is_reported_in_status_and_answers(frames, synth_bag):
    config = PipelineConfig()
    config.semantics.lag_warn_s = 0.5
    config.semantics.max_pending = 4  # fewer than the keyframes: the backlog is full
    rt = MappingRuntime(config, "oracle", queue_size=len(frames))
    rt.configure()
    for frame in frames:
        rt.submit(frame)
    QueueWorker.process_pending(rt)  # geometry only: the semantics stage has not run yet
    status = rt.refresh_status()
    span = (rt.mapper.keyframes.stamps_ns[-1] - rt.mapper.keyframes.stamps_ns[0]) / 1e9
    assert status.keyframes > 2 and status.semantics_pending == config.semantics.max_pending
    assert status.semantic_lag_s == pytest.approx(span)
    assert status.level() == 1 and "semantics lag geometry" in status.summary()
    label = load_ground_truth(synth_bag.ground_truth)[0]["label"]
    before = rt.query(label)
    assert not before.objects and before.semantics_pending == status.semantics_pending
    assert "not yet labelled" in before.message
    assert before.to_json()["semantics"]["pending_keyframes"] == status.semantics_pending
    rt.stage.process_pending()
    status = rt.refresh_status()
    assert status.semantics_pending == 0 and status.semantic_lag_s == 0 and status.level() == 0
    after = rt.query(label)
    assert after.objects and "not yet labelled" not in after.message

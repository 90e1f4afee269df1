"""Split mode without rclpy: the semantics runtime segments keyframes, SemanticFrame carries them
(through CDR), and the mapping runtime builds the same map as when it segments in-process."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from langgs_ros.config import PipelineConfig
from langgs_ros.evaluation import load_ground_truth
from langgs_ros.io.bag_reader import BagFrameReader
from langgs_ros.ros import conversions as cv
from langgs_ros.ros.interfaces import typestore_with_interfaces
from langgs_ros.runtime.mapping_runtime import MappingRuntime
from langgs_ros.ros.messages import RosbagsMessages
from langgs_ros.runtime.semantics_runtime import SemanticsRuntime


@pytest.fixture(scope="module")
def frames(synth_bag):
    with BagFrameReader(synth_bag.bag, PipelineConfig().input, with_instances=True) as source:
        return list(itertools.islice(source.frames(), 0, 30))


def _semantic_frames(config: PipelineConfig, frames: list) -> tuple[list, SemanticsRuntime]:
    """The SemanticFrame messages (through CDR) the semantics runtime publishes for ``frames``."""
    store = typestore_with_interfaces()
    factory = RosbagsMessages(store)
    messages = []

    def publish(frame, seg):
        msg = cv.semantic_frame(factory, frame, seg, config.input.fixed_frame)
        messages.append(store.deserialize_cdr(store.serialize_cdr(msg, msg.__msgtype__), msg.__msgtype__))

    semantics = SemanticsRuntime(config, "oracle", publish, queue_size=len(frames))
    assert "oracle" in semantics.configure()
    for frame in frames:
        semantics.submit(frame)
    assert semantics.process_pending() == len(frames)
    return messages, semantics


def test_split_mapping_matches_in_process_mapping(frames, synth_bag):
    config = PipelineConfig()
    messages, semantics = _semantic_frames(config, frames)
    assert 0 < len(messages) == semantics.status.keyframes < len(frames)  # keyframes only

    split = MappingRuntime(config, "oracle", queue_size=len(messages), split=True)
    split.configure()
    for msg in messages:
        split.submit(*cv.semantic_frame_to_core(msg, config.input.fixed_frame, config.input))
    split.process_pending()
    local = MappingRuntime(config, "oracle", queue_size=len(frames))
    local.configure()
    for frame in frames:
        local.submit(frame)
    local.process_pending()
    assert split.status.keyframes == local.status.keyframes == len(messages)
    assert split.status.gaussians == local.status.gaussians
    for obj in load_ground_truth(synth_bag.ground_truth)[:4]:
        a, b = split.query(obj["label"]), local.query(obj["label"])
        assert [len(o.points) for o in a.objects] == [len(o.points) for o in b.objects], obj["label"]
        if a.objects:
            assert np.allclose(a.objects[0].centroid, b.objects[0].centroid, atol=1e-4)


def test_split_mapping_rejects_frames_without_segments(frames):
    rt = MappingRuntime(PipelineConfig(), "oracle", split=True)
    rt.configure()
    rt.submit(frames[0])
    rt.process_pending()
    assert rt.status.frames_rejected == 1 and "semantics node" in rt.status.last_error
    with pytest.raises(Exception, match="not 'none'"):
        MappingRuntime(PipelineConfig(), "none", split=True).configure()


def test_split_mapping_re_anchors_and_keeps_camera_mounts(tmp_path):
    """SemanticFrame carries map -> odom and the base pose: split mode re-anchors on a map -> odom jump
    and keeps each keyframe's camera mount (pose graphs), as in-process mapping does."""
    from langgs_ros.synth.make_bag import SynthSpec, make_synthetic_bag

    out = make_synthetic_bag(tmp_path, SynthSpec(width=160, height=120, frames=48, relocalize=True))
    config = PipelineConfig()
    config.input.reanchor_on_map_odom_jump_m = 0.05
    with BagFrameReader(out.bag, config.input, with_instances=True) as source:
        frames = list(source.frames())
    messages, _ = _semantic_frames(config, frames)
    runtimes = {}
    for split in (True, False):
        rt = MappingRuntime(config, "oracle", queue_size=len(frames), split=split)
        rt.configure()
        if split:
            for msg in messages:
                rt.submit(*cv.semantic_frame_to_core(msg, config.input.fixed_frame, config.input))
        else:
            for frame in frames:
                rt.submit(frame)
        rt.process_pending()
        runtimes[split] = rt
    split, local = runtimes[True], runtimes[False]
    assert split.status.keyframes == local.status.keyframes == len(messages)
    assert local.status.pose_corrections > 0, "the relocalized bag must make the in-process runtime re-anchor"
    assert split.status.pose_corrections == local.status.pose_corrections, split.status.last_correction
    assert split.status.gaussians == local.status.gaussians
    assert all(m is not None for m in split.mapper.keyframes.mounts)

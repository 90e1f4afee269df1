"""Frames from bags: both storage formats, pairing, pose sources, skips with reasons."""

from __future__ import annotations

import numpy as np
import pytest

from langgs_ros.config import InputConfig
from langgs_ros.errors import InputError
from langgs_ros.io.bag_reader import BagFrameReader


@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
def test_both_storage_formats_give_posed_frames(small_bag, storage):
    with BagFrameReader(small_bag(storage=storage), InputConfig()) as reader:
        frames = list(reader.frames())
    assert len(frames) == 4 and reader.stats.frames_used == 4
    f = frames[2]
    assert f.rgb.shape == (48, 64, 3) and f.depth is not None and np.nanmean(f.depth) == pytest.approx(2.0)
    assert np.allclose(f.T_world_cam[:3, 3], [0.4, 0, 0])  # interpolated between TF samples
    assert f.frame_id == "cam_optical" and f.intrinsics.fx == 50


def test_the_robot_base_pose_comes_from_tf_where_the_tree_has_it(small_bag):
    bag = small_bag()
    with BagFrameReader(bag, InputConfig(base_frame="base")) as reader:
        frames = list(reader.frames())
    # the small bag mounts its camera at the base frame's origin
    assert np.allclose(frames[2].T_world_base, frames[2].T_world_cam)
    with BagFrameReader(bag, InputConfig()) as reader:  # no base_link in this tree: no floor from TF
        assert all(f.T_world_base is None for f in reader.frames()) and reader.stats.frames_used == 4


def test_pose_from_pose_stamped_topic(small_bag):
    cfg = InputConfig(pose_topic="/robot/pose")
    with BagFrameReader(small_bag(tf=False, pose_topic="/robot/pose", frames=5), cfg) as reader:
        frames = list(reader.frames())
    assert len(frames) == 5 and np.allclose(frames[3].T_world_cam[:3, 3], [0.6, 0, 0])


def test_compressed_color_is_found_and_decoded(small_bag):
    with BagFrameReader(small_bag(compressed=True), InputConfig()) as reader:
        frames = list(reader.frames())
        assert reader.color_topic.endswith("/compressed")
    assert len(frames) == 4 and frames[0].rgb[0, 10, 0] == 40


def test_frames_outside_tf_are_skipped_with_a_reason(small_bag):
    cfg = InputConfig(fixed_frame="map", tf_tolerance_s=0.001)
    bag = small_bag(frames=3)
    with BagFrameReader(bag, InputConfig(fixed_frame="elsewhere")) as reader:
        assert list(reader.frames()) == []
        assert reader.stats.frames_seen == 3
        assert any("elsewhere" in reason for reason in reader.stats.skipped)
    with BagFrameReader(bag, cfg) as reader:
        assert len(list(reader.frames())) == 3


def test_missing_topics_are_named(small_bag):
    with pytest.raises(InputError, match="image topics"):
        BagFrameReader(small_bag("a"), InputConfig(color_topic="/nope"))
    with pytest.raises(InputError, match="/camera/instances"):
        BagFrameReader(small_bag("b"), InputConfig(), with_instances=True)

"""Mapper: pixel-aligned Gaussians, no duplicated surface, free-space pruning, nothing lost to size."""

from __future__ import annotations

import numpy as np

from langgs_ros.config import MappingConfig
from langgs_ros.geometry import make_transform, normals_from_quat_wxyz
from langgs_ros.mapping.mapper import Mapper
from langgs_ros.semantics.backend import Segmentation, SemanticBackend
from langgs_ros.semantics.oracle import TokenTextEncoder
from langgs_ros.types import CameraIntrinsics, Frame

K = CameraIntrinsics(80, 60, 60.0, 60.0, 39.5, 29.5)


def wall_frame(depth_m: float, x: float = 0.0, stamp: int = 0) -> Frame:
    depth = np.full((60, 80), depth_m, np.float32)
    depth[:5] = np.nan  # a hole
    return Frame(stamp_ns=stamp, frame_id="cam", rgb=np.full((60, 80, 3), 90, np.uint8), intrinsics=K,
                 T_world_cam=make_transform(np.eye(3), [x, 0, 0]), depth=depth)


def test_gaussians_lie_on_the_surface_with_normals_and_footprint_scales():
    mapper = Mapper(MappingConfig(pixel_stride=2), backend=None)
    stats = mapper.integrate(wall_frame(2.0))
    gm = mapper.store
    assert stats.keyframe and stats.added == len(gm) == 40 * 30 - 40 * 2  # minus the hole rows
    assert np.allclose(gm["means"][:, 2], 2.0, atol=1e-5)
    assert np.allclose(np.abs(normals_from_quat_wxyz(gm["quats"].astype(np.float32))[:, 2]), 1, atol=1e-2)
    assert np.allclose(gm["scales"][:, 0].astype(float), 0.5 * 2.0 * 2 / 60.0, rtol=1e-2)


def test_surface_already_explained_is_not_duplicated():
    mapper = Mapper(MappingConfig(keyframe_translation_m=0.01), backend=None)
    mapper.integrate(wall_frame(2.0))
    n = len(mapper.store)
    stats = mapper.integrate(wall_frame(2.0, x=0.05))
    assert stats.keyframe and stats.visible > 0.8 * n
    assert stats.added < 0.1 * n  # only the strip the camera newly sees
    assert not mapper.integrate(wall_frame(2.0, x=0.055)).keyframe  # too little motion


def test_gaussians_in_observed_free_space_are_removed():
    mapper = Mapper(MappingConfig(keyframe_translation_m=0.01), backend=None)
    mapper.integrate(wall_frame(1.0))  # a surface that has gone
    stats = mapper.integrate(wall_frame(3.0, x=0.02))  # the camera now sees through it
    assert stats.removed > 0.8 * 1120
    # survivors had no free-space evidence: outside the new view or behind its depth hole (rows < 5)
    old = mapper.store["means"][mapper.store["means"][:, 2] < 2.0]
    u = (old[:, 0] - 0.02) / old[:, 2] * K.fx + K.cx
    v = old[:, 1] / old[:, 2] * K.fy + K.cy
    assert np.all((u < 2) | (u > K.width - 2) | (v < 6))


def test_observed_surface_is_never_pruned_for_size_only_paged_out():
    """A budget far below the map's size: blocks go to disk, none is lost, and a view of them again
    brings them back and confirms them instead of adding a second layer."""
    mapper = Mapper(MappingConfig(keyframe_translation_m=0.01, block_size_m=0.5, ram_budget_mb=0.05), backend=None,
                    max_speed_mps=0)  # the test's frames jump from place to place at one stamp
    mapper.integrate(wall_frame(2.0))
    first = len(mapper.store)
    for k in range(1, 6):  # the camera slides 2.5 m along the wall: new blocks, the first ones go to disk
        mapper.integrate(wall_frame(2.0, x=0.5 * k))
    resident = [b for b in mapper.store.blocks if b.resident]
    assert mapper.store.paged_out > 0 and len(resident) < len(mapper.store.blocks)
    grown = len(mapper.store)
    assert grown > 1.8 * first
    stats = mapper.integrate(wall_frame(2.0, x=0.01))  # back to the start
    assert mapper.store.paged_in > 0
    assert stats.visible > 0.8 * first and stats.added < 0.1 * first
    assert len(mapper.store) == grown + stats.added


class _Labels(SemanticBackend):
    """Segments given by the test (``Mapper.fuse_semantics``): one segment over the whole image."""

    name = "test"

    def __init__(self) -> None:
        self.text_encoder = TokenTextEncoder()
        self.emb = self.text_encoder.encode(["red mug", "book"])

    def whole(self, label: int) -> Segmentation:
        return Segmentation([np.zeros((60, 80), np.int32)] * 3, [self.emb[label : label + 1]] * 3)

    def segment(self, frame: Frame, guidance: object = None) -> Segmentation:
        return self.whole(0)


def test_a_view_that_disagrees_with_the_map_relabels_only_gaussians_of_nearby_keyframes():
    config = MappingConfig(keyframe_translation_m=0.01, relabel_window=2, boundary_abstain_frac=0.0,
                           occlusion_abstain_frac=0.0, relabel_max_disagreement=0.01)
    votes_after = {}
    for disagreement in (0.0, 0.5):  # the view agrees with the map; it sees through half (drift)
        backend = _Labels()
        mapper = Mapper(config, backend)
        for k in range(4):  # keyframes 0-3 label the wall "red mug"
            mapper.integrate(wall_frame(2.0, x=0.02 * k))
        _, pending = mapper.integrate_geometry(wall_frame(2.0, x=0.08))
        assert pending is not None and pending.keyframe == 4
        pending.disagreement = disagreement  # as measured at integration time
        anchor = mapper.keyframes.anchors(mapper.store["uid"])
        before = mapper.store["track_votes"][:, 2].copy()
        mapper.fuse_semantics(pending, backend.whole(1))  # "book"
        seen = mapper.store.snapshot().rows_of(pending.uids)
        changed = np.zeros(len(mapper.store), bool)
        changed[seen] = mapper.store["track_votes"][seen, 2] != before[seen]
        votes_after[disagreement] = (changed, anchor, seen)
    changed, anchor, seen = votes_after[0.0]
    old = seen[anchor[seen] < 2]
    assert old.size > 100 and changed[old].all()  # an agreeing view votes on every Gaussian it sees
    changed, anchor, seen = votes_after[0.5]
    assert not changed[seen[anchor[seen] < 2]].any()  # keyframes 0 and 1 are more than 2 before 4
    near = seen[anchor[seen] >= 2]
    assert near.size and changed[near].all()

"""Refinement by differentiable rendering: photometric + depth losses improve a perturbed map; the
semantic losses restore corrupted codes; rounds on a changed map are not written back; rounds
and whole runs that make held-out views worse are undone."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from langgs_ros.config import MappingConfig, RefineConfig
from langgs_ros.mapping.block_store import block_keys
from langgs_ros.mapping.map_io import MapData, load_map, save_map
from langgs_ros.mapping.mapper import Mapper
from langgs_ros.mapping.refine import Refiner, psnr, refine_map, render_view, training_view
from langgs_ros.mapping.refine_rounds import refine_in_rounds
from langgs_ros.semantics.backend import Segmentation, SemanticBackend
from langgs_ros.semantics.oracle import TokenTextEncoder
from langgs_ros.types import CameraIntrinsics, Frame


def wall_frames(n: int = 3) -> list[Frame]:
    """RGB-D views of a colour-striped wall 1.5 m ahead, cameras moving along x (80 x 60)."""
    h, w = 60, 80
    K = CameraIntrinsics(w, h, 60.0, 60.0, (w - 1) / 2, (h - 1) / 2)
    frames = []
    for i in range(n):
        tx = 0.05 * i
        u = np.arange(w)
        x_wall = (u - K.cx) / K.fx * 1.5 + tx  # wall coordinate seen by each column
        stripes = (np.floor(x_wall / 0.1) % 3).astype(int)
        palette = np.array([[220, 40, 40], [40, 200, 60], [50, 60, 230]], np.uint8)
        rgb = np.repeat(palette[stripes][None], h, axis=0)
        T = np.eye(4)
        T[0, 3] = tx
        frames.append(Frame(i, "cam", np.ascontiguousarray(rgb), K, T, depth=np.full((h, w), 1.5, np.float32)))
    return frames


def test_refinement_recovers_perturbed_colours():
    frames = wall_frames()
    mapper = Mapper(MappingConfig(pixel_stride=2, keyframe_translation_m=0.01), None)
    for f in frames:
        mapper.integrate(f)
    store = mapper.store
    gm, region = store.extract([b.key for b in store.blocks])  # refinement works on a copy of the blocks
    rng = np.random.default_rng(0)
    gm["colors"][:] = rng.integers(0, 256, gm["colors"].shape, dtype=np.uint8)
    before = psnr(render_view(gm, frames[1], 1.0)[0], frames[1].rgb / 255)
    revision = store.revision
    config = RefineConfig(iterations=60, scale=1.0, lr_colors=0.05)
    stats = refine_map(gm, frames, config)
    after = psnr(render_view(gm, frames[1], 1.0)[0], frames[1].rgb / 255)
    assert stats.iterations == 60 and stats.last_loss < 0.5 * stats.first_loss
    assert after > before + 5.0, (before, after)
    assert store.merge(region, gm, Refiner(config).written_fields)  # ...and puts it back
    assert store.revision > revision  # query caches see the change
    uid = store["uid"].astype(np.int64)  # densified children get ids of their own, still increasing
    assert stats.densified > 0 and np.all(np.diff(uid) > 0) and len(store) == len(gm)
    merged = store.snapshot()
    assert psnr(render_view(merged, frames[1], 1.0)[0], frames[1].rgb / 255) == pytest.approx(after, abs=0.05)
    depth = render_view(merged, frames[1], 1.0)[1]
    assert abs(np.median(depth[depth > 0]) - 1.5) < 0.02  # geometry stays on the wall


def test_time_budget_stops_refinement():
    frames = wall_frames(2)
    mapper = Mapper(MappingConfig(pixel_stride=2, keyframe_translation_m=0.01), None)
    for f in frames:
        mapper.integrate(f)
    stats = refine_map(mapper.store.snapshot(), frames, RefineConfig(iterations=10_000, time_budget_s=0.0))
    assert stats.iterations == 0


class TwoHalves(SemanticBackend):
    """Segments fixed on the wall: x < 0.05 m is 'red mug', the rest 'book' (every level)."""

    name = "test"

    def __init__(self) -> None:
        self.text_encoder = TokenTextEncoder()
        self._emb = self.text_encoder.encode(["red mug", "book"])

    def segment(self, frame: Frame, guidance: object = None) -> Segmentation:
        h, w = frame.rgb.shape[:2]
        x_wall = (np.arange(w) - frame.intrinsics.cx) / frame.intrinsics.fx * 1.5 + frame.T_world_cam[0, 3]
        ids = np.repeat((x_wall >= 0.05).astype(np.int32)[None], h, axis=0)
        return Segmentation([ids] * 3, [self._emb] * 3)


def test_semantic_refinement_restores_corrupted_codes_and_keeps_the_map_consistent(tmp_path):
    config = MappingConfig(pixel_stride=2, keyframe_translation_m=0.01)
    refine = RefineConfig(window=8, scale=1.0, semantic_dim=8, lr_semantic=0.05, densify_max_fraction=0.0)
    mapper = Mapper(config, TwoHalves(), refine=refine)
    for f in wall_frames():
        mapper.integrate(f)
    gm, field = mapper.store.snapshot(), mapper.field  # one GaussianMap: the refiner's unit of work
    truth = field.resolved_codes(gm).copy()
    assert len(mapper.views) == 3 and mapper.views[0].tracks.shape == (3, 60, 80)
    assert len(np.unique(truth[:, 2])) == 2  # two codes on the wall
    rng = np.random.default_rng(0)
    corrupt = rng.random(len(gm)) < 0.1
    a, b = np.unique(truth[:, 2])
    # corrupted Gaussians leave their tracks and carry the other code
    gm["codes"][corrupt] = np.where(truth[corrupt] == a, b, a)
    gm["tracks"][corrupt] = -1
    gm["track_votes"][corrupt] = 0
    gm.revision += 1
    assert (field.resolved_codes(gm)[corrupt] != truth[corrupt]).all()
    refiner = Refiner(refine, field)
    stats = refiner.refine(gm, list(mapper.views), 150)
    assert stats.committed and stats.iterations == 150 and stats.semantic_loss < 0.5
    restored = (field.resolved_codes(gm) == truth).all(axis=1)
    assert restored[corrupt].mean() > 0.9, restored[corrupt].mean()
    assert restored[~corrupt].mean() > 0.97
    assert "semantic_features" in gm and np.abs(gm["semantic_features"]).max() > 0

    # the decoder is saved with the map: a restarted refiner decodes the saved features as before
    save_map(tmp_path, MapData.of_gaussians(gm, field, semantics="test", decoder=refiner.decoder_state()))
    data = load_map(tmp_path)
    again = Refiner(refine, data.field, seed=1)
    features = torch.from_numpy(data.store["semantic_features"].astype(np.float32))
    with torch.no_grad():
        assert not torch.equal(again.decoder(features)[0], refiner.decoder(features)[0])
        assert again.load_decoder_state(data.decoder)
        assert torch.equal(again.decoder(features)[0], refiner.decoder(features)[0])
    other = RefineConfig(window=8, scale=1.0, semantic_dim=4)
    assert not Refiner(other, data.field).load_decoder_state(data.decoder)  # other shapes: retrained


def test_a_round_on_a_changed_map_is_not_written_back():
    frames = wall_frames(2)
    mapper = Mapper(MappingConfig(pixel_stride=2, keyframe_translation_m=0.01), None, refine=RefineConfig())
    for f in frames:
        mapper.integrate(f)
    refiner = Refiner(RefineConfig(), None)
    views = list(mapper.views)
    sub, region = mapper.store.extract(mapper.refine_keys(views))
    rnd = refiner.prepare(sub, views)
    refiner.optimise(rnd, 2)
    means, uids = mapper.store["means"].copy(), mapper.store["uid"].copy()
    keys = block_keys(means, mapper.store.block_size)
    mapper.store.remove_uids(mapper.store.locate(uids[1::2], keys[1::2]))  # the map changed meanwhile (pruning)
    assert refiner.commit(sub, rnd).committed  # the round's own copy takes it...
    assert not mapper.store.merge(region, sub, refiner.written_fields)  # ...the changed map does not
    assert np.array_equal(mapper.store["means"], means[::2])
    sub.keep(np.arange(len(sub)) % 2 == 0)  # a stale copy never replaces a newer map, whatever it holds
    assert not refiner.commit(sub, rnd).committed


def _tinted(frame: Frame, rgb: tuple[int, int, int]) -> Frame:
    """The same view with every pixel one colour (a view refinement should not follow)."""
    return Frame(frame.stamp_ns, frame.frame_id, np.full_like(frame.rgb, rgb), frame.intrinsics, frame.T_world_cam,
                 depth=frame.depth)


def test_a_round_that_makes_held_out_views_worse_is_rolled_back():
    frames = wall_frames(3)
    mapper = Mapper(MappingConfig(pixel_stride=2, keyframe_translation_m=0.01), None)
    for f in frames:
        mapper.integrate(f)
    config = RefineConfig(scale=1.0, lr_colors=0.05, crop_px=0)
    wrong = [training_view(_tinted(f, (255, 0, 255)), 1.0, i) for i, f in enumerate(frames)]  # magenta "photos"
    held_out = [training_view(frames[1], 1.0)]  # the real wall
    gm = mapper.store.snapshot()
    before = gm.to_arrays()
    stats = Refiner(config).refine(gm, wrong, 20, held_out=held_out)
    assert stats.iterations == 20 and stats.held_out_after > stats.held_out_before
    assert stats.rolled_back and not stats.committed
    assert all(np.array_equal(gm[k], v) for k, v in before.items())  # the map kept its state

    # the same round against the real views improves the held-out view and is written
    gm["colors"][:] = np.random.default_rng(0).integers(0, 256, gm["colors"].shape, dtype=np.uint8)
    right = [training_view(f, 1.0, i) for i, f in enumerate(frames)]
    stats = Refiner(config).refine(gm, right, 20, held_out=held_out)
    assert stats.committed and not stats.rolled_back and stats.held_out_after < stats.held_out_before


class _Unguarded(Refiner):
    """A refiner whose rounds are never rolled back (to exercise the final check alone)."""

    def commit(self, gmap, rnd):  # noqa: ANN001, ANN201
        rnd.stats.held_out_after = rnd.stats.held_out_before = float("nan")
        return super().commit(gmap, rnd)


def test_refinement_that_ends_worse_on_held_out_views_restores_the_map():
    frames = wall_frames(3)
    mapper = Mapper(MappingConfig(pixel_stride=2, keyframe_translation_m=0.01), None)
    for f in frames:
        mapper.integrate(f)
    config = RefineConfig(scale=1.0, lr_colors=0.05, crop_px=0)
    wrong = [training_view(_tinted(f, (255, 0, 255)), 1.0, i) for i, f in enumerate(frames)]
    held_out = [training_view(frames[1], 1.0)]
    gm = mapper.store.snapshot()
    before = gm.to_arrays()
    report = refine_in_rounds(gm, _Unguarded(config), wrong, held_out, 20, 10)
    assert report.rounds == 2 and report.rolled_back == 0
    assert report.after.psnr_db < report.before.psnr_db - 3  # what the refined map would have been
    assert not report.kept and "map restored" in report.line()
    assert all(np.array_equal(gm[k], v) for k, v in before.items())

    # with the real views it is kept, and the line says by how much it helped
    gm["colors"][:] = np.random.default_rng(0).integers(0, 256, gm["colors"].shape, dtype=np.uint8)
    right = [training_view(f, 1.0, i) for i, f in enumerate(frames)]
    lines = []
    report = refine_in_rounds(gm, Refiner(config), right, held_out, 20, 10,
                              progress=lambda p: lines.append(p.iterations))
    assert report.kept and report.after.psnr_db > report.before.psnr_db + 3 and lines == [10, 20]
    assert report.line().startswith(f"refine: held-out PSNR {report.before.psnr_db:.2f} -> {report.after.psnr_db:.2f} dB")


def test_the_mapper_holds_out_every_nth_non_keyframe():
    frames = wall_frames(1) * 9  # one keyframe, then 8 non-keyframes from the same place
    mapper = Mapper(MappingConfig(pixel_stride=2), None, refine=RefineConfig(holdout_every=3, holdout_views=2))
    for f in frames:
        mapper.integrate(f)
    assert mapper.n_keyframes == 1 and len(mapper.views) == 1
    assert len(mapper.held_out) == 2  # non-keyframes 0, 3, 6 held out; the newest 2 kept
    assert Mapper(MappingConfig(), None, refine=RefineConfig(holdout_every=0)).held_out.maxlen == 0

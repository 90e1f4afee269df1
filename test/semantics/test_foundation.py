"""The 'clip' backend end to end on tiny random-weight models: shapes, determinism, replay."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import yaml

from langgs_ros.cli import main
from langgs_ros.mapping.map_io import load_map
from langgs_ros.semantics.backend import SegmentationGuidance, create_backend
from langgs_ros.synth.make_bag import SynthSpec, make_synthetic_bag
from langgs_ros.types import CameraIntrinsics, Frame


def _frame(rgb: np.ndarray) -> Frame:
    h, w = rgb.shape[:2]
    return Frame(1, "cam", rgb, CameraIntrinsics(w, h, 100.0, 100.0, w / 2, h / 2), np.eye(4))


def test_sam_backend_segments_three_levels_deterministically(tiny_models, two_boxes):
    backend = create_backend("clip", models=tiny_models)
    assert backend.dim == 2 * 32 and backend.uses_depth_guidance  # region + context kinds
    seg = backend.segment(_frame(two_boxes))
    seg.validate(backend.dim)
    assert seg.tracks is None  # geometric association happens in the map
    assert all(ids.shape == (96, 128) for ids in seg.levels)
    assert sum(len(e) for e in seg.embeddings) > 0
    again = create_backend("clip", models=tiny_models).segment(_frame(two_boxes))
    for a, b in zip(seg.levels + seg.embeddings, again.levels + again.embeddings):
        np.testing.assert_array_equal(a, b)
    assert set(backend.stage_seconds) == {"masks", "embeddings"}


def test_depth_guidance_adds_prompts_where_the_view_is_far(tiny_models, two_boxes):
    backend = create_backend("clip", models=dataclasses.replace(tiny_models, points_per_side=4, prompt_patches=2))
    calls = []
    generate = backend.masks.generate
    backend.masks.generate = lambda rgb, points: calls.append(len(points)) or generate(rgb, points)
    backend.segment(_frame(two_boxes))
    backend.segment(_frame(two_boxes), SegmentationGuidance(depth_ratio=np.full((48, 64), 4.0, np.float32)))
    assert calls == [16, 64]


def test_labelled_surface_gets_fewer_prompts_and_its_uncovered_pixels_abstain(tiny_models, two_boxes):
    cfg = dataclasses.replace(tiny_models, points_per_side=8, prompt_patches=2, known_prompt_factor=0.25, known_views=3)
    backend = create_backend("clip", models=cfg)
    calls = []
    generate = backend.masks.generate
    backend.masks.generate = lambda rgb, points: calls.append(len(points)) or generate(rgb, points)
    views = np.zeros((48, 64), np.float32)
    views[:, :32] = 3  # the left half: labelled from 3 views; the right half: new surface
    views[0, 0] = np.nan  # no depth there: not counted
    seg = backend.segment(_frame(two_boxes), SegmentationGuidance(labelled_views=views))
    assert calls == [16 * 2 // 4 + 16 * 2]  # known patches: a quarter of their 16 prompts each
    assert seg.abstain is not None and seg.abstain.shape == (96, 128)
    covered = np.any([ids >= 0 for ids in seg.levels], axis=0)
    assert not seg.abstain[:, 64:].any()  # new surface always votes
    np.testing.assert_array_equal(seg.abstain[:, :64], ~covered[:, :64])
    views[:, :32] = 2  # one view short of known_views: the same density everywhere
    assert backend.segment(_frame(two_boxes), SegmentationGuidance(labelled_views=views)).abstain is None
    assert calls[-1] == 64 and backend.prompts == sum(calls)


def test_a_pixel_the_backend_abstains_on_leaves_the_gaussian_unvoted(synth_bag):
    from langgs_ros.config import InputConfig, MappingConfig
    from langgs_ros.io.bag_reader import BagFrameReader
    from langgs_ros.mapping.mapper import Mapper
    from langgs_ros.semantics.backend import Segmentation

    with BagFrameReader(synth_bag.bag, InputConfig(), with_instances=True) as source:
        frame = next(iter(source.frames()))
    oracle = create_backend("oracle")
    mapper = Mapper(MappingConfig(), oracle)
    _, pending = mapper.integrate_geometry(frame)
    seg = oracle.segment(frame)
    everywhere = np.ones(frame.rgb.shape[:2], bool)
    mapper.fuse_semantics(pending, Segmentation(seg.levels, seg.embeddings, seg.tracks, everywhere))
    assert (mapper.store["track_votes"] == 0).all() and (mapper.store["tracks"] == -1).all()  # no vote, no fill
    mapper.fuse_semantics(pending, seg)
    assert (mapper.store["tracks"] >= 0).any()


def test_sam2_backend_with_propagation_ids(tiny_models, two_boxes):
    config = dataclasses.replace(tiny_models, mask_model="sam2", association="sam2", feature_kinds="region")
    backend = create_backend("clip", models=config)
    assert backend.dim == 32
    for _ in range(2):
        seg = backend.segment(_frame(two_boxes))
        seg.validate(backend.dim)
        assert seg.tracks is not None and [len(t) for t in seg.tracks] == [len(e) for e in seg.embeddings]
    assert set(backend.stage_seconds) == {"masks", "embeddings", "association"}


@pytest.fixture(scope="module")
def small_bag(tmp_path_factory):
    return make_synthetic_bag(tmp_path_factory.mktemp("clip_synth"), SynthSpec(width=160, height=120, frames=16))


def test_replay_and_query_with_the_clip_backend(tiny_models, small_bag, tmp_path, capsys):
    config = tmp_path / "clip.yaml"
    config.write_text(yaml.safe_dump({"models": dataclasses.asdict(tiny_models), "mapping": {"pixel_stride": 2}}))
    maps = []
    for name in ("a", "b"):
        assert main(["replay", str(small_bag.bag), "--out", str(tmp_path / name), "--semantics", "clip",
                     "--config", str(config)]) == 0
        maps.append(load_map(tmp_path / name))
    err = capsys.readouterr().err
    assert "semantics per keyframe: masks" in err and "peak memory" in err
    a, b = maps
    assert a.semantics == "clip" and a.field is not None and a.field.dim == 64 and len(a.store) > 1000
    np.testing.assert_array_equal(a.store["codes"], b.store["codes"])  # same bag, same map
    assert main(["query", str(tmp_path / "a"), "mug", "--json"]) == 0
    answer = json.loads(capsys.readouterr().out)
    assert answer["query"] == "mug" and isinstance(answer["objects"], list) and answer["message"]

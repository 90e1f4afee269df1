"""QueryEngine: the level choice, mask and instance ranking on a hand-made codebook map."""

from __future__ import annotations

import numpy as np
import pytest

from langgs_ros.config import MappingConfig, QueryConfig
from langgs_ros.mapping.fusion import CodebookField, create_field
from langgs_ros.mapping.gaussians import GaussianMap
from langgs_ros.mapping.map_io import MapData
from langgs_ros.query.engine import QueryEngine
from langgs_ros.semantics.oracle import TokenTextEncoder


def _blob(centre, n, rng):
    return (np.asarray(centre) + rng.uniform(-0.04, 0.04, (n, 3))).astype(np.float32)


def test_instances_with_near_best_margins_rank_larger_first():
    encoder = TokenTextEncoder(64)
    config = QueryConfig()
    q = encoder.encode(["mug"])[0]
    negatives = encoder.encode(config.negatives)
    # a direction orthogonal to the query and the negatives: tilting q along it scales every margin
    basis = np.linalg.qr(np.vstack([q, negatives]).T)[0]
    r = np.random.default_rng(0).standard_normal(64)
    r -= basis @ (basis.T @ r)
    r /= np.linalg.norm(r)
    tilt = [0.0, 0.25, 0.75]  # margins ~ 1, 0.97, 0.8 of the best: within tolerance, within, beyond
    protos = np.stack([q + t * r for t in tilt]).astype(np.float32)
    protos /= np.linalg.norm(protos, axis=1, keepdims=True)
    field = CodebookField(64, MappingConfig())
    field.load_state({"codebook_prototypes": protos,
                      **{f"track_counts_{lv}": np.zeros((0, 256), np.int32) for lv in ("subpart", "part", "whole")}})
    gmap = GaussianMap()
    field.attach(gmap)
    rng = np.random.default_rng(1)
    sizes = [30, 300, 400]  # small & best, large & near-best, largest & clearly worse
    for code, (n, x) in enumerate(zip(sizes, [0.0, 1.0, 2.0])):
        idx = gmap.append(means=_blob([x, 0.0, 0.5], n, rng), quats=np.tile([1, 0, 0, 0], (n, 1)).astype(np.float16))
        gmap["codes"][idx] = code
    engine = QueryEngine(MapData.of_gaussians(gmap, field, semantics="oracle"), config, encoder)
    result = engine.query("mug")
    assert [len(o.points) for o in result.objects] == [300, 30, 400], result.message


def test_levels_that_answer_equally_well_vote_on_the_mask():
    encoder = TokenTextEncoder(64)
    config = QueryConfig()
    q = encoder.encode(["mug"])[0]
    field = CodebookField(64, MappingConfig())
    field.load_state({"codebook_prototypes": q[None].astype(np.float32),
                      **{f"track_counts_{lv}": np.zeros((0, 256), np.int32) for lv in ("subpart", "part", "whole")}})
    gmap = GaussianMap()
    field.attach(gmap)
    rng = np.random.default_rng(2)
    # the mug at every level; a neighbour merged into it at the whole level only; a part of it
    # missed at the whole level (subpart and part still see it)
    blobs = {"mug": ([0.0, 0.0, 0.5], [0, 1, 2], 200), "merged": ([1.0, 0.0, 0.5], [2], 150),
             "missed": ([2.0, 0.0, 0.5], [0, 1], 100)}
    for centre, levels, n in blobs.values():
        idx = gmap.append(means=_blob(centre, n, rng), quats=np.tile([1, 0, 0, 0], (n, 1)).astype(np.float16))
        for level in levels:
            gmap["codes"][idx, level] = 0
    engine = QueryEngine(MapData.of_gaussians(gmap, field, semantics="oracle"), config, encoder)
    result = engine.query("mug")
    assert result.level == "subpart+part+whole", result.message
    assert sorted(len(o.points) for o in result.objects) == [100, 200]
    engine.config = QueryConfig(level_margin_tolerance=0.0)  # exact ties still answer together
    assert sorted(len(o.points) for o in engine.query("mug").objects) == [100, 200]


def test_answers_keep_confirmed_gaussians_unless_the_object_was_seen_too_few_times():
    encoder = TokenTextEncoder(64)
    field = CodebookField(64, MappingConfig())
    field.load_state({"codebook_prototypes": encoder.encode(["mug"]).astype(np.float32),
                      **{f"track_counts_{lv}": np.zeros((0, 256), np.int32) for lv in ("subpart", "part", "whole")}})
    gmap = GaussianMap()
    field.attach(gmap)
    rng = np.random.default_rng(3)
    quats = np.tile([1, 0, 0, 0], (200, 1)).astype(np.float16)
    # a mug many keyframes confirmed, with 60 Gaussians around it that one view placed (stereo noise)
    core = gmap.append(means=_blob([0.0, 0.0, 0.5], 200, rng), quats=quats)
    stray = gmap.append(means=_blob([0.0, 0.0, 0.5], 60, rng) * [2, 2, 1], quats=quats[:60])
    gmap["confidence"][core], gmap["confidence"][stray] = 5, 1
    once = gmap.append(means=_blob([2.0, 0.0, 0.5], 100, rng), quats=quats[:100])  # seen by one keyframe only
    gmap["confidence"][once] = 1
    gmap["codes"][:] = 0
    engine = QueryEngine(MapData.of_gaussians(gmap, field, semantics="oracle"), QueryConfig(), encoder)
    by_size = sorted(engine.query("mug").objects, key=lambda o: o.uids.size)
    # without ids of its own, the map's Gaussians are numbered in order
    assert [set(o.uids.tolist()) for o in by_size] == [set(once.tolist()), set(core.tolist())]
    engine.config = QueryConfig(min_confirmations=1)
    assert sorted(o.uids.size for o in engine.query("mug").objects) == [100, 260]


@pytest.mark.parametrize("mode", ["codebook", "average"])
def test_answers_summarise_every_gaussian_and_read_only_the_points_they_return(mode):
    """Per-cell sums (the codebook's cached cells, the average field's per-query cells) give the
    box, centroid, score and size of all of an instance's Gaussians; ``max_points`` samples them."""
    encoder = TokenTextEncoder(64)
    emb = encoder.encode(["mug", "book"])
    field = create_field(mode, 64, MappingConfig())
    if mode == "codebook":
        counts = {f"track_counts_{lv}": np.zeros((0, 256), np.int32) for lv in ("subpart", "part", "whole")}
        field.load_state({"codebook_prototypes": emb.astype(np.float32), **counts})
    gmap = GaussianMap()
    field.attach(gmap)
    rng = np.random.default_rng(4)
    blobs = [([0.0, 0.0, 0.5], 300, 0), ([3.0, 0.0, 0.5], 120, 0), ([1.5, 0.0, 0.5], 200, 1)]  # two mugs, a book
    for centre, n, label in blobs:
        idx = gmap.append(means=(np.asarray(centre) + rng.uniform(-0.15, 0.15, (n, 3))).astype(np.float32),
                          quats=np.tile([1, 0, 0, 0], (n, 1)).astype(np.float16))
        gmap["confidence"][idx] = 5
        if mode == "codebook":
            gmap["codes"][idx] = label
        else:
            gmap["features"][idx] = emb[label]
            gmap["weights"][idx] = 1
    gmap["confidence"][:10] = 1  # ten of the large mug's Gaussians seen by one keyframe: left out
    engine = QueryEngine(MapData.of_gaussians(gmap, field, semantics="oracle"), QueryConfig(), encoder)
    full = engine.query("mug")
    assert [o.num_gaussians for o in full.objects] == [290, 120], full.message
    for obj in full.objects:
        assert len(obj.points) == len(obj.uids) == len(obj.relevance) == obj.num_gaussians
        assert np.allclose(obj.centroid, obj.points.mean(axis=0), atol=1e-5)
        assert np.array_equal(obj.bbox_min, obj.points.min(axis=0))
        assert np.array_equal(obj.bbox_max, obj.points.max(axis=0))
        assert obj.score == pytest.approx(float(obj.relevance.mean()), rel=1e-5)
    assert not set(full.objects[0].uids.tolist()) & set(range(10))
    sampled = engine.query("mug", max_points=25)
    for whole, part in zip(full.objects, sampled.objects):
        assert part.num_gaussians == whole.num_gaussians and 13 <= len(part.points) <= 25
        assert set(part.uids.tolist()) <= set(whole.uids.tolist())
        assert np.allclose(part.centroid, whole.centroid) and part.score == pytest.approx(whole.score)
        assert np.array_equal(part.bbox_min, whole.bbox_min) and np.array_equal(part.bbox_max, whole.bbox_max)

"""CCL-LGS contrastive codebook: matching, pull and push losses."""

from __future__ import annotations

import numpy as np
import torch

from langgs_ros.mapping.codebook import ContrastiveCodebook


def unit(v):
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


def test_spawning_and_assignment():
    rng = np.random.default_rng(0)
    a, b = unit(rng.standard_normal((2, 64))).astype(np.float32)
    cb = ContrastiveCodebook(64, capacity=8, spawn_cos=0.75)
    assert list(cb.assign(np.stack([a, b, a]))) == [0, 1, 0] and cb.size == 2


def test_training_pulls_prototypes_to_their_features_and_apart_across_labels():
    rng = np.random.default_rng(1)
    centres = unit(rng.standard_normal((3, 64)))
    feats = unit(np.repeat(centres, 30, axis=0) + 0.4 * rng.standard_normal((90, 64)) / 8).astype(np.float32)
    labels = np.repeat(np.arange(3), 30)
    cb = ContrastiveCodebook(64, capacity=16, spawn_cos=0.9, lr=0.02)
    cb.assign(feats)
    cb.remember(feats, labels)
    before = float(cb.loss(torch.from_numpy(feats), torch.from_numpy(labels)).detach())
    cb.train(100, batch=90)
    after = float(cb.loss(torch.from_numpy(feats), torch.from_numpy(labels)).detach())
    assert after < 0.5 * before
    protos = cb.normalized()
    best = protos[(feats @ protos.T).argmax(axis=1)]
    same = [best[labels == k] @ best[labels == k].T for k in range(3)]
    assert min(float(s.mean()) for s in same) > 0.95  # features of one label share (near-)equal prototypes
    cross = best[labels == 0] @ best[labels == 1].T
    assert float(cross.max()) < 0.7 + 0.05  # push margin m = 0.7


def test_push_loss_separates_close_labels():
    cb = ContrastiveCodebook(2, capacity=2, spawn_cos=0.999, push=1.0, pull=0.0, margin=0.5, lr=0.05)
    f = np.array([[1.0, 0.0], [0.9, 0.436]], np.float32)
    f = unit(f).astype(np.float32)
    cb.assign(f)
    cb.remember(f, np.array([0, 1]))
    cos_before = float(cb.normalized()[0] @ cb.normalized()[1])
    cb.train(50, batch=2)
    cos_after = float(cb.normalized()[0] @ cb.normalized()[1])
    assert cos_before > 0.85 and cos_after < cos_before


def test_a_label_swap_does_not_pull_two_concepts_together():
    """An object seen as its neighbour in some views (CLIP's label swap): its features sit on two
    far-apart prototypes. Pulling those together would blend both concepts; only near-duplicates
    (closer than the push margin) are pulled."""
    rng = np.random.default_rng(4)
    a, b = unit(rng.standard_normal((2, 64)))
    noisy = lambda c, n: unit(c + 0.3 * rng.standard_normal((n, 64)) / 8).astype(np.float32)  # noqa: E731
    feats = np.concatenate([noisy(a, 12), noisy(b, 8), noisy(b, 20)])
    labels = np.repeat([0, 0, 1], [12, 8, 20])  # track 0 is seen as b in 8 of its 20 views
    cb = ContrastiveCodebook(64, capacity=8, spawn_cos=0.8, lr=0.02)
    cb.assign(feats)
    cb.remember(feats, labels)
    assert cb.size == 2
    cb.train(150, batch=40)
    pa, pb = cb.normalized()
    assert pa @ a > 0.95 and pb @ b > 0.95  # each prototype stays on its concept
    assert abs(float(pa @ pb)) < 0.3


def test_boundary_band_marks_pixels_near_id_changes():
    from langgs_ros.mapping.fusion import boundary_band

    ids = np.full((20, 40), -1, np.int32)
    ids[5:15, 10:30] = 0
    band = boundary_band(ids, 2 / 40)  # 2 px at this width
    assert band[5, 20] and band[4, 20] and band[6, 20] and band[3, 20]  # within 2 px of the edge
    assert not band[10, 20] and not band[0, 0] and not band[2, 20]
    assert not boundary_band(ids, 0.0).any()


def _two_gaussian_views(mode: str):
    """A field of ``mode`` over two Gaussians: one inside a segment, one on its edge (2 px band)."""
    from langgs_ros.config import MappingConfig
    from langgs_ros.mapping.fusion import create_field
    from langgs_ros.mapping.gaussians import GaussianMap
    from langgs_ros.semantics.backend import Segmentation

    rng = np.random.default_rng(3)
    emb = unit(rng.standard_normal((2, 16))).astype(np.float32)
    field = create_field(mode, 16, MappingConfig(boundary_abstain_frac=2 / 40))
    gmap = GaussianMap()
    field.attach(gmap)
    idx = gmap.append(means=np.zeros((2, 3), np.float32))
    u, v = np.array([20, 10]), np.array([10, 10])  # interior of segment 0, its left edge
    ids = np.full((20, 40), -1, np.int32)
    ids[:, 10:30] = 0

    def view(ids, k):
        return Segmentation(levels=[ids] * 3, embeddings=[emb[k : k + 1]] * 3)

    return field, gmap, idx, u, v, ids, view, emb


def test_edge_pixels_only_fill_semantics_nobody_voted_for():
    for mode in ("codebook", "average"):
        field, gmap, idx, u, v, ids, view, emb = _two_gaussian_views(mode)
        field.integrate(gmap, view(ids, 0), idx, u, v, np.ones(2, bool))
        rel = field.relevance(gmap, emb[0], np.zeros((0, 16), np.float32))
        found, margin = rel.matching(0, 0.9)
        assert list(found) == [0, 1], mode  # the edge Gaussian got the segment's semantics
        # a view where the edge Gaussian is inside segment 1's interior: that vote replaces the fill
        shifted = np.full_like(ids, -1)
        shifted[:, :15] = 0
        field.integrate(gmap, view(shifted, 1), idx[1:], u[1:] - 5, v[1:], np.zeros(1, bool))
        rel = field.relevance(gmap, emb[1], np.zeros((0, 16), np.float32))
        assert list(rel.matching(0, 0.9)[0]) == [1], mode
        # an edge observation does not overwrite a voted Gaussian
        field.integrate(gmap, view(ids, 0), idx, u, v, np.zeros(2, bool))
        rel = field.relevance(gmap, emb[1], np.zeros((0, 16), np.float32))
        assert list(rel.matching(0, 0.9)[0]) == [1], mode


def test_weighted_majority_keeps_what_holds_most_of_the_weight():
    from langgs_ros.mapping.fusion import weighted_majority

    # one Gaussian in segment A in 2 views, in no segment (-1) in 3: A holds 8 of 14 quarters
    sequence = [(7, 4), (-1, 2), (-1, 2), (-1, 2), (7, 4)]
    current, count = np.array([-1]), np.array([0], np.uint8)
    for observed, weight in sequence:
        current, count = weighted_majority(current, count, np.array([observed]), weight)
    assert current[0] == 7 and count[0] == 2
    # with equal weights "no segment" holds 3 of 5 votes and wins
    current, count = np.array([-1]), np.array([0], np.uint8)
    for observed, _ in sequence:
        current, count = weighted_majority(current, count, np.array([observed]), 1)
    assert current[0] == -1


def test_a_merge_in_one_view_does_not_move_an_object_to_its_neighbours_track():
    from langgs_ros.config import MappingConfig
    from langgs_ros.mapping.fusion import CodebookField
    from langgs_ros.mapping.gaussians import GaussianMap
    from langgs_ros.semantics.backend import Segmentation

    rng = np.random.default_rng(4)
    emb = unit(rng.standard_normal((2, 16))).astype(np.float32)  # big object, small object
    field = CodebookField(16, MappingConfig(boundary_abstain_frac=0.0))
    gmap = GaussianMap()
    field.attach(gmap)
    idx = gmap.append(means=np.zeros((40, 3), np.float32))
    u, v = np.arange(40), np.zeros(40, np.int64)  # Gaussians 0-29 on the big object, 30-39 on the small
    apart = np.zeros((1, 40), np.int32)
    apart[0, 30:] = 1
    merged = np.zeros((1, 40), np.int32)

    def view(ids, n):
        return Segmentation(levels=[ids] * 3, embeddings=[emb[:n]] * 3)

    first = field.integrate(gmap, view(apart, 2), idx, u, v, np.ones(40, bool))[2]
    for _ in range(2):
        assert list(field.integrate(gmap, view(apart, 2), idx, u, v, np.zeros(40, bool))[2]) == list(first)
    field.integrate(gmap, view(merged, 1), idx, u, v, np.zeros(40, bool))  # the small one merged away
    after = field.integrate(gmap, view(apart, 2), idx, u, v, np.zeros(40, bool))[2]
    assert list(after) == list(first)  # the small object's segment finds its own track again
    assert set(gmap["tracks"][30:, 2]) == {first[1]}
    small = field.relevance(gmap, emb[1], np.zeros((0, 16), np.float32)).matching(2, 0.9)[0]
    assert list(small) == list(range(30, 40))


def test_behind_silhouette_marks_background_beside_a_nearer_surface():
    from langgs_ros.mapping.fusion import behind_silhouette

    depth = np.full((20, 40), 3.0, np.float32)
    depth[5:15, 10:20] = 1.0  # an object 2 m in front of the wall
    depth[0, 39] = np.nan
    far = behind_silhouette(depth, 2, 0.1)
    assert far[10, 8] and far[10, 21] and far[3, 15]  # wall within 2 px of the object
    assert not far[10, 15] and not far[10, 7] and not far[10, 30]  # the object; wall further away
    assert far[0, 39]  # no depth: never trusted
    assert not behind_silhouette(depth, 0, 0.1).any()


def test_abstaining_observations_neither_vote_nor_fill():
    for mode in ("codebook", "average"):
        field, gmap, idx, u, v, ids, view, emb = _two_gaussian_views(mode)
        interior = np.array([20, 25])  # both Gaussians inside segment 0, away from its edges
        field.integrate(gmap, view(ids, 0), idx, interior, v, np.ones(2, bool), abstain=np.array([False, True]))
        found = field.relevance(gmap, emb[0], np.zeros((0, 16), np.float32)).matching(0, 0.9)[0]
        assert list(found) == [0], mode


def test_a_gaussian_answers_with_its_tracks_code_now():
    from langgs_ros.config import MappingConfig
    from langgs_ros.mapping.fusion import CodebookField
    from langgs_ros.mapping.gaussians import GaussianMap
    from langgs_ros.semantics.backend import Segmentation

    rng = np.random.default_rng(5)
    emb = unit(rng.standard_normal((2, 16))).astype(np.float32)  # the object's label, a wrong one
    field = CodebookField(16, MappingConfig(boundary_abstain_frac=0.0))
    gmap = GaussianMap()
    field.attach(gmap)
    idx = gmap.append(means=np.zeros((20, 3), np.float32))
    ids = np.zeros((1, 20), np.int32)
    u, v = np.arange(20), np.zeros(20, np.int64)
    # the first view mislabels the object; Gaussians 15-19 are seen only in it
    field.integrate(gmap, Segmentation([ids] * 3, [emb[1:]] * 3), idx, u, v, np.ones(20, bool))
    for _ in range(3):
        field.integrate(gmap, Segmentation([ids] * 3, [emb[:1]] * 3), idx[:15], u[:15], v[:15], np.zeros(15, bool))
    assert len(set(gmap["tracks"][:, 2])) == 1  # one track
    found = field.relevance(gmap, emb[0], np.zeros((0, 16), np.float32)).matching(2, 0.9)[0]
    assert list(found) == list(range(20))


def test_observations_that_may_not_relabel_still_judge_presence():
    from langgs_ros.config import MappingConfig
    from langgs_ros.mapping.fusion import CodebookField
    from langgs_ros.mapping.gaussians import GaussianMap
    from langgs_ros.semantics.backend import Segmentation

    rng = np.random.default_rng(6)
    emb = unit(rng.standard_normal((2, 16))).astype(np.float32)  # an object, the table it stood on
    field = CodebookField(16, MappingConfig(boundary_abstain_frac=0.0, stale_track_views=3))
    gmap = GaussianMap()
    field.attach(gmap)
    idx = gmap.append(means=np.zeros((20, 3), np.float32))
    u, v = np.arange(20), np.zeros(20, np.int64)
    apart = np.zeros((1, 20), np.int32)
    apart[0, 5:] = 1  # Gaussians 0-4 on the object, 5-19 on the table
    field.integrate(gmap, Segmentation([apart] * 3, [emb] * 3), idx, u, v, np.ones(20, bool))
    tracks, votes = gmap["tracks"].copy(), gmap["track_votes"].copy()
    table = np.zeros((1, 20), np.int32)  # the object has gone: the table everywhere
    never = np.zeros(20, bool)
    for _ in range(3):  # views that may not relabel these Gaussians (created long before them)
        field.integrate(gmap, Segmentation([table] * 3, [emb[1:]] * 3), idx, u, v, never, relabel=never)
        assert np.array_equal(gmap["tracks"], tracks) and np.array_equal(gmap["track_votes"], votes)
    assert field.gone_tracks(2)[tracks[0, 2]]  # ... yet they count as evidence that it has gone
    assert not field.relevance(gmap, emb[0], np.zeros((0, 16), np.float32)).matching(2, 0.9)[0].size

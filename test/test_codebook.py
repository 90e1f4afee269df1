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


def test_boundary_band_marks_pixels_near_id_changes():
    from langgs_ros.mapping.fusion import boundary_band

    ids = np.full((20, 40), -1, np.int32)
    ids[5:15, 10:30] = 0
    band = boundary_band(ids, 2 / 40)  # 2 px at this width
    assert band[5, 20] and band[4, 20] and band[6, 20] and band[3, 20]  # within 2 px of the edge
    assert not band[10, 20] and not band[0, 0] and not band[2, 20]
    assert not boundary_band(ids, 0.0).any()

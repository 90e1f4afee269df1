"""Region-specific and context-aware OpenCLIP features and the cached text encoder."""

from __future__ import annotations

import numpy as np
import pytest

from langgs_ros.errors import ConfigError
from langgs_ros.mapping.relevance import best_kind, kind_margins
from langgs_ros.semantics import models
from langgs_ros.semantics.clip_features import ClipImageFeatures, ClipTextEncoder


@pytest.fixture()
def clip(tiny_models):
    return models.load_clip(tiny_models, models.resolve_device("cpu"))


def _box_masks() -> np.ndarray:
    masks = np.zeros((2, 96, 128), bool)
    masks[0, 20:60, 30:80] = True
    masks[1, 50:90, 70:120] = True
    return masks


def test_features_are_unit_norm_per_kind_and_deterministic(clip, two_boxes):
    model, _ = clip
    feats = ClipImageFeatures(model, ("region", "context"), batch=1)
    rgb = two_boxes
    emb = feats.embed(rgb, _box_masks())
    assert emb.shape == (2, 2 * 32)
    np.testing.assert_allclose(np.linalg.norm(emb[:, :32], axis=1), 1 / np.sqrt(2), atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(emb[:, 32:], axis=1), 1 / np.sqrt(2), atol=1e-5)
    np.testing.assert_array_equal(emb, feats.embed(rgb, _box_masks()))


def test_region_features_ignore_the_background(clip, two_boxes):
    model, _ = clip
    feats = ClipImageFeatures(model, ("region",))
    rgb = two_boxes
    other = rgb.copy()
    other[:10] = 255  # changes outside the first box only
    masks = _box_masks()[:1]
    np.testing.assert_allclose(feats.region(rgb, masks), feats.region(other, masks), atol=1e-6)
    assert not np.allclose(feats.context(rgb, masks), feats.context(other, masks), atol=1e-6)  # context sees it


def test_context_features_pool_the_dense_map(clip, two_boxes):
    model, _ = clip
    feats = ClipImageFeatures(model, ("context",))
    rgb = two_boxes
    dense = feats.dense(rgb)
    assert dense.shape == (4, 4, 32)  # 64 px input, 16 px patches
    full = np.ones((1, 96, 128), bool)
    mean = dense.reshape(-1, 32).mean(axis=0)
    np.testing.assert_allclose(feats.context(rgb, full, dense)[0], mean / np.linalg.norm(mean), atol=1e-5)


def test_text_encoder_is_cached_and_unit_norm(clip):
    model, tokenizer = clip
    enc = ClipTextEncoder(model, tokenizer, "tiny_test")
    a = enc.encode(["mug", "red mug", ""])
    assert a.shape == (3, 32) and enc.dim == 32
    np.testing.assert_allclose(np.linalg.norm(a[:2], axis=1), 1.0, atol=1e-5)
    assert not a[2].any()  # empty text: zero row
    assert set(enc._cache) == {"mug", "red mug"}
    np.testing.assert_array_equal(enc.encode(["mug"])[0], a[0])


def test_the_kind_with_the_higher_relevancy_answers():
    q = np.array([1.0, 0, 0, 0], np.float32)
    neg = np.array([[0, 1.0, 0, 0]], np.float32)
    # Gaussian 0: region kind matches q, context kind is neutral; Gaussian 1: neither
    f = np.array([[1, 0, 0, 0, 0, 0, 1, 0], [0, 0, 1, 0, 0, 1, 0, 0]], np.float32) / np.sqrt(2)
    m = kind_margins(f, q, neg)
    assert m.shape == (2, 2)
    np.testing.assert_allclose(m[:, 0], [1.0, 0.0], atol=1e-6)
    assert best_kind(m) == 0 and best_kind(m[::-1]) == 1
    with pytest.raises(ValueError):
        kind_margins(f[:, :6], q, neg)


def test_context_features_need_a_vit(clip):
    model, _ = clip
    visual = model.visual
    saved = visual.proj
    visual.proj = None
    try:
        with pytest.raises(ConfigError, match="feature_kinds: region"):
            ClipImageFeatures(model, ("context",))
    finally:
        visual.proj = saved

"""Prompt points (GAGS eq. 1), CCL-LGS level merging and SAM/SAM 2 candidate generation."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from langgs_ros.semantics import models
from langgs_ros.semantics.sam_masks import MaskSet, PointPromptMasks, merge_levels, paint_non_overlapping, prompt_points


def test_regular_grid_without_a_map():
    pts = prompt_points(480, 640, 32)
    assert pts.shape == (32 * 32, 2)
    assert pts[:, 0].min() == pytest.approx(10.0) and pts[:, 1].max() == pytest.approx(480 - 7.5)


def test_gags_density_grows_with_the_depth_ratio():
    ratio = np.ones((60, 80), np.float32)
    ratio[:30, :40] = 4.0  # top-left quarter seen from twice its nearest distance
    ratio[30:, 40:] = np.nan  # unknown: base density
    pts = prompt_points(480, 640, 16, ratio, patches=2, max_factor=4.0)
    top_left = (pts[:, 0] < 320) & (pts[:, 1] < 240)
    bottom_right = (pts[:, 0] >= 320) & (pts[:, 1] >= 240)
    assert bottom_right.sum() == 64  # (16 / 2)^2 points at the nearest view
    assert top_left.sum() == 256  # n_P = mean(D^2 / MD^2) * n = 4 * 64
    capped = prompt_points(480, 640, 16, ratio * 10, patches=2, max_factor=4.0)
    assert len(capped) == 3 * 256 + 64  # three known patches capped at 4 n, the unknown one at n


def _masks() -> MaskSet:
    m = np.zeros((4, 20, 20), bool)
    m[0, 2:18, 2:18] = True  # whole (big)
    m[1, 2:10, 2:18] = True  # part (top half)
    m[2, 2:6, 2:6] = True  # subpart inside the part
    m[3, 12:18, 12:18] = True  # part in the bottom half
    return MaskSet(m, np.array([2, 1, 0, 1]), np.ones(4, np.float32))


def test_levels_are_non_overlapping_with_the_right_granularity_on_top():
    (sub, sub_src), (part, part_src), (whole, whole_src) = merge_levels(_masks())
    assert sorted(sub_src.tolist()) == [1, 2, 3]  # subpart painted over its part
    assert sub[3, 3] == list(sub_src).index(2) and sub[8, 15] == list(sub_src).index(1)
    assert sorted(part_src.tolist()) == [1, 3]
    assert whole_src.tolist() == [0]  # the whole object covers its parts
    for ids, src in ((sub, sub_src), (part, part_src), (whole, whole_src)):
        assert set(np.unique(ids)) == set(range(len(src))) | {-1}


def test_painting_drops_masks_that_lose_most_of_their_area():
    m = np.zeros((2, 10, 10), bool)
    m[0, :, :6] = True
    m[1, :, :5] = True  # painted after mask 0, covers 5/6 of it
    ids, src = paint_non_overlapping(m, np.array([0, 1]))
    assert src.tolist() == [1] and (ids[:, :5] == 0).all() and (ids[:, 5:] == -1).all()


@pytest.mark.parametrize("mask_model", ["sam", "sam2"])
def test_candidates_from_tiny_models(tiny_models, mask_model, two_boxes):
    device = models.resolve_device("cpu")
    model = models.load_sam(tiny_models, device) if mask_model == "sam" else models.load_sam2(tiny_models, device)
    gen = PointPromptMasks(model, dataclasses.replace(tiny_models, mask_model=mask_model))
    rgb = two_boxes
    cands = gen.generate(rgb, prompt_points(96, 128, 8))
    again = gen.generate(rgb, prompt_points(96, 128, 8))
    assert cands.masks.shape[1:] == (96, 128) and len(cands.masks) > 0
    assert set(cands.granularity.tolist()) <= {0, 1, 2}
    np.testing.assert_array_equal(cands.masks, again.masks)  # deterministic

    strict = PointPromptMasks(model, dataclasses.replace(tiny_models, pred_iou_thresh=2.0))
    assert len(strict.generate(rgb, prompt_points(96, 128, 8)).masks) == 0  # IoU filter applies


def test_masks_do_not_depend_on_the_decoder_batch(tiny_models, two_boxes):
    """models.mask_batch (0 = auto: one prompt at a time on a CPU) changes speed, not the masks."""
    device = models.resolve_device("cpu")
    model = models.load_sam2(tiny_models, device)
    points = prompt_points(96, 128, 6)
    loose = dataclasses.replace(tiny_models, mask_model="sam2", pred_iou_thresh=-1.0, stability_score_thresh=-1.0)
    results = [PointPromptMasks(model, dataclasses.replace(loose, mask_batch=b)).generate(two_boxes, points)
               for b in (0, 1, 7, 64)]
    assert len(results[0].masks) > 1
    for other in results[1:]:
        np.testing.assert_array_equal(results[0].masks, other.masks)
        np.testing.assert_array_equal(results[0].granularity, other.granularity)


@pytest.mark.parametrize("mask_model", ["sam", "sam2"])
def test_low_resolution_decoding_matches_the_predictors_masks(tiny_models, mask_model, two_boxes):
    """Masks decoded at low resolution and upsampled only when kept are the predictor's own."""
    import torch

    device = models.resolve_device("cpu")
    model = models.load_sam(tiny_models, device) if mask_model == "sam" else models.load_sam2(tiny_models, device)
    gen = PointPromptMasks(model, dataclasses.replace(tiny_models, mask_model=mask_model))
    points = prompt_points(96, 128, 4)
    labels = np.ones((len(points), 1), np.int32)
    with torch.inference_mode():
        gen.predictor.set_image(two_boxes)
        iou, low = gen._predict_low(points)
        if mask_model == "sam2":
            ref, ref_iou, _ = gen.predictor.predict(point_coords=points[:, None, :], point_labels=labels,
                                                    multimask_output=True, return_logits=True)
        else:
            coords = gen.predictor.transform.apply_coords(points[:, None, :], (96, 128))
            ref, ref_iou, _ = gen.predictor.predict_torch(torch.as_tensor(coords, dtype=torch.float32),
                                                          torch.as_tensor(labels), multimask_output=True,
                                                          return_logits=True)
    ref = np.asarray(ref).reshape(-1, 96, 128) > 0
    mine = gen._upsample(low, (96, 128)).numpy()
    np.testing.assert_allclose(iou.numpy(), np.asarray(ref_iou).reshape(-1), rtol=1e-4, atol=1e-5)
    differ = float(np.mean(mine != ref))
    # SAM 2's low-res logits cover the image: identical; SAM's cover a padded square, cropped here at low
    # resolution instead of after an upsampling to 1024 px: a pixel at mask borders at most
    assert differ == 0.0 if mask_model == "sam2" else differ < 0.01, differ

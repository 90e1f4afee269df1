"""SAM 2 propagation association and tracker ids feeding the codebook (issue 4, item 3)."""

from __future__ import annotations

import numpy as np

from langgs_ros.config import MappingConfig
from langgs_ros.mapping.fusion import CodebookField
from langgs_ros.mapping.gaussians import GaussianMap
from langgs_ros.semantics import models
from langgs_ros.semantics.association import Sam2Association, match_by_iou
from langgs_ros.semantics.backend import Segmentation


def test_match_by_iou_keeps_ids_above_the_threshold():
    ids = np.full((10, 10), -1, np.int32)
    ids[:5, :5] = 0  # 25 px
    ids[5:, 5:] = 1
    prop = np.zeros((2, 10, 10), bool)
    prop[0, :5, :4] = True  # IoU 20/25 = 0.8 with segment 0
    prop[1, 5:, 8:] = True  # IoU 10/25 = 0.4 with segment 1
    np.testing.assert_array_equal(match_by_iou(ids, 2, prop, 0.5), [0, -1])
    np.testing.assert_array_equal(match_by_iou(ids, 2, prop[:0], 0.5), [-1, -1])


class _StubPropagator:
    """Stands in for SAM2VideoPredictor's API: propagates each mask unchanged."""

    def init_state(self, folder, offload_video_to_cpu=False):
        return {"masks": {}}

    def add_new_mask(self, state, frame_idx, obj_id, mask):
        state["masks"][obj_id] = mask

    def propagate_in_video(self, state, start_frame_idx, max_frame_num_to_track):
        import torch

        ids = sorted(state["masks"])
        logits = torch.tensor(np.stack([state["masks"][i] for i in ids])[:, None].astype(np.float32) * 2 - 1)
        yield 0, ids, logits
        yield 1, ids, logits


def test_ids_survive_propagation_and_new_segments_get_new_ids():
    assoc = Sam2Association(_StubPropagator(), 0.5)
    rgb = np.zeros((10, 10, 3), np.uint8)
    a = np.full((10, 10), -1, np.int32)
    a[:5] = 0
    a[5:] = 1
    first = assoc.associate(rgb, [a, a, a], [2, 2, 2])
    b = np.full((10, 10), -1, np.int32)
    b[:5] = 1  # same region as a's segment 0, listed second
    b[5:, :3] = 0  # a new, smaller segment
    second = assoc.associate(rgb, [b, b, b], [2, 2, 2])
    for level in range(3):
        assert second[level][1] == first[level][0]
        assert second[level][0] not in set(first[level].tolist()) | {second[level][1]}


def test_real_sam2_propagation_runs_on_the_tiny_model(tiny_models, two_boxes):
    assoc = Sam2Association(models.load_sam2(tiny_models, models.resolve_device("cpu")), 0.5)
    ids = np.full(two_boxes.shape[:2], -1, np.int32)
    ids[20:60, 30:80] = 0
    ids[50:90, 70:120] = 1
    first = assoc.associate(two_boxes, [ids] * 3, [2] * 3)
    second = assoc.associate(two_boxes, [ids] * 3, [2] * 3)
    assert [len(t) for t in second] == [2, 2, 2]
    assert all(t.dtype == np.int64 for t in second)
    assert len(set(np.concatenate(first).tolist())) == 6  # fresh ids per level and segment


def test_tracker_ids_drive_the_codebook_tracks():
    field = CodebookField(4, MappingConfig(codebook_size=8, codebook_steps=0))
    gmap = GaussianMap()
    field.attach(gmap)
    idx = gmap.append(means=np.zeros((4, 3), np.float32))
    ids = np.array([[0, 0], [1, 1]], np.int32)
    emb = np.eye(4, dtype=np.float32)[:2]
    u, v = np.array([0, 1, 0, 1]), np.array([0, 0, 1, 1])
    seg = Segmentation([ids] * 3, [emb] * 3, tracks=[np.array([7, 9])] * 3)
    field.integrate(gmap, seg, idx, u, v, np.ones(4, bool))
    first = gmap["tracks"][:, 0].copy()
    # the next view lists the same tracker ids in the other order: tracks follow the ids
    seg2 = Segmentation([1 - ids] * 3, [emb[::-1]] * 3, tracks=[np.array([9, 7])] * 3)
    field.integrate(gmap, seg2, idx, u, v, np.zeros(4, bool))
    np.testing.assert_array_equal(gmap["tracks"][:, 0], first)
    assert len(field.track_counts[0]) == 2


def test_reused_encoder_outputs_give_the_propagation_of_a_fresh_encoding(tiny_models, two_boxes, tmp_path):
    """Propagation with the two keyframes' encoder outputs passed in equals the video predictor's own
    encoding of the same frames (so the outputs are used for the right frames), without encoding."""
    import cv2
    import torch

    predictor = models.load_sam2(tiny_models, models.resolve_device("cpu"))
    assoc = Sam2Association(predictor, 0.5)
    second = np.ascontiguousarray(two_boxes[:, ::-1])  # another view: the boxes mirrored
    mask = np.zeros(two_boxes.shape[:2], bool)
    mask[20:60, 30:80] = True
    for i, image in enumerate((two_boxes, second)):
        cv2.imwrite(str(tmp_path / f"{i:05d}.jpg"), image[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, 95])
    with torch.inference_mode():
        images = predictor.init_state(str(tmp_path), offload_video_to_cpu=True)["images"]
        features = tuple(predictor.forward_image(images[i].float().unsqueeze(0)) for i in (0, 1))
    from langgs_ros.semantics.sam2_encoder import recording_encoder

    seen: list = []
    encode = predictor.forward_image
    predictor.forward_image = lambda image: seen.append(image) or encode(image)  # what sam2 encodes, in order
    try:
        fresh = assoc._propagate(two_boxes, second, [mask])
        n_fresh = len(seen)
        recorded: list = []
        with recording_encoder(predictor, recorded):
            reused = assoc._propagate(two_boxes, second, [mask], features)
    finally:
        del predictor.forward_image
    assert "forward_image" not in vars(predictor)  # the class's method is back
    # sam2 encodes frame 0, then frame 1, once each: the order in which the outputs are served
    assert n_fresh == 2 and all(torch.equal(seen[i], images[i].float().unsqueeze(0)) for i in (0, 1))
    assert len(seen) == n_fresh and recorded == []  # with the outputs given, no encoder pass at all
    np.testing.assert_array_equal(reused, fresh)

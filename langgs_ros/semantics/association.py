"""Cross-view segment association by SAM 2 video propagation (CCL-LGS).

The segments of the previous keyframe are propagated into the new keyframe by SAM 2's video
predictor; a new segment takes the id of the propagated mask it overlaps most if their IoU is
above the threshold (0.5), otherwise a new id. Ids are per granularity level and feed the
codebook's pull/push losses in place of the map's geometric association.

When the masks came from the same SAM 2, its image encoder output for each keyframe is reused:
propagation then runs no encoder pass of its own (the video API would encode both keyframes again).
"""

from __future__ import annotations

import contextlib
import tempfile
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from langgs_ros.semantics.sam2_encoder import replaying_encoder

__all__ = ["Sam2Association", "match_by_iou"]


def match_by_iou(ids: np.ndarray, n_segments: int, propagated: np.ndarray, threshold: float) -> np.ndarray:
    """[n_segments] index into ``propagated`` ([P, H, W] bool) with IoU > threshold, else -1."""
    match = np.full(n_segments, -1, np.int64)
    if len(propagated) == 0 or n_segments == 0:
        return match
    flat = ids.reshape(-1)
    inside = flat >= 0
    seg_area = np.bincount(flat[inside], minlength=n_segments)
    prop = propagated.reshape(len(propagated), -1)
    inter = np.stack([np.bincount(flat[inside & p], minlength=n_segments) for p in prop], axis=1)  # [S, P]
    union = seg_area[:, None] + prop.sum(axis=1)[None, :] - inter
    iou = inter / np.maximum(union, 1)
    best = iou.argmax(axis=1)
    ok = iou[np.arange(n_segments), best] > threshold
    match[ok] = best[ok]
    return match


class Sam2Association:
    """Stable per-level segment ids across consecutive keyframes by SAM 2 mask propagation."""

    def __init__(self, video_predictor: Any, iou_threshold: float = 0.5) -> None:
        self.predictor = video_predictor
        self.iou_threshold = iou_threshold
        self._previous: tuple[np.ndarray, list[np.ndarray], list[np.ndarray]] | None = None
        self._previous_features: Any = None
        self._next_id = 0

    def reset(self) -> None:
        """Forget the previous keyframe (ids restart being new)."""
        self._previous = self._previous_features = None

    def _new_ids(self, n: int) -> np.ndarray:
        ids = np.arange(self._next_id, self._next_id + n, dtype=np.int64)
        self._next_id += n
        return ids

    def _propagate(self, previous_rgb: np.ndarray, rgb: np.ndarray, masks: list[np.ndarray],
                   features: tuple[Any, Any] | None = None) -> np.ndarray:
        """[len(masks), H, W] bool: each mask of the previous image propagated into ``rgb``.
        ``features``: SAM 2's encoder outputs of the two images, used instead of encoding them again
        (frame 0, then frame 1: the order in which sam2 1.1's init_state and a one-frame propagation
        encode them, once each)."""
        import torch

        if not masks:
            return np.zeros((0, *rgb.shape[:2]), bool)
        with tempfile.TemporaryDirectory(prefix="langgs_sam2_") as tmp:
            # SAM 2's video API reads a folder of numbered JPEG frames
            for i, image in enumerate((previous_rgb, rgb)):
                cv2.imwrite(str(Path(tmp) / f"{i:05d}.jpg"), image[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, 95])
            known = features is not None and all(f is not None for f in features)
            with torch.inference_mode(), (replaying_encoder(self.predictor, list(features))  # type: ignore[arg-type]
                                          if known else contextlib.nullcontext()):
                state = self.predictor.init_state(tmp, offload_video_to_cpu=True)
                for obj, mask in enumerate(masks):
                    self.predictor.add_new_mask(state, frame_idx=0, obj_id=obj, mask=mask)
                out = np.zeros((len(masks), *rgb.shape[:2]), bool)
                for frame_idx, obj_ids, logits in self.predictor.propagate_in_video(state, start_frame_idx=0,
                                                                                    max_frame_num_to_track=1):
                    if frame_idx == 1:
                        out[np.asarray(obj_ids)] = (logits[:, 0] > 0).cpu().numpy()
        return out

    def associate(self, rgb: np.ndarray, levels: list[np.ndarray], n_segments: list[int],
                  backbone_out: Any = None) -> list[np.ndarray]:
        """Per level, [n_segments[level]] ids stable across keyframes for ``levels`` id maps of ``rgb``.
        ``backbone_out``: this SAM 2's encoder output for ``rgb`` (from the mask generator), if any."""
        if self._previous is None:
            result = [self._new_ids(n) for n in n_segments]
        else:
            prev_rgb, prev_levels, prev_ids = self._previous
            masks, owner = [], []
            for level, (ids, ext) in enumerate(zip(prev_levels, prev_ids)):
                for s in range(len(ext)):
                    m = ids == s
                    if m.any():
                        masks.append(m)
                        owner.append((level, ext[s]))
            propagated = self._propagate(prev_rgb, rgb, masks, (self._previous_features, backbone_out))
            result = []
            for level, (ids, n) in enumerate(zip(levels, n_segments)):
                mine = np.array([i for i, (lv, _) in enumerate(owner) if lv == level], np.int64)
                match = match_by_iou(ids, n, propagated[mine] if mine.size else propagated[:0], self.iou_threshold)
                ok = match >= 0
                ext = np.empty(n, np.int64)
                ext[ok] = [owner[mine[j]][1] for j in match[ok]]
                ext[~ok] = self._new_ids(int((~ok).sum()))
                result.append(ext)
        self._previous = (rgb.copy(), [ids.copy() for ids in levels], result)
        self._previous_features = backbone_out
        return result


"""Multi-granularity masks from SAM or SAM 2 prompted by a point grid (CCL-LGS, GAGS).

Each prompt point yields SAM's three multimask outputs, which are ordered by granularity
(subpart, part, whole). Masks are filtered by predicted IoU, stability and size, de-duplicated
by box NMS on predicted IoU x stability, then painted into three non-overlapping id maps as in
CCL-LGS's two-level merging: subpart+part (smaller masks on top), part alone, whole+part (larger
masks on top). With a map, GAGS eq. 1 sets the prompt density per image patch from the ratio of
the observed depth to the nearest depth the map has seen that surface from, and patches whose
surface the map labels already get fewer prompts (new or uncertain surface first: the mask
decoder's cost is per prompt).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from langgs_ros.config import ModelsConfig

__all__ = ["MaskSet", "PointPromptMasks", "known_patches", "patch_mask", "prompt_points", "paint_non_overlapping",
           "merge_levels"]


@dataclass
class MaskSet:
    """Candidate masks of one image (all granularities)."""

    masks: np.ndarray
    """[M, H, W] bool."""
    granularity: np.ndarray
    """[M] int: 0 subpart, 1 part, 2 whole (SAM's multimask output index)."""
    score: np.ndarray
    """[M] float: predicted IoU x stability score."""


KNOWN_FRACTION = 0.9
"""Share of a patch's pixels with depth that must be labelled for the patch to count as known."""


def known_patches(labelled_views: np.ndarray | None, patches: int, known_views: int) -> np.ndarray:
    """[patches, patches] bool: patches where at least :data:`KNOWN_FRACTION` of the pixels with a
    value in ``labelled_views`` (any resolution, NaN = no depth) are labelled from ``known_views``
    views or more."""
    known = np.zeros((patches, patches), bool)
    if labelled_views is None:
        return known
    rh, rw = labelled_views.shape
    for i in range(patches):
        for j in range(patches):
            cell = labelled_views[i * rh // patches:(i + 1) * rh // patches, j * rw // patches:(j + 1) * rw // patches]
            seen = cell[np.isfinite(cell)]
            known[i, j] = seen.size > 0 and np.mean(seen >= known_views) >= KNOWN_FRACTION
    return known


def prompt_points(height: int, width: int, points_per_side: int, depth_ratio: np.ndarray | None = None,
                  patches: int = 8, max_factor: float = 4.0, known: np.ndarray | None = None,
                  known_factor: float = 1.0) -> np.ndarray:
    """[N, 2] prompt points (x, y) in pixels.

    Without ``depth_ratio`` or ``known``, a regular ``points_per_side`` grid. Otherwise per patch of
    a ``patches`` x ``patches`` grid: GAGS eq. 1 with ``depth_ratio`` (per pixel D^2 / MD^2 >= 1,
    NaN where unknown; any resolution), n_P = mean(ratio) * n points, n = its share of the base
    grid, capped at ``max_factor`` * n; times ``known_factor`` in the ``known`` patches
    ([patches, patches] bool, :func:`known_patches`), at least one point each.
    """
    if depth_ratio is None and (known is None or not known.any()):
        from segment_anything.utils.amg import build_point_grid

        return build_point_grid(points_per_side) * np.array([width, height], np.float64)
    base = (points_per_side / patches) ** 2
    points = []
    for i in range(patches):
        for j in range(patches):
            ratio = 1.0
            if depth_ratio is not None:
                rh, rw = depth_ratio.shape
                cell = depth_ratio[i * rh // patches:(i + 1) * rh // patches, j * rw // patches:(j + 1) * rw // patches]
                seen = cell[np.isfinite(cell)]
                ratio = float(np.clip(seen.mean(), 1.0, max_factor)) if seen.size else 1.0
            if known is not None and known[i, j]:
                ratio *= known_factor
            side = max(1, int(round(np.sqrt(base * ratio))))
            offs = (np.arange(side) + 0.5) / side
            x0, x1 = j * width / patches, (j + 1) * width / patches
            y0, y1 = i * height / patches, (i + 1) * height / patches
            xs, ys = np.meshgrid(x0 + offs * (x1 - x0), y0 + offs * (y1 - y0))
            points.append(np.stack([xs.ravel(), ys.ravel()], axis=1))
    return np.concatenate(points)


def patch_mask(known: np.ndarray, height: int, width: int) -> np.ndarray:
    """[height, width] bool: the pixels of the ``known`` patches (same grid as :func:`prompt_points`)."""
    patches = known.shape[0]
    rows = np.minimum(np.arange(height) * patches // height, patches - 1)
    cols = np.minimum(np.arange(width) * patches // width, patches - 1)
    return known[rows[:, None], cols[None, :]]


def paint_non_overlapping(masks: np.ndarray, order: np.ndarray, min_keep: float = 0.5) -> tuple[np.ndarray, np.ndarray]:
    """Paint ``masks[order]`` in turn (later on top) into one id map.

    Returns ([H, W] int32 ids 0..S-1, -1 = none; [S] index into ``masks`` of each id). A mask
    keeping less than ``min_keep`` of its area after painting is dropped.
    """
    h, w = masks.shape[1:]
    canvas = np.full((h, w), -1, np.int64)
    for m in order:
        canvas[masks[m]] = m
    present, counts = np.unique(canvas[canvas >= 0], return_counts=True)
    areas = masks[present].reshape(len(present), -1).sum(axis=1)
    kept = present[counts >= min_keep * np.maximum(areas, 1)]
    lut = np.full(len(masks) + 1, -1, np.int32)
    lut[kept + 1] = np.arange(kept.size, dtype=np.int32)
    return lut[canvas + 1], kept


def merge_levels(candidates: MaskSet) -> list[tuple[np.ndarray, np.ndarray]]:
    """CCL-LGS two-level merging: [(ids, source mask index)] for subpart, part and whole levels."""
    n, h, w = candidates.masks.shape
    if n == 0:
        return [(np.full((h, w), -1, np.int32), np.zeros(0, np.int64)) for _ in range(3)]
    area = candidates.masks.reshape(n, -1).sum(axis=1)
    g = candidates.granularity
    levels = []
    for members, small_on_top in (((0, 1), True), ((1,), True), ((2, 1), False)):
        idx = np.flatnonzero(np.isin(g, members))
        order = idx[np.argsort(-area[idx] if small_on_top else area[idx], kind="stable")]
        levels.append(paint_non_overlapping(candidates.masks, order))
    return levels


NMS_POOL = 512
"""Candidates (low-resolution logits, 256 KiB each at SAM's 256 x 256) held before an intermediate
box NMS: up to this many, the kept masks do not depend on ``models.mask_batch``."""


def _nms(pool: dict[str, list[Any]]) -> dict[str, Any]:
    """Box NMS (IoU 0.7) of pooled candidates (lists of tensors per field) by score, per
    granularity (as SAM's automatic generator): one tensor per field."""
    import torch
    from torchvision.ops import batched_nms

    if not pool["score"]:
        return {"low": torch.zeros((0, 1, 1)), "gran": torch.zeros(0, dtype=torch.long), "score": torch.zeros(0),
                "boxes": torch.zeros((0, 4))}
    kept = {k: torch.cat(v) for k, v in pool.items()}
    keep = batched_nms(kept["boxes"], kept["score"], kept["gran"], iou_threshold=0.7)
    return {k: v[keep] for k, v in kept.items()}


class PointPromptMasks:
    """Prompted multimask generation over a SAM ``SamPredictor`` or SAM 2 ``SAM2ImagePredictor``."""

    def __init__(self, model: object, config: ModelsConfig, autocast: object = None) -> None:
        self.config = config
        self.autocast = autocast
        if type(model).__name__ == "Sam":
            from segment_anything import SamPredictor

            self.predictor = SamPredictor(model)
            self._sam2 = False
        else:
            from sam2.sam2_image_predictor import SAM2ImagePredictor

            self.predictor = SAM2ImagePredictor(model)
            # the predictor assumes a 1024 px model; its backbone feature sizes follow image_size
            size = int(model.image_size)
            self.predictor._bb_feat_sizes = [(size // 4, size // 4), (size // 8, size // 8), (size // 16, size // 16)]
            self._sam2 = True
        self.backbone_out: Any = None
        """SAM 2: the image encoder's output for the last image (reused by the association)."""
        self._pe: Any = None  # the prompt encoder's dense positional encoding (made once)
        self.encoder_seconds = 0.0
        """Time spent in the image encoder (``set_image``) so far, s: the part of a keyframe's masks
        that does not depend on the number of prompts."""

    def _set_image(self, rgb: np.ndarray) -> None:
        """The predictor's ``set_image``; for SAM 2 the encoder output is kept in :attr:`backbone_out`."""
        start = time.perf_counter()
        if not self._sam2:
            self.predictor.set_image(rgb)
        else:
            from langgs_ros.semantics.sam2_encoder import recording_encoder

            outputs: list[Any] = []
            with recording_encoder(self.predictor.model, outputs):
                self.predictor.set_image(rgb)
            self.backbone_out = outputs[-1] if outputs else None
        self.encoder_seconds += time.perf_counter() - start

    def _autocast(self):  # noqa: ANN202 - a context manager
        import contextlib

        import torch

        if self.autocast is None:
            return contextlib.nullcontext()
        return torch.autocast(self.predictor.device.type, dtype=self.autocast)

    def _predict_low(self, points: np.ndarray) -> tuple[Any, Any]:
        """For single-point prompts ([B, 2] x, y pixels of the set image): predicted IoU [B*3] and
        low-resolution mask logits [B*3, h, w] covering the image (torch, on the model's device).

        The library's ``predict`` calls upsample every candidate to full resolution, most of them
        to be dropped by the filters; this runs the same prompt encoder and mask decoder and leaves
        the upsampling to the survivors (:meth:`_upsample`)."""
        import torch

        p, device = self.predictor, self.predictor.device
        coords = torch.as_tensor(points[:, None, :], dtype=torch.float32, device=device)
        labels = torch.ones((len(points), 1), dtype=torch.int, device=device)
        if self._sam2:
            model = p.model
            coords = p._transforms.transform_coords(coords, normalize=True, orig_hw=p._orig_hw[-1])
            sparse, dense = model.sam_prompt_encoder(points=(coords, labels), boxes=None, masks=None)
            low, iou, _, _ = model.sam_mask_decoder(
                image_embeddings=p._features["image_embed"][-1].unsqueeze(0),
                image_pe=self._dense_pe(model.sam_prompt_encoder), sparse_prompt_embeddings=sparse,
                dense_prompt_embeddings=dense, multimask_output=True, repeat_image=len(points) > 1,
                high_res_features=[level[-1].unsqueeze(0) for level in p._features["high_res_feats"]])
        else:
            model = p.model
            coords = torch.as_tensor(p.transform.apply_coords(points[:, None, :], p.original_size),
                                     dtype=torch.float32, device=device)
            sparse, dense = model.prompt_encoder(points=(coords, labels), boxes=None, masks=None)
            low, iou = model.mask_decoder(image_embeddings=p.features, image_pe=self._dense_pe(model.prompt_encoder),
                                          sparse_prompt_embeddings=sparse, dense_prompt_embeddings=dense,
                                          multimask_output=True)
            # SAM's low-res logits cover the padded square input; keep the image part
            in_h, in_w = p.input_size
            side = model.image_encoder.img_size
            low = low[..., : -(-low.shape[-2] * in_h // side), : -(-low.shape[-1] * in_w // side)]
        n = len(points) * 3
        return iou.float().reshape(n), low.float().reshape(n, *low.shape[-2:])

    def _dense_pe(self, prompt_encoder: Any) -> Any:
        """The prompt encoder's positional encoding of the image grid (the same for every prompt)."""
        if self._pe is None:
            self._pe = prompt_encoder.get_dense_pe()
        return self._pe

    @staticmethod
    def _upsample(low: Any, size: tuple[int, int]) -> Any:
        """[M, H, W] bool masks from low-resolution logits [M, h, w] (bilinear, as the predictors)."""
        import torch.nn.functional as F  # noqa: N812

        if not len(low):
            return low.new_zeros((0, *size), dtype=bool)
        return F.interpolate(low[:, None], size, mode="bilinear", align_corners=False)[:, 0] > 0

    def generate(self, rgb: np.ndarray, points: np.ndarray) -> MaskSet:
        """Candidate masks of ``rgb`` ([H, W, 3] uint8) for ``points`` ([N, 2] x, y pixels).

        Filtering (predicted IoU, stability, size) and box NMS run on SAM's low-resolution logits;
        only the surviving masks are upsampled to full resolution.
        """
        import torch
        from segment_anything.utils.amg import calculate_stability_score
        from torchvision.ops import masks_to_boxes

        cfg = self.config
        h, w = rgb.shape[:2]
        pool: dict[str, list[Any]] = {"low": [], "gran": [], "score": [], "boxes": []}
        pooled = 0
        with torch.inference_mode(), self._autocast():
            self._set_image(rgb)
            step = cfg.mask_batch or (64 if self.predictor.device.type == "cuda" else 1)
            for start in range(0, len(points), step):
                batch = points[start:start + step]
                iou, low = (x.cpu() for x in self._predict_low(batch))
                stability = calculate_stability_score(low, 0.0, 1.0)
                area = (low > 0).float().mean(dim=(1, 2))
                ok = (iou >= cfg.pred_iou_thresh) & (stability >= cfg.stability_score_thresh)
                ok &= (area > max(cfg.min_mask_region_frac, 0.0)) & (area < 1.0)  # the whole image says nothing
                if not ok.any():
                    continue
                gran = torch.arange(3).repeat(len(batch))
                for name, value in (("low", low[ok]), ("gran", gran[ok]), ("score", (iou * stability)[ok]),
                                    ("boxes", masks_to_boxes(low[ok] > 0))):
                    pool[name].append(value)
                pooled += int(ok.sum())
                if pooled > NMS_POOL:  # bound memory (a dense grid); otherwise one NMS at the end
                    pool = {k: [v] for k, v in _nms(pool).items()}
                    pooled = len(pool["score"][0])
            kept = _nms(pool)
            masks = self._upsample(kept["low"], (h, w))
        return MaskSet(masks.numpy(), kept["gran"].numpy(), kept["score"].numpy().astype(np.float32))

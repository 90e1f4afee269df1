"""The real 2D semantic backend ('clip'): SAM or SAM 2 masks, OpenCLIP features, association.

Per keyframe: prompt points (one per geometric segment of the keyframe's depth, new surface first:
:mod:`~langgs_ros.semantics.prompt_planner`; or a grid with GAGS density) -> multimask
candidates -> CCL-LGS merged levels -> CLIP features of each distinct mask (region-specific and/or
context-aware, GSemSplat) -> optional SAM 2 propagation ids. Time per stage is accumulated in
:attr:`FoundationBackend.stage_seconds`.
"""

from __future__ import annotations

import time
from collections import defaultdict

import cv2
import numpy as np

from langgs_ros.config import ModelsConfig, SemanticsConfig
from langgs_ros.semantics.backend import Segmentation, SegmentationGuidance, SemanticBackend
from langgs_ros.semantics.prompt_planner import plan_prompts
from langgs_ros.semantics.sam_masks import known_patches, merge_levels, patch_mask, prompt_points
from langgs_ros.types import Frame

__all__ = ["FoundationBackend"]


class FoundationBackend(SemanticBackend):
    """SAM/SAM 2 + OpenCLIP segments at three granularities (see module docstring)."""

    name = "clip"
    uses_depth_guidance = True

    def __init__(self, config: ModelsConfig, association_iou: float = 0.5,
                 semantics: SemanticsConfig | None = None) -> None:
        from langgs_ros.semantics.association import Sam2Association
        from langgs_ros.semantics.clip_features import FEATURE_KINDS, ClipImageFeatures, ClipTextEncoder
        from langgs_ros.semantics.models import autocast_dtype, load_clip, load_sam, load_sam2, resolve_device
        from langgs_ros.semantics.sam_masks import PointPromptMasks

        self.config = config
        self.prompting = semantics or SemanticsConfig()
        self.device = resolve_device(config.device)
        autocast = autocast_dtype(self.device, config.precision)
        clip, tokenizer = load_clip(config, self.device)
        self.text_encoder = ClipTextEncoder(clip, tokenizer, config.clip_model)
        self.features = ClipImageFeatures(clip, FEATURE_KINDS[config.feature_kinds], config.clip_batch, autocast)
        sam2 = load_sam2(config, self.device) if "sam2" in (config.mask_model, config.association) else None
        mask_model = sam2 if config.mask_model == "sam2" else load_sam(config, self.device)
        self.masks = PointPromptMasks(mask_model, config, autocast)
        self.association = Sam2Association(sam2, association_iou) if config.association == "sam2" else None
        self.stage_seconds: dict[str, float] = defaultdict(float)
        self.keyframes = 0
        self.prompts = 0
        """Prompt points decoded so far (the mask decoder's cost is per prompt)."""
        self.masks_embedded = 0
        """Masks given CLIP features so far (a region feature costs one CLIP forward per mask)."""

    @property
    def dim(self) -> int:
        """Embedding width: the CLIP dimension times the number of feature kinds."""
        return self.text_encoder.dim * len(self.features.kinds)

    def _tick(self, stage: str, start: float) -> float:
        now = time.perf_counter()
        self.stage_seconds[stage] += now - start
        return now

    def segment(self, frame: Frame, guidance: SegmentationGuidance | None = None) -> Segmentation:
        h, w = frame.rgb.shape[:2]
        scale = min(1.0, self.config.image_long_side / max(h, w))
        rgb = frame.rgb if scale == 1.0 else cv2.resize(frame.rgb, (round(w * scale), round(h * scale)),
                                                         interpolation=cv2.INTER_AREA)
        sh, sw = rgb.shape[:2]
        start = time.perf_counter()
        points, quiet = self._prompts(frame, guidance, sh, sw)
        self.prompts += len(points)
        candidates = self.masks.generate(rgb, points)
        merged = merge_levels(candidates)
        start = self._tick("masks", start)
        abstain = None
        if quiet is not None and quiet.any():  # sparsely prompted, labelled surface outside every mask: no evidence
            covered = np.any([ids >= 0 for ids, _ in merged], axis=0)
            abstain = _resized(quiet, w, h) & ~_resized(covered, w, h)
        used = np.unique(np.concatenate([src for _, src in merged])) if merged else np.zeros(0, np.int64)
        emb = self.features.embed(rgb, candidates.masks[used]) if used.size else np.zeros((0, self.dim), np.float32)
        self.masks_embedded += int(used.size)
        row = {int(m): i for i, m in enumerate(used)}
        start = self._tick("embeddings", start)
        levels, embeddings = [], []
        for ids, src in merged:
            if scale != 1.0:
                ids = cv2.resize(ids, (w, h), interpolation=cv2.INTER_NEAREST)
            levels.append(ids.astype(np.int32))
            embeddings.append(emb[[row[int(m)] for m in src]].reshape(len(src), self.dim))
        tracks = None
        if self.association is not None:
            small = [ids for ids, _ in merged]
            reuse = self.masks.backbone_out if self.config.mask_model == "sam2" else None  # the same SAM 2
            tracks = self.association.associate(rgb, small, [len(src) for _, src in merged], reuse)
            self._tick("association", start)
        self.keyframes += 1
        return Segmentation(levels, embeddings, tracks, abstain)

    def _prompts(self, frame: Frame, guidance: SegmentationGuidance | None, height: int,
                 width: int) -> tuple[np.ndarray, np.ndarray | None]:
        """(prompt points [N, 2] in the segmentation image, bool [height, width] of labelled surface
        left sparsely prompted, or None): from the keyframe's geometry (``semantics.prompts:
        geometry``, when it has depth) or the GAGS grid."""
        cfg = self.config
        views = guidance.labelled_views if guidance is not None else None
        if self.prompting.prompts == "geometry" and frame.depth is not None:
            K = frame.intrinsics
            plan = plan_prompts(frame.depth, K.fx, K.fy, height, width, self.prompting.max_prompts, views,
                                cfg.known_views)
            return plan.points, plan.known_unprompted
        ratio = guidance.depth_ratio if guidance is not None else None
        known = known_patches(views if cfg.known_prompt_factor < 1 else None, cfg.prompt_patches, cfg.known_views)
        points = prompt_points(height, width, cfg.points_per_side, ratio, cfg.prompt_patches, cfg.max_prompt_factor,
                               known, cfg.known_prompt_factor)
        return points, patch_mask(known, height, width) if known.any() else None


def _resized(mask: np.ndarray, width: int, height: int) -> np.ndarray:
    """A bool mask at another size (nearest)."""
    if mask.shape == (height, width):
        return mask
    return cv2.resize(mask.astype(np.uint8), (width, height), interpolation=cv2.INTER_NEAREST).astype(bool)

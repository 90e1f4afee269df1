"""OpenCLIP embeddings of segments (GSemSplat's two kinds) and of text.

* region-specific: CLIP on each mask's bounding-box crop with the background blanked
  (LangSplat, CCL-LGS eq. 3), batched;
* context-aware: dense CLIP patch features of the whole image (ViT tokens after the final norm,
  through the image projection) averaged inside each mask (Feature Splatting / GSemSplat).

Both are unit-norm in CLIP's joint space; :class:`ClipTextEncoder` encodes text into it with a cache.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import cv2
import numpy as np

from langgs_ros.errors import ConfigError
from langgs_ros.semantics.backend import TextEncoder

__all__ = ["ClipTextEncoder", "ClipImageFeatures", "FEATURE_KINDS"]

FEATURE_KINDS = {"both": ("region", "context"), "region": ("region",), "context": ("context",)}


def _unit(x: np.ndarray) -> np.ndarray:
    n = np.linalg.norm(x, axis=-1, keepdims=True)
    return (x / np.maximum(n, 1e-12)).astype(np.float32)


class ClipTextEncoder(TextEncoder):
    """open_clip text tower; results cached per text."""

    def __init__(self, model: Any, tokenizer: Any, name: str) -> None:
        self.model, self.tokenizer, self.name = model, tokenizer, f"open_clip:{name}"
        self.dim = int(model.text_projection.shape[1]) if hasattr(model, "text_projection") and \
            model.text_projection is not None else int(model.encode_text(tokenizer(["x"])).shape[1])
        self._cache: dict[str, np.ndarray] = {}

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        import torch

        missing = sorted({t for t in texts if t not in self._cache and t.strip()})
        if missing:
            device = next(self.model.parameters()).device
            with torch.inference_mode():
                emb = self.model.encode_text(self.tokenizer(missing).to(device)).float().cpu().numpy()
            self._cache.update(zip(missing, _unit(emb)))
        zero = np.zeros(self.dim, np.float32)
        return np.stack([self._cache.get(t, zero) for t in texts]) if texts else np.zeros((0, self.dim), np.float32)


class ClipImageFeatures:
    """Region-specific and context-aware CLIP features of masks."""

    def __init__(self, model: Any, kinds: Sequence[str], batch: int = 32, autocast: Any = None) -> None:
        self.model, self.kinds, self.batch, self.autocast = model, tuple(kinds), batch, autocast
        visual = model.visual
        cfg = getattr(visual, "preprocess_cfg", {}) or {}
        size = cfg.get("size", visual.image_size)
        self.size = (size, size) if isinstance(size, int) else tuple(size)
        self.mean = np.asarray(cfg.get("mean", (0.48145466, 0.4578275, 0.40821073)), np.float32)
        self.std = np.asarray(cfg.get("std", (0.26862954, 0.26130258, 0.27577711)), np.float32)
        if "context" in self.kinds and not (hasattr(visual, "forward_intermediates") and getattr(visual, "proj", None) is not None):
            raise ConfigError("context-aware CLIP features need a ViT open_clip model with an image "
                              "projection; set models.feature_kinds: region for this model")

    @property
    def device(self) -> Any:
        return next(self.model.parameters()).device

    def _tensor(self, images: np.ndarray) -> Any:
        """[B, H, W, 3] uint8 at the model size -> normalised [B, 3, H, W] tensor on the device."""
        import torch

        x = (images.astype(np.float32) / 255.0 - self.mean) / self.std
        return torch.from_numpy(x).permute(0, 3, 1, 2).contiguous().to(self.device)

    def _autocast(self):  # noqa: ANN202 - a context manager
        import contextlib

        import torch

        if self.autocast is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.autocast)

    def region(self, rgb: np.ndarray, masks: np.ndarray) -> np.ndarray:
        """[M, D] unit-norm CLIP embeddings of each mask's crop, background blanked to black."""
        import torch

        crops = np.zeros((len(masks), self.size[0], self.size[1], 3), np.uint8)
        for i, mask in enumerate(masks):
            ys, xs = np.nonzero(mask)
            y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
            crop = np.where(mask[y0:y1, x0:x1, None], rgb[y0:y1, x0:x1], 0).astype(np.uint8)
            side = max(y1 - y0, x1 - x0)  # pad to a square so the object keeps its aspect ratio
            square = np.zeros((side, side, 3), np.uint8)
            oy, ox = (side - (y1 - y0)) // 2, (side - (x1 - x0)) // 2
            square[oy:oy + y1 - y0, ox:ox + x1 - x0] = crop
            crops[i] = cv2.resize(square, (self.size[1], self.size[0]), interpolation=cv2.INTER_AREA
                                  if side > self.size[0] else cv2.INTER_LINEAR)
        out = []
        with torch.inference_mode(), self._autocast():
            for start in range(0, len(crops), self.batch):
                out.append(self.model.encode_image(self._tensor(crops[start:start + self.batch])).float().cpu().numpy())
        return _unit(np.concatenate(out)) if out else np.zeros((0, self.dim), np.float32)

    @property
    def dim(self) -> int:
        return int(self.model.visual.output_dim)

    def dense(self, rgb: np.ndarray) -> np.ndarray:
        """[gh, gw, D] CLIP patch features of the whole image (resized to the model input)."""
        import torch

        image = cv2.resize(rgb, (self.size[1], self.size[0]), interpolation=cv2.INTER_AREA)
        visual = self.model.visual
        with torch.inference_mode(), self._autocast():
            out = visual.forward_intermediates(self._tensor(image[None]), indices=1, normalize_intermediates=True,
                                               intermediates_only=True)
            tokens = out["image_intermediates"][-1][0]  # [width, gh, gw] after ln_post
            feats = torch.einsum("chw,cd->hwd", tokens.float(), visual.proj.float())
        return feats.cpu().numpy()

    def context(self, rgb: np.ndarray, masks: np.ndarray, dense: np.ndarray | None = None) -> np.ndarray:
        """[M, D] unit-norm mean of the dense features inside each mask (area-weighted)."""
        dense = self.dense(rgb) if dense is None else dense
        gh, gw, d = dense.shape
        if len(masks) == 0:
            return np.zeros((0, d), np.float32)
        # fraction of each feature cell covered by each mask
        cover = np.stack([cv2.resize(m.astype(np.float32), (gw, gh), interpolation=cv2.INTER_AREA) for m in masks])
        weights = cover.reshape(len(masks), -1)
        weights /= np.maximum(weights.sum(axis=1, keepdims=True), 1e-9)
        return _unit(weights @ dense.reshape(-1, d))

    def embed(self, rgb: np.ndarray, masks: np.ndarray) -> np.ndarray:
        """[M, K * D] per mask: the configured kinds' unit embeddings, concatenated / sqrt(K)."""
        parts = []
        for kind in self.kinds:
            parts.append(self.region(rgb, masks) if kind == "region" else self.context(rgb, masks))
        return (np.concatenate(parts, axis=1) / np.sqrt(len(parts))).astype(np.float32)

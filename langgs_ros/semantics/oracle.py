"""Oracle semantic backend: segments from ground-truth instance ids, embeddings from label text.

For synthetic and annotated data only; it must never be a robot's default. The text encoder is the
normalised sum of deterministic per-token random unit vectors, so "mug" partly matches "red mug".
Seeded noise knobs mimic SAM + CLIP failures (see :class:`~langgs_ros.config.OracleNoiseConfig`).
"""

from __future__ import annotations

import hashlib
import re
import time
from collections.abc import Sequence

import cv2
import numpy as np

from langgs_ros.config import OracleNoiseConfig
from langgs_ros.errors import InputError
from langgs_ros.semantics.backend import LEVELS, Segmentation, SegmentationGuidance, SemanticBackend, TextEncoder
from langgs_ros.types import Frame

__all__ = ["TokenTextEncoder", "OracleBackend", "tokenize"]

_TOKEN = re.compile(r"[a-z0-9]+")


def tokenize(text: str) -> list[str]:
    """Lower-cased alphanumeric tokens of ``text``."""
    return _TOKEN.findall(text.lower())


class TokenTextEncoder(TextEncoder):
    """Normalised sum of per-token random unit vectors, seeded by a stable hash of the token."""

    name = "oracle-token"

    def __init__(self, dim: int = 512) -> None:
        self.dim = dim
        self._cache: dict[str, np.ndarray] = {}

    def token_vector(self, token: str) -> np.ndarray:
        """Deterministic unit vector of one token (same on every machine and run)."""
        vec = self._cache.get(token)
        if vec is None:
            seed = int.from_bytes(hashlib.blake2b(token.encode(), digest_size=8).digest(), "little")
            vec = np.random.default_rng(seed).standard_normal(self.dim).astype(np.float32)
            vec /= np.linalg.norm(vec)
            self._cache[token] = vec
        return vec

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for i, text in enumerate(texts):
            tokens = tokenize(text)
            if tokens:
                v = np.sum([self.token_vector(t) for t in tokens], axis=0)
                out[i] = v / np.linalg.norm(v)
        return out


def _present_ids(ids: np.ndarray) -> np.ndarray:
    """Sorted non-negative ids occurring in ``ids`` (small non-negative ints or -1)."""
    return np.flatnonzero(np.bincount(ids.reshape(-1) + 1)[1:])


def _relabel(ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Map arbitrary non-negative ids to 0..S-1 (keeping -1); returns (new map, old id per new id)."""
    present = _present_ids(ids)
    lut = np.full(int(ids.max(initial=-1)) + 2, -1, dtype=np.int32)
    lut[present + 1] = np.arange(present.size, dtype=np.int32)
    return lut[ids + 1], present


class OracleBackend(SemanticBackend):
    """Ground-truth segments (``Frame.instances``) with label-text embeddings and optional noise."""

    name = "oracle"

    def __init__(self, noise: OracleNoiseConfig | None = None, dim: int = 512) -> None:
        self.noise = noise or OracleNoiseConfig()
        self.text_encoder = TokenTextEncoder(dim)

    def _label_embedding(self, label: str) -> np.ndarray:
        return self.text_encoder.encode([label])[0]

    def segment(self, frame: Frame, guidance: SegmentationGuidance | None = None) -> Segmentation:
        if frame.instances is None:
            raise InputError("the oracle backend needs ground-truth instance ids for every frame")
        if self.noise.delay_s > 0:  # as slow as a real model (oracle.delay_s)
            time.sleep(self.noise.delay_s)
        inst = frame.instances.astype(np.int32)
        labelled = np.array(sorted(k for k in frame.labels if k > 0), dtype=np.int32)
        # segment ids = instance ids of labelled instances; everything else is "no segment"
        base = np.where(np.isin(inst, labelled), inst, -1)
        rng = np.random.default_rng([self.noise.seed, frame.stamp_ns & 0x7FFFFFFFFFFFFFFF])
        levels, embeddings = [], []
        for level in LEVELS:
            ids, labels = self._noisy_level(base, frame.labels, level, rng)
            ids, present = _relabel(ids)
            emb = np.stack([self._label_embedding(labels[int(k)]) for k in present]) if present.size \
                else np.zeros((0, self.dim), np.float32)
            levels.append(ids)
            embeddings.append(self._embedding_noise(emb, rng))
        return Segmentation(levels=levels, embeddings=embeddings)

    # -- noise ------------------------------------------------------------------------------
    def _embedding_noise(self, emb: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        sigma = self.noise.embedding_noise
        if sigma <= 0 or emb.size == 0:
            return emb.astype(np.float32)
        noisy = emb + sigma * rng.standard_normal(emb.shape).astype(np.float32) / np.sqrt(emb.shape[1])
        return (noisy / np.linalg.norm(noisy, axis=1, keepdims=True)).astype(np.float32)

    def _noisy_level(self, base: np.ndarray, labels: dict[int, str], level: str,
                     rng: np.random.Generator) -> tuple[np.ndarray, dict[int, str]]:
        """Apply the noise knobs to one level; returns ids and the label text of each id."""
        n = self.noise
        ids = base.copy()
        seg_labels = {int(k): labels[int(k)] for k in _present_ids(ids)}
        if not seg_labels:
            return ids, seg_labels
        needs_neighbours = n.label_swap_prob > 0 or n.merge_prob > 0
        centroids = self._centroids(ids, seg_labels) if needs_neighbours else {}
        next_id = max(max(labels, default=0), max(seg_labels)) + 1
        split_p = {"subpart": n.split_prob, "part": n.split_prob / 2, "whole": 0.0}[level]
        merge_p = {"subpart": 0.0, "part": n.merge_prob / 2, "whole": n.merge_prob}[level]
        for seg in list(seg_labels):
            if seg not in seg_labels:
                continue  # merged away
            neighbour = self._nearest(seg, centroids, seg_labels)
            if rng.random() < n.drop_prob:
                ids[ids == seg] = -1
                del seg_labels[seg]
                continue
            if neighbour is not None and rng.random() < merge_p:
                big, small = (seg, neighbour) if (ids == seg).sum() >= (ids == neighbour).sum() else (neighbour, seg)
                ids[ids == small] = big
                del seg_labels[small]
                continue
            if rng.random() < split_p:
                next_id = self._split(ids, seg, seg_labels, next_id)
            if neighbour is not None and rng.random() < n.label_swap_prob:
                seg_labels[seg] = labels[neighbour] if neighbour in labels else seg_labels[neighbour]
        if n.boundary_px > 0:
            for seg in list(seg_labels):
                self._jitter_boundary(ids, seg, int(rng.integers(-n.boundary_px, n.boundary_px + 1)))
        return ids, seg_labels

    @staticmethod
    def _centroids(ids: np.ndarray, seg_labels: dict[int, str]) -> dict[int, np.ndarray]:
        """Pixel centroid (x, y) of each segment, from one pass of bincounts."""
        h, w = ids.shape
        flat = ids.reshape(-1)
        sel = flat >= 0
        keys = flat[sel]
        counts = np.bincount(keys)
        cx = np.bincount(keys, weights=np.broadcast_to(np.arange(w, dtype=np.float64), (h, w)).reshape(-1)[sel])
        cy = np.bincount(keys, weights=np.repeat(np.arange(h, dtype=np.float64), w)[sel])
        return {seg: np.array([cx[seg], cy[seg]]) / counts[seg] for seg in seg_labels}

    @staticmethod
    def _nearest(seg: int, centroids: dict[int, np.ndarray], alive: dict[int, str]) -> int | None:
        others = [k for k in centroids if k != seg and k in alive]
        if not others:
            return None
        return min(others, key=lambda k: float(np.linalg.norm(centroids[k] - centroids[seg])))

    @staticmethod
    def _split(ids: np.ndarray, seg: int, seg_labels: dict[int, str], next_id: int) -> int:
        ys, xs = np.nonzero(ids == seg)
        if xs.size < 20:
            return next_id
        pts = np.stack([xs, ys], axis=1).astype(np.float64)
        centred = pts - pts.mean(axis=0)
        axis = np.linalg.svd(centred, full_matrices=False)[2][0]
        side = centred @ axis > 0
        ids[ys[side], xs[side]] = next_id
        seg_labels[next_id] = seg_labels[seg]
        return next_id + 1

    @staticmethod
    def _jitter_boundary(ids: np.ndarray, seg: int, radius: int) -> None:
        if radius == 0:
            return
        mask = (ids == seg).astype(np.uint8)
        kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * abs(radius) + 1,) * 2)
        if radius > 0:
            ids[cv2.dilate(mask, kernel).astype(bool)] = seg
        else:
            ids[mask.astype(bool) & ~cv2.erode(mask, kernel).astype(bool)] = -1

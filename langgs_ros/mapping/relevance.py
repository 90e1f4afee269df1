"""Relevance of a text query over a map: LERF margins ``cos(f, q) - max_k cos(f, n_k)`` of a unit
text embedding q against canonical negatives n_k, per Gaussian and level, ``-inf`` where a
Gaussian has no semantics. Embeddings may hold several feature kinds side by side (GSemSplat's
region-specific and context-aware CLIP features, each D-dimensional, concatenated / sqrt(K)); a
query uses the kind whose best margin is higher."""

from __future__ import annotations

import numpy as np

__all__ = ["Relevance", "CodeRelevance", "lerf_margin", "kind_margins", "best_kind"]


def lerf_margin(features: np.ndarray, query: np.ndarray, negatives: np.ndarray) -> np.ndarray:
    """cos(f, q) - max_k cos(f, n_k) for unit-norm rows ``features`` [N, D]."""
    neg = features @ negatives.T if len(negatives) else np.zeros((len(features), 1), np.float32)
    return features @ query - neg.max(axis=1)


def kind_margins(features: np.ndarray, query: np.ndarray, negatives: np.ndarray) -> np.ndarray:
    """[K, N] LERF margins of each feature kind of ``features`` [N, K * D] (``query`` is [D])."""
    d = query.shape[0]
    kinds = features.shape[1] // d
    if kinds * d != features.shape[1]:
        raise ValueError(f"features of width {features.shape[1]} do not hold kinds of the query's width {d}")
    if kinds == 1:
        return lerf_margin(features, query, negatives)[None]
    out = np.empty((kinds, len(features)), np.float32)
    for k in range(kinds):
        part = features[:, k * d:(k + 1) * d]
        part = part / np.maximum(np.linalg.norm(part, axis=1, keepdims=True), 1e-6)
        out[k] = lerf_margin(part, query, negatives)
    return out


def best_kind(margins: np.ndarray, valid: np.ndarray | None = None) -> int:
    """Index of the kind (row of ``margins``) whose highest margin over ``valid`` columns is higher."""
    m = margins if valid is None else margins[:, valid]
    return int(np.argmax(m.max(axis=1))) if m.size else 0


class Relevance:
    """A query's LERF margins over one map, per level.

    ``best[level]`` is the highest margin of any Gaussian at that level (-inf: none has
    semantics); :meth:`matching` lists the Gaussians of a level whose margin clears a threshold.
    """

    def __init__(self, margins: list[np.ndarray]) -> None:
        self._margins = margins
        self.best = np.array([m.max() if m.size else -np.inf for m in margins], np.float64)

    def matches(self, level: int, threshold: float) -> np.ndarray:
        """bool [N]: does the Gaussian's margin at ``level`` reach ``threshold``."""
        return self._margins[level] >= threshold

    def margins_at(self, level: int, idx: np.ndarray) -> np.ndarray:
        """Margins of Gaussians ``idx`` at ``level``."""
        return self._margins[level][idx]

    def matching(self, level: int, threshold: float) -> tuple[np.ndarray, np.ndarray]:
        """(indices, margins) of the Gaussians with margin >= ``threshold`` at ``level``."""
        idx = np.flatnonzero(self.matches(level, threshold))
        return idx, self.margins_at(level, idx)


class CodeRelevance(Relevance):
    """Relevance scored per codebook entry: Gaussian i at a level has ``margin[codes[level][i]]``."""

    def __init__(self, code_margin: np.ndarray, present: list[np.ndarray], codes: list[np.ndarray]) -> None:
        self._margin = np.append(code_margin, -np.inf).astype(np.float32)  # last slot: code -1
        self._codes = codes
        self.best = np.array([code_margin[p].max() if p.any() else -np.inf for p in present])

    def matches(self, level: int, threshold: float) -> np.ndarray:
        return (self._margin >= threshold)[self._codes[level]]

    def margins_at(self, level: int, idx: np.ndarray) -> np.ndarray:
        return self._margin[self._codes[level][idx]]

"""Scoring a text query over a block-stored map, one block at a time.

A :class:`BlockScorer` answers which blocks can hold a match (:meth:`BlockScorer.candidates`, from
the per-block summaries the semantic field keeps) and which rows of a block match
(:meth:`BlockScorer.matching`), so a query reads only the blocks that can answer it. The codebook
scorer (CCL-LGS) scores the prototypes once and gives the margin of a segment key (a track or an
own code: :meth:`CodebookScorer.key_margins`), which the query's cells
(:mod:`langgs_ros.query.cells`) look up per signature instead of per Gaussian. The average scorer
(the baseline) scores every Gaussian's own embedding.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import MutableMapping

import numpy as np

from langgs_ros.mapping.block_store import Block, BlockStore
from langgs_ros.mapping.gaussians import GaussianMap
from langgs_ros.mapping.relevance import best_kind, kind_margins
from langgs_ros.semantics.backend import LEVELS

__all__ = ["BlockScorer", "CodebookScorer", "AverageScorer", "Columns", "average_margins"]

Columns = MutableMapping[str, np.ndarray]
"""Per-Gaussian arrays by field name, rows aligned: a GaussianMap, a block view, or gathered rows."""

N_LEVELS = len(LEVELS)


class BlockScorer(ABC):
    """A text query's LERF margins over a block-stored map, one block at a time."""

    @abstractmethod
    def best(self) -> np.ndarray:
        """[levels] highest margin of any Gaussian per level (-inf: none has semantics there)."""

    @abstractmethod
    def candidates(self, thresholds: dict[int, float]) -> list[Block]:
        """The blocks that can hold a Gaussian reaching ``thresholds[level]`` at one of those levels."""

    @abstractmethod
    def margins(self, columns: Columns, level: int) -> np.ndarray:
        """[N] float32 margin of each Gaussian of ``columns`` at ``level`` (-inf: no semantics)."""

    def matching(self, blk: Block, level: int, threshold: float) -> tuple[np.ndarray, np.ndarray]:
        """(rows, margins) of the Gaussians of ``blk`` whose margin at ``level`` reaches ``threshold``."""
        margin = self.margins(self._store.columns_of(blk), level)  # type: ignore[attr-defined]
        rows = np.flatnonzero(margin >= threshold)
        return rows, margin[rows]


def average_margins(columns: Columns, level: int, query: np.ndarray, negatives: np.ndarray) -> np.ndarray:
    """[N] LERF margin of each Gaussian's averaged feature at ``level`` (the better feature kind;
    -inf where the feature is zero: only ever seen in no segment)."""
    features = columns["features"]
    n = len(features)
    kinds = features.shape[2] // query.shape[0]
    margin = np.full((kinds, n), -np.inf, np.float32)
    chunk = 65536
    for start in range(0, n, chunk):
        f = features[start : start + chunk, level].astype(np.float32)
        norm = np.linalg.norm(f, axis=1, keepdims=True)
        ok = norm[:, 0] > 1e-6
        m = kind_margins(f / np.maximum(norm, 1e-6), query, negatives)
        margin[:, start : start + chunk][:, ok] = m[:, ok]
    return margin[best_kind(margin)]


class CodebookScorer(BlockScorer):
    """Margins per codebook entry; a block's summary says which entries its Gaussians carry."""

    def __init__(self, code_margin: np.ndarray, present: np.ndarray, code_of_track: list[np.ndarray],
                 store: BlockStore, blocks: list[Block], postings: list[tuple[np.ndarray, ...]]) -> None:
        self._margin = np.append(code_margin, -np.inf).astype(np.float32)  # last slot: code -1
        self._present = present
        self._code_of_track = code_of_track
        self._store = store
        self._blocks, self._postings = blocks, postings

    def best(self) -> np.ndarray:
        return np.array([self._margin[:-1][p].max() if p.any() else -np.inf for p in self._present])

    def candidates(self, thresholds: dict[int, float]) -> list[Block]:
        hit = np.zeros(len(self._blocks), bool)
        for level, threshold in thresholds.items():
            track_block, tracks, code_block, codes = self._postings[level]
            hit[track_block[self._margin[self._code_of_track[level][tracks]] >= threshold]] = True
            hit[code_block[self._margin[codes] >= threshold]] = True
        return [self._blocks[i] for i in np.flatnonzero(hit)]

    def margins(self, columns: Columns, level: int) -> np.ndarray:
        tracks = columns["tracks"][:, level]
        code = columns["codes"][:, level].astype(np.int64)
        has = tracks >= 0
        code[has] = self._code_of_track[level][tracks[has]]
        code[~has & (columns["track_votes"][:, level] > 0)] = -1  # "in no segment" won its vote
        return self._margin[code]

    def key_margins(self, level: int, keys: np.ndarray) -> np.ndarray:
        """[K] float32 margin of segment keys at ``level``: a map track (>= 0), an own codebook
        entry ``-2 - code``, or -1 "in no segment" (-inf); see :func:`~langgs_ros.query.cells.segment_keys`."""
        codes = -2 - keys
        tracked = keys >= 0
        codes[tracked] = self._code_of_track[level][keys[tracked]]
        return self._margin[codes]  # code -1 ("in no segment"): the last slot, -inf


class AverageScorer(BlockScorer):
    """Margins of each Gaussian's own averaged embedding: every block is read (the baseline)."""

    def __init__(self, query: np.ndarray, negatives: np.ndarray, store: BlockStore) -> None:
        self._query, self._negatives, self._store = query, negatives, store
        self._best: np.ndarray | None = None

    def best(self) -> np.ndarray:
        if self._best is None:
            best = np.full(N_LEVELS, -np.inf)
            for blk in self._store.blocks:
                if blk.count:
                    columns = self._store.columns_of(blk)
                    for level in range(N_LEVELS):
                        best[level] = max(best[level], float(self.margins(columns, level).max()))
            self._best = best
        return self._best

    def candidates(self, thresholds: dict[int, float]) -> list[Block]:
        return [blk for blk in self._store.blocks if blk.count]

    def margins(self, columns: Columns, level: int) -> np.ndarray:
        return average_margins(columns, level, self._query, self._negatives)
